"""The loop's default agent (``agent: sac``): EMPO's own SAC (empo/agents/sac.py), one update per
mixed batch, on the device, optionally replayed as a CUDA graph (empo/loop/graphed.py)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from empo.agents.sac import SAC
from empo.data.tasks import Task
from empo.loop.agents import AgentContext
from empo.loop.config import TrainConfig
from empo.loop.graphed import GraphedSACStep, SACStep


class BuiltinSAC:
    def __init__(self, context: AgentContext) -> None:
        config, task = context.config, context.task
        self.sac = SAC(
            task.obs_dim,
            task.act_dim,
            config.sac,
            device=context.device,
            seed=config.seed,
            total_lr_steps=config.training.epochs,
            target_penalty=context.penalty.target_penalty(),
            alpha_max=config.algorithm.alpha_max,
            capturable=config.runtime.cuda_graph,
        )
        self.metric_names = context.metric_names  # every one of the loop's update metrics
        step_class = GraphedSACStep if config.runtime.cuda_graph else SACStep
        self.step = step_class(
            self.sac, context.real_buffer, context.model_buffer, config.training.batch_size, config.training.real_ratio,
            context.sample_generator, context.metric_names, context.metric_sums,
        )

    def act(self, obs: torch.Tensor, deterministic: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.sac.act(obs, deterministic=deterministic, generator=generator)

    def q_value(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.sac.q_value(obs, act)

    def train(self, steps: int) -> None:
        for _ in range(steps):
            self.step()

    def end_epoch(self) -> None:
        self.sac.step_lr_schedule()

    def state_dict(self) -> dict[str, Any]:
        return self.sac.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sac.load_state_dict(state)


class DeterministicPolicy(nn.Module):
    """obs [B, obs_dim] -> tanh(mean) [B, act_dim]: the trained actor's evaluation policy."""

    def __init__(self, trunk: nn.Module, head: nn.Linear, act_dim: int) -> None:
        super().__init__()
        self.trunk, self.head, self.act_dim = trunk, head, act_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.head(self.trunk(obs))[..., : self.act_dim])


def build(context: AgentContext) -> BuiltinSAC:
    return BuiltinSAC(context)


def policy(config: TrainConfig, task: Task, state: dict[str, Any]) -> nn.Module:
    sac = SAC(int(state["obs_dim"]), int(state["act_dim"]), config.sac, device="cpu", seed=config.seed)
    # the policy that acts deterministically: the averaged actor where the run kept one
    actor, key = (sac.actor, "actor") if sac.actor_average is None else (sac.actor_average, "actor_average")
    actor.load_state_dict(state[key])
    return DeterministicPolicy(actor.trunk, actor.head, sac.act_dim).eval()


def check_state(config: TrainConfig, task: Task, state: dict[str, Any]) -> None:
    SAC(task.obs_dim, task.act_dim, config.sac, device="cpu", seed=0).load_state_dict(state)
