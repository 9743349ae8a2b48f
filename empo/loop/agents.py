"""The agent the loop trains, by name: the built-in SAC, or a framework's SAC (empo/integrations/).

The loop (empo/loop/trainer.py) owns the data: the real buffer, the model buffer that rollouts
fill, the mixed batches at ``training.real_ratio``. An agent gets them in an :class:`AgentContext`
and implements :class:`LoopAgent`: ``train(n)`` runs n updates, each on a fresh mixed batch;
``act`` serves the rollouts and the evaluation; ``q_value`` the penalty decay. A new agent is one
module with a ``build(context)`` function and one line in :data:`AGENTS` (docs/integrations.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import nn

from empo.errors import EmpoError

if TYPE_CHECKING:
    from empo.data.tasks import Task
    from empo.loop.buffers import TransitionBuffer
    from empo.loop.config import TrainConfig
    from empo.loop.penalty import Penalty


@runtime_checkable
class LoopAgent(Protocol):
    #: which of the loop's update metrics (empo.loop.trainer.UPDATE_METRICS) ``train`` adds into
    #: ``context.metric_sums``; the others are logged as NaN (not measured)
    metric_names: tuple[str, ...]

    def act(self, obs: torch.Tensor, deterministic: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Actions [B, act_dim] in [-1, 1] for observations [B, obs_dim], on the loop's device."""
        ...

    def q_value(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """The critics' (min) value [B]."""
        ...

    def train(self, steps: int) -> None:
        """``steps`` updates, each on a mixed batch drawn from the context's buffers."""
        ...

    def end_epoch(self) -> None:
        """Once an epoch, after its updates (learning-rate schedules)."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class AgentContext:
    """What the loop hands an agent when it builds it."""

    config: TrainConfig
    task: Task
    device: torch.device
    real_buffer: TransitionBuffer
    model_buffer: TransitionBuffer
    sample_generator: torch.Generator  # draws the mixed batches
    penalty: Penalty
    metric_names: tuple[str, ...]  # the loop's update metrics, in the order of metric_sums
    metric_sums: torch.Tensor  # [len(metric_names)], zeroed by the loop each epoch
    log: Callable[[str], Any] = print  # one-line messages to the user (e.g. settings an agent cannot apply)

    def mixed_batch(self, batch_size: int | None = None) -> dict[str, torch.Tensor]:
        """``batch_size`` rows (default training.batch_size), real ones at training.real_ratio."""
        from empo.loop.buffers import sample_mixed

        training = self.config.training
        return sample_mixed(self.real_buffer, self.model_buffer, batch_size or training.batch_size, training.real_ratio,
                            self.sample_generator)

    def add_metrics(self, values: dict[str, float], steps: int) -> None:
        """Add per-update means of ``steps`` updates (host floats) into ``metric_sums``."""
        for index, name in enumerate(self.metric_names):
            if name in values:
                self.metric_sums[index] += float(values[name]) * steps


@dataclass(frozen=True)
class AgentSpec:
    description: str  # one line for --help
    # holds build(context) -> LoopAgent, policy(config, task, state) -> nn.Module and
    # check_state(config, task, state), which raises when a checkpoint's agent state cannot be loaded
    module: str
    extra: str | None = None  # the pip extra that installs its framework
    # what the agent can run (the loop refuses a setting whose flag is off before any work)
    target_penalty: bool = False  # the penalty inside every critic target ({algo}.penalty_at: update, its decay)
    alpha_max: bool = False  # a clamp of the temperature ({algo}.alpha_max)
    cuda_graph: bool = False  # runtime.cuda_graph
    sync_debug: bool = False  # runtime.sync_debug: no host synchronisation inside an update
    bc_weight: bool = False  # sac.bc_weight > 0: behaviour cloning on the batch's real rows
    actor_average: bool = False  # sac.actor_average_rate: an averaged actor acts deterministically

    def load(self, name: str) -> Any:
        try:
            return importlib.import_module(self.module)
        except ImportError as exc:
            hint = f'; install it with: pip install "empo[{self.extra}]"' if self.extra else ""
            raise EmpoError(f"agent '{name}' needs a package that is not installed ({exc.name or exc}){hint}") from None


AGENTS: dict[str, AgentSpec] = {
    "sac": AgentSpec(
        "EMPO's own device-resident SAC (the default; every loop setting)",
        "empo.loop.builtin_agent",
        target_penalty=True,
        alpha_max=True,
        cuda_graph=True,
        sync_debug=True,
        bc_weight=True,
        actor_average=True,
    ),
    # both frameworks read their losses to the host every update: no CUDA graph, no sync_debug
    "sb3-sac": AgentSpec(
        "stable-baselines3's SAC on the loop's mixed batches",
        "empo.integrations.sb3_agent",
        target_penalty=True,
        alpha_max=True,
    ),
    "tianshou-sac": AgentSpec(
        "tianshou's SAC on the loop's mixed batches",
        "empo.integrations.tianshou_agent",
        extra="tianshou",
        target_penalty=True,
        alpha_max=True,
    ),
}


def get_agent_spec(name: str) -> AgentSpec:
    if name not in AGENTS:
        raise EmpoError(f"unknown agent '{name}'; valid agents: {', '.join(AGENTS)}")
    return AGENTS[name]


def unsupported_settings(config: TrainConfig) -> list[str]:
    """The config's settings that its agent cannot run, as 'key=value' (empty: none)."""
    spec, algo = get_agent_spec(config.agent), config.algorithm
    problems = []
    if algo.penalty_at == "update" and not spec.target_penalty:
        problems.append(f"{config.algo}.penalty_at=update")
    if algo.alpha_max is not None and not spec.alpha_max:
        problems.append(f"{config.algo}.alpha_max={algo.alpha_max}")
    if config.runtime.cuda_graph and not spec.cuda_graph:
        problems.append("runtime.cuda_graph=true")
    if config.sac.bc_weight > 0 and not spec.bc_weight:
        problems.append(f"sac.bc_weight={config.sac.bc_weight}")
    if config.sac.actor_average_rate is not None and not spec.actor_average:
        problems.append(f"sac.actor_average_rate={config.sac.actor_average_rate}")
    if config.runtime.sync_debug and not spec.sync_debug:  # the frameworks read their losses to the host every update
        problems.append("runtime.sync_debug=true")
    return problems


def build_agent(context: AgentContext) -> LoopAgent:
    name = context.config.agent
    agent = get_agent_spec(name).load(name).build(context)
    if not isinstance(agent, LoopAgent):
        raise EmpoError(f"agent '{name}': its build() returned a {type(agent).__name__}, which lacks LoopAgent's methods")
    return agent


def load_policy(config: TrainConfig, task: Task, agent_state: dict[str, Any]) -> nn.Module:
    """The deterministic policy (obs [B, obs_dim] -> actions [B, act_dim]) of a checkpoint's agent state."""
    module = get_agent_spec(config.agent).load(config.agent)
    builder: Callable[[TrainConfig, Task, dict[str, Any]], nn.Module] = module.policy
    return builder(config, task, agent_state)


def check_agent_state(config: TrainConfig, task: Task, agent_state: dict[str, Any]) -> None:
    """Raise (RuntimeError, KeyError, ...) when ``agent_state`` cannot be loaded into the config's agent."""
    get_agent_spec(config.agent).load(config.agent).check_state(config, task, agent_state)
