"""tianshou's (2.x) SAC as the agent of EMPO's loop (``agent: tianshou-sac``, ``empo-train --agent tianshou-sac``).

The loop keeps its data, rollouts and evaluation (empo/loop/trainer.py); tianshou's ``SAC`` learns
through its own ``update(buffer, sample_size)``: that samples :class:`MixedBatchBuffer`, a tianshou
``ReplayBuffer`` whose every ``sample`` is a fresh mixed batch of the loop (real transitions at
``training.real_ratio``, the rest from the model buffer that the rollouts refresh), adds the
one-step critic target with tianshou's ``compute_nstep_return`` and runs tianshou's SAC step
(twin critics, actor, automatic temperature, Polyak-averaged target critics).

Settings from the run config's ``sac:`` section: hidden sizes, gamma, tau, the three learning
rates (actor ``actor_lr``, each critic ``critic_lr``, temperature ``alpha_lr``), the initial
temperature and target entropy (default -|A|), ``auto_alpha``, LayerNorm critics
(``critic_layer_norm``), the actor's log-std clamp ``[log_std_min, log_std_max]`` (tianshou's own
actor clamps to [-20, 2]; :class:`ClampedGaussianActor` applies the run's) and the actor's cosine
lr decay over the epochs (``actor_lr_cosine_decay``: a tianshou lr scheduler, which tianshou
steps every update, whose factor changes only at epoch boundaries, as the built-in SAC's does).
Network weights are initialised from ``seed``; the update's sampling noise comes from torch's
global generator (the loop checkpoints it), the rollout actions' from the generator the loop
passes to :meth:`TianshouSACAgent.act`.

What tianshou's update does differently from the built-in SAC (empo/agents/sac.py): it reads
the losses and the temperature to the host every update (``.item()``) and computes the critic
target through numpy (its n-step return code), so it cannot run under ``runtime.sync_debug``; the
tanh log-probability correction is ``log(1 - tanh(u)^2 + eps)``; the two critics are separate
networks with separate optimisers (the built-in evaluates them as one ensemble, which is the same
arithmetic); the temperature it reports (``alpha``) is the one after that update's step.

EMPO's published mechanism runs in :class:`PenalisedSAC`: with ``{algo}.penalty_at: update`` each
row's raw penalty (zero for real rows) is subtracted inside the critic target, with
``penalty_decay`` scaled per row by ``clamp(V'(s') / decay_scale, 0, 1)`` as in the built-in SAC
(empo/agents/sac.py); ``alpha_max`` clamps the temperature the losses use (:class:`ClampedAutoAlpha`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm.modelfree.sac import SAC, AutoAlpha, SACPolicy
from tianshou.algorithm.optim import AdamOptimizerFactory, LRSchedulerFactory
from tianshou.data import Batch, ReplayBuffer
from tianshou.data.types import BatchWithReturnsProtocol, DistLogProbBatchProtocol, RolloutBatchProtocol
from tianshou.utils.net.common import Net
from tianshou.utils.net.continuous import ContinuousActorProbabilistic, ContinuousCritic
from tianshou.utils.torch_utils import policy_within_training_step
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from empo.agents.sac import SACConfig, TargetPenalty
from empo.data.tasks import Task
from empo.errors import EmpoError
from empo.loop.agents import AgentContext
from empo.loop.config import TrainConfig

FRAMEWORK = "tianshou"
ACTOR_PREFIX = "policy.actor."  # the actor's keys in tianshou's SAC state dict


class ClampedGaussianActor(ContinuousActorProbabilistic):
    """tianshou's state-conditioned Gaussian actor (mean and log-std heads on an MLP trunk; SAC's
    policy squashes its samples with tanh), its log-std clamped to ``[log_std_min, log_std_max]``."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: list[int], log_std_min: float, log_std_max: float) -> None:
        super().__init__(
            preprocess_net=Net(state_shape=obs_dim, hidden_sizes=list(hidden_sizes)),
            action_shape=act_dim,
            unbounded=True,  # the mean is not squashed here: SACPolicy applies tanh to the sample
            conditioned_sigma=True,
        )
        self.log_std_min, self.log_std_max = float(log_std_min), float(log_std_max)

    def forward(self, obs: Any, state: Any = None, info: Any = None) -> tuple[tuple[torch.Tensor, torch.Tensor], Any]:
        features, _ = self.preprocess(obs, state)
        log_std = self.sigma(features).clamp(self.log_std_min, self.log_std_max)
        return (self.mu(features), log_std.exp()), state


def make_actor(obs_dim: int, act_dim: int, config: SACConfig) -> ClampedGaussianActor:
    return ClampedGaussianActor(obs_dim, act_dim, config.hidden_sizes, config.log_std_min, config.log_std_max)


def make_critic(obs_dim: int, act_dim: int, config: SACConfig) -> ContinuousCritic:
    """Q(s, a): an MLP on [obs, act] (LayerNorm before each hidden ReLU with ``critic_layer_norm``)."""
    trunk = Net(state_shape=obs_dim, action_shape=act_dim, hidden_sizes=list(config.hidden_sizes), concat=True,
                norm_layer=nn.LayerNorm if config.critic_layer_norm else None)
    return ContinuousCritic(preprocess_net=trunk)


class EpochCosineDecay(LRSchedulerFactory):
    """The built-in SAC's actor lr schedule, ``lr * (1 + cos(pi * epoch / epochs)) / 2``, as a
    tianshou lr scheduler: tianshou steps it after every update, and the factor depends on the
    epoch only (``epoch = updates // steps_per_epoch``)."""

    def __init__(self, epochs: int, steps_per_epoch: int) -> None:
        self.epochs, self.steps_per_epoch = int(epochs), int(steps_per_epoch)

    def create_scheduler(self, optim: torch.optim.Optimizer) -> LRScheduler:
        epochs, steps_per_epoch = self.epochs, self.steps_per_epoch

        def factor(updates: int) -> float:
            epoch = min(updates // steps_per_epoch, epochs)
            return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))

        return LambdaLR(optim, lr_lambda=factor)


class RecordingAdamFactory(AdamOptimizerFactory):
    """Adam, remembering the optimiser it made: tianshou's ``AutoAlpha`` keeps its optimiser out
    of the algorithm's state dict, and a checkpoint needs it."""

    optimizer: torch.optim.Optimizer | None = None

    def _create_optimizer_for_params(self, params: Any) -> torch.optim.Optimizer:
        self.optimizer = super()._create_optimizer_for_params(params)
        return self.optimizer


class ClampedAutoAlpha(AutoAlpha):
    """tianshou's learnt temperature whose value (what the target and the actor loss use) is clamped to
    ``alpha_max``; log alpha itself learns unclamped, as in the built-in SAC. Its state dict is AutoAlpha's."""

    def __init__(self, target_entropy: float, log_alpha: float, optim: RecordingAdamFactory, alpha_max: float) -> None:
        super().__init__(target_entropy, log_alpha, optim)
        self.alpha_max = float(alpha_max)

    @property
    def value(self) -> float:
        return min(super().value, self.alpha_max)


class PenalisedSAC(SAC):
    """tianshou's SAC whose critic target takes each row's penalty off the reward (the built-in SAC's
    ``TargetPenalty``): ``r - c * p + gamma * (1 - done) * V'(s')``, ``V'(s') = min Q'(s', a') - alpha *
    log pi(a'|s')``, ``c = coef`` or with decay ``coef * clamp(V'(s') / decay_scale, 0, 1)`` per row.

    tianshou computes ``r + gamma * (1 - done) * V'(s')`` (its n-step return, one step here);
    ``_target_q_compute_value`` keeps that V'(s') and ``_preprocess_batch`` then subtracts ``c * p``,
    ``p`` being the batch's ``penalty`` column. Without a ``target_penalty`` it is tianshou's SAC.
    """

    target_penalty: TargetPenalty | None = None
    last_penalty_in_target = 0.0  # the mean of c * p over the last batch (a host float)
    _next_value: torch.Tensor | None = None

    def _target_q_compute_value(self, obs_batch: Batch, act_batch: DistLogProbBatchProtocol) -> torch.Tensor:
        value = super()._target_q_compute_value(obs_batch, act_batch)
        # a copy: tianshou masks terminal rows of the returned tensor in place (through a shared numpy
        # view on the CPU), and the decay reads V'(s') unmasked, as the built-in SAC does
        self._next_value = value.detach().clone()
        return value

    def _preprocess_batch(
        self, batch: RolloutBatchProtocol, buffer: ReplayBuffer, indices: np.ndarray
    ) -> RolloutBatchProtocol | BatchWithReturnsProtocol:
        batch = super()._preprocess_batch(batch, buffer, indices)
        if self.target_penalty is None:
            return batch
        if self._next_value is None or getattr(batch, "penalty", None) is None:
            raise EmpoError("penalty_at: update needs each row's penalty; the replay buffer gave none")
        returns = cast(BatchWithReturnsProtocol, batch).returns
        penalty = self.penalty_in_target(
            self._next_value.reshape(returns.shape), torch.as_tensor(batch.penalty).to(returns).reshape(returns.shape)
        )
        batch.returns = returns - penalty
        self.last_penalty_in_target = penalty.mean().item()
        self._next_value = None
        return batch

    def penalty_in_target(self, next_value: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
        """``c * p`` per row: what the critic target takes off the reward (V'(s') unmasked by the terminal)."""
        tp = self.target_penalty
        if tp is None:
            return torch.zeros_like(penalty)
        coef = tp.coef * (next_value / tp.decay_scale).clamp(0.0, 1.0) if tp.decay else tp.coef
        return coef * penalty


def make_sac(
    obs_dim: int,
    act_dim: int,
    config: SACConfig,
    device: str | torch.device = "cpu",
    seed: int = 0,
    lr_decay: tuple[int, int] | None = None,
    target_penalty: TargetPenalty | None = None,
    alpha_max: float | None = None,
) -> tuple[PenalisedSAC, RecordingAdamFactory | None]:
    """tianshou's SAC with the run's ``sac:`` settings on ``device``, its weights drawn from ``seed``.

    ``lr_decay``: (epochs, steps_per_epoch) of the actor's cosine lr decay (None: constant lr).
    ``target_penalty``: the penalty inside the critic target; ``alpha_max``: the temperature clamp.
    Returns the algorithm and the temperature's optimiser factory (None with a fixed temperature).
    """
    with torch.random.fork_rng(devices=[]):  # the weights depend on the seed only, not on the global RNG
        torch.manual_seed(seed)
        actor = make_actor(obs_dim, act_dim, config)
        critic, critic2 = make_critic(obs_dim, act_dim, config), make_critic(obs_dim, act_dim, config)
    actor_optim = AdamOptimizerFactory(lr=config.actor_lr)
    if lr_decay is not None:
        actor_optim = actor_optim.with_lr_scheduler_factory(EpochCosineDecay(*lr_decay))
    alpha_optim: RecordingAdamFactory | None = None
    if config.auto_alpha:
        alpha_optim = RecordingAdamFactory(lr=config.alpha_lr)
        target_entropy = float(-act_dim if config.target_entropy is None else config.target_entropy)
        if alpha_max is None:
            alpha: float | AutoAlpha = AutoAlpha(target_entropy, math.log(config.init_alpha), alpha_optim)
        else:
            alpha = ClampedAutoAlpha(target_entropy, math.log(config.init_alpha), alpha_optim, alpha_max)
    else:
        alpha = float(config.init_alpha) if alpha_max is None else min(float(config.init_alpha), float(alpha_max))
    policy = SACPolicy(
        actor=actor,
        action_space=gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32),
        observation_space=gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
        action_scaling=False,  # the actions are already in the tasks' [-1, 1]
        deterministic_eval=True,
    )
    critic_optim = AdamOptimizerFactory(lr=config.critic_lr)  # one Adam per critic
    sac = PenalisedSAC(
        policy=policy,
        policy_optim=actor_optim,
        critic=critic,
        critic_optim=critic_optim,
        critic2=critic2,
        critic2_optim=critic_optim,
        tau=config.tau,
        gamma=config.gamma,
        alpha=alpha,
        n_step_return_horizon=1,
    )
    sac.target_penalty = target_penalty
    # in place: the optimisers keep their parameters (the temperature's included)
    return sac.to(torch.device(device)), alpha_optim


class MixedBatchBuffer(ReplayBuffer):
    """A tianshou ``ReplayBuffer`` that holds one mixed batch of the loop, drawn anew by every
    ``sample(n)`` (``draw(n)``: ``AgentContext.mixed_batch``).

    Observations, actions and the raw penalties (``penalty``, zero for real rows and when the draw has
    none) stay torch tensors on the loop's device; rewards and end flags are
    numpy arrays on the host, which tianshou's return computation (numba) needs. Every row is a
    whole one-step transition: ``done`` is the terminal flag, no episode is unfinished, and
    ``next``/``prev`` stay in place (the SAC here uses one-step returns).
    """

    def __init__(self, draw: Callable[[int], dict[str, torch.Tensor]], batch_size: int) -> None:
        super().__init__(size=batch_size)
        self.draw = draw

    def add(self, *args: Any, **kwargs: Any) -> Any:
        raise EmpoError("MixedBatchBuffer is filled by the EMPO loop (dataset and model rollouts), not by tianshou's collection")

    def sample(self, batch_size: int | None) -> tuple[Batch, np.ndarray]:
        if batch_size is None or batch_size < 1:
            raise EmpoError(f"MixedBatchBuffer draws batches of a given size, got batch_size={batch_size!r}")
        data = self.draw(int(batch_size))
        n = int(data["observations"].shape[0])
        host = torch.stack([data["rewards"].reshape(-1).float(), data["terminals"].reshape(-1).float()]).cpu().numpy()
        terminated = host[1] > 0.5
        self.maxsize, self._indices = n, np.arange(n)
        penalty = data.get("penalties")
        self._meta = Batch(
            obs=data["observations"],
            act=data["actions"],
            rew=host[0].astype(np.float64),
            terminated=terminated,
            truncated=np.zeros(n, dtype=bool),
            done=terminated.copy(),
            obs_next=data["next_observations"],
            penalty=torch.zeros(n, device=data["observations"].device) if penalty is None else penalty.reshape(-1),
        )
        self._size, self._insertion_idx, self.last_index = n, 0, np.array([n - 1])
        indices = np.arange(n)
        return self[indices], indices

    def unfinished_index(self) -> np.ndarray:
        return np.zeros(0, dtype=int)

    def next(self, index: int | np.ndarray) -> np.ndarray:
        return np.asarray(index)

    def prev(self, index: int | np.ndarray) -> np.ndarray:
        return np.asarray(index)


class TianshouSACAgent:
    """:class:`empo.loop.agents.LoopAgent` over tianshou's SAC."""

    def __init__(self, context: AgentContext) -> None:
        config, task = context.config, context.task
        self.context = context
        self.obs_dim, self.act_dim = task.obs_dim, task.act_dim
        self.batch_size = config.training.batch_size
        lr_decay = (
            (config.training.epochs, config.training.steps_per_epoch) if config.sac.actor_lr_cosine_decay else None
        )
        self.sac, self.alpha_optim = make_sac(
            task.obs_dim,
            task.act_dim,
            config.sac,
            context.device,
            config.seed,
            lr_decay,
            context.penalty.target_penalty(),
            config.algorithm.alpha_max,
        )
        self.actor = self.sac.policy.actor
        self.buffer = MixedBatchBuffer(context.mixed_batch, self.batch_size)
        self.generator = torch.Generator(device=context.device)  # act() without a generator
        self.generator.manual_seed(config.seed + 1)
        self.updates = 0
        names = ("critic_loss", "actor_loss", "alpha_loss", "alpha", "penalty_in_target")
        if not config.sac.auto_alpha:
            names = tuple(n for n in names if n != "alpha_loss")
        if self.sac.target_penalty is None:  # nothing taken off in the target: not reported
            names = tuple(n for n in names if n != "penalty_in_target")
        self.metric_names = names

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """tanh of the actor's mean, or of a sample of its Gaussian (noise from ``generator``)."""
        (mean, std), _ = self.actor(obs)
        if deterministic:
            return torch.tanh(mean)
        noise = torch.randn(mean.shape, generator=self.generator if generator is None else generator, device=mean.device,
                            dtype=mean.dtype)
        return torch.tanh(mean + std * noise)

    @torch.no_grad()
    def q_value(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return torch.min(self.sac.critic(obs, act), self.sac.critic2(obs, act)).reshape(-1)

    def train(self, steps: int) -> None:
        if steps < 1:
            return
        sums = dict.fromkeys(self.metric_names, 0.0)
        with policy_within_training_step(self.sac.policy):
            for _ in range(steps):
                stats = self.sac.update(self.buffer, self.batch_size)
                sums["critic_loss"] += stats.critic1_loss + stats.critic2_loss  # the built-in's: the twin MSEs summed
                sums["actor_loss"] += stats.actor_loss
                sums["alpha"] += stats.alpha
                if "alpha_loss" in sums:
                    sums["alpha_loss"] += stats.alpha_loss
                if "penalty_in_target" in sums:
                    sums["penalty_in_target"] += self.sac.last_penalty_in_target
        self.updates += steps
        self.context.add_metrics({name: total / steps for name, total in sums.items()}, steps)

    def end_epoch(self) -> None:
        pass  # the actor's lr schedule is a tianshou scheduler, stepped by every update (EpochCosineDecay)

    def state_dict(self) -> dict[str, Any]:
        return {
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "framework": FRAMEWORK,
            # actor, critics, target critics, log-alpha and the actor's and critics' optimisers
            "parameters": self.sac.state_dict(),
            "alpha_optim": None if self.alpha_optim is None or self.alpha_optim.optimizer is None
            else self.alpha_optim.optimizer.state_dict(),
            "lr_schedulers": [scheduler.state_dict() for scheduler in self.sac.lr_schedulers],
            "generator": self.generator.get_state(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_framework(state, (self.obs_dim, self.act_dim))
        load_into(self.sac, self.alpha_optim, state)
        for scheduler, saved in zip(self.sac.lr_schedulers, state.get("lr_schedulers") or [], strict=False):
            scheduler.load_state_dict(saved)
        self.generator.set_state(state["generator"].cpu())  # generator states are CPU byte tensors
        self.updates = int(state["updates"])


def check_framework(state: dict[str, Any], dims: tuple[int, int]) -> None:
    if state.get("framework") != FRAMEWORK:
        raise EmpoError(f"the checkpoint's agent state is not tianshou's SAC (framework: {state.get('framework')})")
    if (state.get("obs_dim"), state.get("act_dim")) != dims:
        raise EmpoError(
            f"tianshou SAC checkpoint is for obs_dim={state.get('obs_dim')}, act_dim={state.get('act_dim')}; "
            f"this agent has obs_dim={dims[0]}, act_dim={dims[1]}"
        )


def load_into(sac: SAC, alpha_optim: RecordingAdamFactory | None, state: dict[str, Any]) -> None:
    """The networks, log-alpha and optimisers of ``state`` into ``sac`` (strict: every key must match)."""
    sac.load_state_dict(dict(state["parameters"]))  # a copy: tianshou pops the optimisers' entry
    saved_alpha_optim = state.get("alpha_optim")
    if (alpha_optim is None) != (saved_alpha_optim is None):
        raise ValueError("the temperature is learnt in one of the checkpoint and the config (sac.auto_alpha), not both")
    if alpha_optim is not None and alpha_optim.optimizer is not None:
        alpha_optim.optimizer.load_state_dict(saved_alpha_optim)


class DeterministicPolicy(nn.Module):
    """obs [B, obs_dim] -> tanh(mean) [B, act_dim]: the actor's evaluation policy, in plain torch
    modules (TorchScript and torch.export take it)."""

    def __init__(self, trunk: nn.Module, mean: nn.Module) -> None:
        super().__init__()
        self.trunk, self.mean = trunk, mean

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.mean(self.trunk(obs)))


def build(context: AgentContext) -> TianshouSACAgent:
    return TianshouSACAgent(context)


def policy(config: TrainConfig, task: Task, state: dict[str, Any]) -> nn.Module:
    actor = make_actor(int(state["obs_dim"]), int(state["act_dim"]), config.sac)
    weights = {key[len(ACTOR_PREFIX):]: value for key, value in state["parameters"].items() if key.startswith(ACTOR_PREFIX)}
    actor.load_state_dict(weights)
    # tianshou's Net and MLP wrap an nn.Sequential each: the trunk's layers and the mean's Linear
    return DeterministicPolicy(actor.preprocess.model.model, actor.mu.model).eval()


def check_state(config: TrainConfig, task: Task, state: dict[str, Any]) -> None:
    if state.get("framework") != FRAMEWORK:
        raise ValueError(f"not tianshou's SAC (framework: {state.get('framework')})")
    sac, alpha_optim = make_sac(task.obs_dim, task.act_dim, config.sac)
    load_into(sac, alpha_optim, state)
