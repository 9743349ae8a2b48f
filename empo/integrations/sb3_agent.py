"""stable-baselines3's SAC as the agent of EMPO's loop (``agent: sb3-sac``, ``empo-train --agent sb3-sac``).

The loop keeps its data, rollouts and evaluation (empo/loop/trainer.py); SB3's SAC learns through
its own ``train()`` from :class:`MixedReplayBuffer`, an SB3 replay buffer whose ``sample`` draws
the loop's mixed batches (real transitions at ``training.real_ratio``, the rest from the model
buffer that the rollouts refresh every ``rollout.every`` updates). Nothing is added to it: the
loop fills the buffers it reads.

Settings mapped from the run config's ``sac:`` section: hidden sizes, gamma, tau, batch size,
target entropy (-|A|), initial temperature. SB3 has one learning rate for actor, critics and
temperature: ``sac.critic_lr`` (3e-4, SB3's default too), constant (the built-in SAC decays the
actor's, 1e-4, by a cosine). SB3's critics have no LayerNorm (``sac.critic_layer_norm`` is not
applied) and its actor clamps the log-std to [-20, 2]. See docs/integrations.md.

EMPO's published mechanism (``{algo}.penalty_at: update``, ``penalty_decay``, ``alpha_max``) runs in
:class:`PenalisedSAC`, SB3's SAC whose ``train`` subtracts each row's penalty inside the critic
target, as the built-in SAC does (empo/agents/sac.py), and clamps the temperature its losses use.
"""

from __future__ import annotations

import random
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.logger import configure
from stable_baselines3.common.utils import polyak_update
from torch import nn
from torch.nn import functional as F

from empo.agents.sac import TargetPenalty
from empo.data.tasks import Task
from empo.errors import EmpoError
from empo.loop.agents import AgentContext
from empo.loop.config import TrainConfig

# SB3's logged figure -> the loop's metric name
METRICS = {
    "train/critic_loss": "critic_loss",
    "train/actor_loss": "actor_loss",
    "train/ent_coef_loss": "alpha_loss",
    "train/ent_coef": "alpha",
    "train/penalty_in_target": "penalty_in_target",
}


class MixedSamples(NamedTuple):
    """SB3's ``ReplayBufferSamples`` fields (SB3's ``train`` reads them by name) and each row's raw
    penalty [B, 1] (zero for real rows), which :class:`PenalisedSAC` subtracts in the critic target."""

    observations: torch.Tensor
    actions: torch.Tensor
    next_observations: torch.Tensor
    dones: torch.Tensor
    rewards: torch.Tensor
    discounts: torch.Tensor | None = None
    penalties: torch.Tensor | None = None


class MixedReplayBuffer(ReplayBuffer):
    """An SB3 replay buffer that serves the EMPO loop's mixed batches (``context.mixed_batch``)."""

    def __init__(self, buffer_size: int, observation_space: gym.Space, action_space: gym.Space,
                 device: torch.device | str = "auto", n_envs: int = 1, context: AgentContext | None = None,
                 **kwargs: Any) -> None:
        # SB3 allocates numpy storage of buffer_size rows; the data lives in the loop's buffers instead
        super().__init__(1, observation_space, action_space, device, n_envs, **kwargs)
        self.context = context

    def add(self, *args: Any, **kwargs: Any) -> None:
        raise EmpoError("MixedReplayBuffer is filled by the EMPO loop (dataset and model rollouts), not by SB3's collection")

    def sample(self, batch_size: int, env: Any = None) -> MixedSamples:
        if self.context is None:
            raise EmpoError("MixedReplayBuffer has no loop context to draw from")
        batch = self.context.mixed_batch(batch_size)
        penalties = batch.get("penalties")
        return MixedSamples(
            batch["observations"],
            batch["actions"],
            batch["next_observations"],
            batch["terminals"].unsqueeze(1),
            batch["rewards"].unsqueeze(1),
            penalties=None if penalties is None else penalties.unsqueeze(1),
        )


class PenalisedSAC(SAC):
    """SB3's SAC with EMPO's critic target and temperature clamp (the built-in SAC's semantics).

    ``target_penalty``: the target is ``r - c * p + discount * (1 - done) * V'(s')`` with
    ``V'(s') = min Q'(s', a') - alpha * log pi(a'|s')`` and ``c = coef``, or with decay ``coef *
    clamp(V'(s') / decay_scale, 0, 1)`` per row; ``p`` is the row's raw penalty (zero for real rows).
    ``alpha_max``: the temperature used in the target and the actor loss is ``min(alpha, alpha_max)``;
    log alpha itself learns unclamped. With neither set, ``train`` is SB3's own.
    """

    target_penalty: TargetPenalty | None = None
    alpha_max: float | None = None

    def temperature(self) -> torch.Tensor:
        """The alpha the losses use: SB3's (detached), clamped to ``alpha_max`` if set."""
        if self.ent_coef_optimizer is not None and self.log_ent_coef is not None:
            alpha = torch.exp(self.log_ent_coef.detach())
        else:
            alpha = self.ent_coef_tensor
        return alpha if self.alpha_max is None else alpha.clamp(max=self.alpha_max)

    @torch.no_grad()
    def target_q_values(self, data: MixedSamples, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(critic target [B, 1], the penalty taken off each row [B, 1]); draws a' ~ pi(.|s')."""
        next_actions, next_log_prob = self.actor.action_log_prob(data.next_observations)
        next_q = (
            torch.cat(self.critic_target(data.next_observations, next_actions), dim=1).min(dim=1, keepdim=True).values
        )
        next_value = next_q - alpha * next_log_prob.reshape(-1, 1)
        penalty = torch.zeros_like(next_value)
        if self.target_penalty is not None:
            if getattr(data, "penalties", None) is None:  # a plain SB3 buffer's samples have no penalties
                raise EmpoError("penalty_at: update needs each row's penalty; the replay buffer gave none")
            tp = self.target_penalty
            coef = tp.coef * (next_value / tp.decay_scale).clamp(0.0, 1.0) if tp.decay else tp.coef
            penalty = coef * data.penalties
        discount = data.discounts if data.discounts is not None else self.gamma
        return data.rewards - penalty + (1.0 - data.dones) * discount * next_value, penalty

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        if self.target_penalty is None and self.alpha_max is None:
            super().train(gradient_steps, batch_size)
            return
        # SB3's update step for step (the same draws in the same order), with EMPO's target and alpha
        self.policy.set_training_mode(True)
        optimizers = [self.actor.optimizer, self.critic.optimizer]
        if self.ent_coef_optimizer is not None:
            optimizers.append(self.ent_coef_optimizer)
        self._update_learning_rate(optimizers)
        logged: dict[str, list[float]] = {
            "ent_coef": [],
            "ent_coef_loss": [],
            "actor_loss": [],
            "critic_loss": [],
            "penalty_in_target": [],
        }
        for step in range(gradient_steps):
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            if self.use_sde:
                self.actor.reset_noise()
            actions_pi, log_prob = self.actor.action_log_prob(data.observations)
            log_prob = log_prob.reshape(-1, 1)
            alpha = self.temperature()
            if self.ent_coef_optimizer is not None and self.log_ent_coef is not None:
                ent_coef_loss = -(self.log_ent_coef * (log_prob + self.target_entropy).detach()).mean()
                self.ent_coef_optimizer.zero_grad()
                ent_coef_loss.backward()
                self.ent_coef_optimizer.step()
                logged["ent_coef_loss"].append(ent_coef_loss.item())
            logged["ent_coef"].append(alpha.item())

            target, penalty = self.target_q_values(data, alpha)
            logged["penalty_in_target"].append(penalty.mean().item())
            critic_loss = 0.5 * sum(F.mse_loss(q, target) for q in self.critic(data.observations, data.actions))
            self.critic.optimizer.zero_grad()
            critic_loss.backward()  # type: ignore[union-attr]
            self.critic.optimizer.step()
            logged["critic_loss"].append(critic_loss.item())  # type: ignore[union-attr]

            q_pi = torch.cat(self.critic(data.observations, actions_pi), dim=1).min(dim=1, keepdim=True).values
            actor_loss = (alpha * log_prob - q_pi).mean()
            self.actor.optimizer.zero_grad()
            actor_loss.backward()
            self.actor.optimizer.step()
            logged["actor_loss"].append(actor_loss.item())

            if step % self.target_update_interval == 0:
                polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
                polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        for name, values in logged.items():
            if values:
                self.logger.record(f"train/{name}", float(np.mean(values)))


class _SpacesOnly(gym.Env):
    """What SB3's constructor reads (the spaces); the loop never steps it."""

    def __init__(self, task: Task) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (task.obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (task.act_dim,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        raise EmpoError("the sb3-sac agent learns from the EMPO loop's buffers; its env is never reset")

    def step(self, action: Any) -> Any:
        raise EmpoError("the sb3-sac agent learns from the EMPO loop's buffers; its env is never stepped")


def not_applied(config: TrainConfig) -> list[str]:
    """The run's ``sac:`` settings that SB3's SAC has no place for (it runs its own instead)."""
    sac = config.sac
    notes = []
    if sac.critic_layer_norm:
        notes.append("sac.critic_layer_norm=true (SB3's critics have no LayerNorm)")
    if (sac.actor_lr, sac.alpha_lr) != (sac.critic_lr, sac.critic_lr):
        notes.append(f"sac.actor_lr={sac.actor_lr} and sac.alpha_lr={sac.alpha_lr} (SB3 has one rate: sac.critic_lr={sac.critic_lr})")
    if sac.actor_lr_cosine_decay:
        notes.append("sac.actor_lr_cosine_decay=true (SB3's rate is constant here)")
    if (sac.log_std_min, sac.log_std_max) != (-20.0, 2.0):
        notes.append(f"sac.log_std_min/max={sac.log_std_min}/{sac.log_std_max} (SB3 clamps to -20/2)")
    return notes


def make_sac(
    config: TrainConfig, task: Task, device: torch.device | str, context: AgentContext | None = None
) -> PenalisedSAC:
    """SB3's SAC for the run's settings, its weights from ``config.seed``, with the algorithm's critic
    target penalty and temperature clamp. SB3 seeds the process's global generators when given a seed;
    their state is put back, so building one (to load a run) changes nothing."""
    states = (torch.random.get_rng_state(), np.random.get_state(), random.getstate())
    try:
        return _make_sac(config, task, device, context)
    finally:
        torch.random.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])


def _make_sac(
    config: TrainConfig, task: Task, device: torch.device | str, context: AgentContext | None = None
) -> PenalisedSAC:
    sac_config = config.sac
    target_entropy: Any = "auto" if sac_config.target_entropy is None else float(sac_config.target_entropy)
    sac = PenalisedSAC(
        "MlpPolicy",
        _SpacesOnly(task),
        learning_rate=sac_config.critic_lr,
        buffer_size=1,
        batch_size=config.training.batch_size,
        tau=sac_config.tau,
        gamma=sac_config.gamma,
        ent_coef=f"auto_{sac_config.init_alpha}" if sac_config.auto_alpha else sac_config.init_alpha,
        target_entropy=target_entropy,
        replay_buffer_class=MixedReplayBuffer,
        replay_buffer_kwargs={"context": context},
        policy_kwargs={"net_arch": list(sac_config.hidden_sizes)},
        seed=config.seed,
        device=device,
        verbose=0,
    )
    sac.set_logger(configure(None, []))  # train() records its losses; the loop reads them (no files)
    # the loop's penalty (its coefficient in the run's unit); without a loop (loading a policy) none is needed
    sac.target_penalty = context.penalty.target_penalty() if context is not None else None
    sac.alpha_max = config.algorithm.alpha_max
    return sac


class SB3Agent:
    def __init__(self, context: AgentContext) -> None:
        self.context = context
        self.sac = make_sac(context.config, context.task, context.device, context)
        skipped = not_applied(context.config)
        if skipped:
            context.log(f"sb3-sac does not apply {'; '.join(skipped)}")
        self.obs_dim, self.act_dim = context.task.obs_dim, context.task.act_dim
        names = tuple(METRICS.values())
        if not context.config.sac.auto_alpha:
            names = tuple(name for name in names if name != "alpha_loss")
        if self.sac.target_penalty is None:  # SB3's own train() does not report it
            names = tuple(name for name in names if name != "penalty_in_target")
        self.metric_names = names

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        # SB3's actor samples from torch's global generator (the loop checkpoints its state)
        return self.sac.actor(obs, deterministic=deterministic)

    @torch.no_grad()
    def q_value(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.sac.critic(obs, act), dim=1).min(dim=1).values

    def train(self, steps: int) -> None:
        self.sac.train(gradient_steps=steps, batch_size=self.context.config.training.batch_size)
        logged = dict(self.sac.logger.name_to_value)
        if "train/critic_loss" in logged:  # SB3 logs half the sum of the critics' squared errors; the loop, the sum
            logged["train/critic_loss"] *= 2.0
        self.context.add_metrics({name: logged[key] for key, name in METRICS.items() if key in logged}, steps)
        self.sac.logger.dump()  # clears the recorded values (no output formats)

    def end_epoch(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        log_ent_coef = getattr(self.sac, "log_ent_coef", None)
        return {
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "framework": "stable-baselines3",
            "parameters": self.sac.get_parameters(),  # policy (actor, critics, targets) and optimisers
            "log_ent_coef": None if log_ent_coef is None else log_ent_coef.detach().clone(),
            "n_updates": self.sac._n_updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("framework") != "stable-baselines3":
            raise EmpoError(f"the checkpoint's agent state is not stable-baselines3's SAC (framework: {state.get('framework')})")
        self.sac.set_parameters(state["parameters"], exact_match=True, device=self.context.device)
        if state.get("log_ent_coef") is not None:
            with torch.no_grad():
                self.sac.log_ent_coef.copy_(state["log_ent_coef"])
        self.sac._n_updates = int(state["n_updates"])


def build(context: AgentContext) -> SB3Agent:
    return SB3Agent(context)


def policy(config: TrainConfig, task: Task, state: dict[str, Any]) -> nn.Module:
    """tanh(mu(latent_pi(obs))) of SB3's actor as plain torch layers (SB3's own forward reads gymnasium
    spaces, which TorchScript cannot compile; the flattening of a vector observation is the identity)."""
    from empo.loop.builtin_agent import DeterministicPolicy

    sac = make_sac(config, task, "cpu")
    sac.policy.load_state_dict(state["parameters"]["policy"])
    return DeterministicPolicy(sac.actor.latent_pi, sac.actor.mu, task.act_dim).eval()


def check_state(config: TrainConfig, task: Task, state: dict[str, Any]) -> None:
    if state.get("framework") != "stable-baselines3":
        raise ValueError(f"not stable-baselines3's SAC (framework: {state.get('framework')})")
    make_sac(config, task, "cpu").set_parameters(state["parameters"], exact_match=True, device="cpu")
