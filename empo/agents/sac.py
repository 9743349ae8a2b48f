"""Soft Actor-Critic, written by hand for EMPO's rollout loop (docs/training.md, "The loop").

Why not a library SAC: the loop calls ``update`` millions of times on batches that already live
on the device, so this agent must stay on the device with no host synchronisation per step: no
``.item()``, no numpy, no Python branching on tensor values. ``update`` returns a dict of
tensors; the caller reads them once per epoch or log interval. All randomness comes from the
agent's own ``torch.Generator`` so that a resumed run draws the same numbers.

Settings (docs/training.md, "The loop"): actor and twin critics 256 x 256 (ReLU), tanh-Gaussian actor with
log-std clamped to [-5, 2], actor lr 1e-4 with cosine decay over training, critic lr 3e-4,
gamma 0.99, tau 0.005, automatic temperature (target entropy -|A|, lr 1e-4).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from empo.errors import EmpoError


@dataclass
class SACConfig:
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    actor_lr: float = 1e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 1e-4
    gamma: float = 0.99
    tau: float = 0.005
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    init_alpha: float = 1.0  # log_alpha starts at 0, as in OfflineRL-Kit's MOPO
    target_entropy: float | None = None  # None: -|A|
    auto_alpha: bool = True
    actor_lr_cosine_decay: bool = True  # cosine decay of the actor lr to 0 over training
    # Not in the published recipe: LayerNorm after each critic hidden layer bounds how far Q can
    # extrapolate off the data, which stops the critic divergence the quick ETM causes (see
    # docs/training.md); the paper preset keeps plain critics.
    critic_layer_norm: bool = False
    # Not in the published recipe: a behaviour-cloning term on the batch's real rows, TD3+BC's form
    # (Fujimoto & Gu 2021): the actor loss gains bc_weight * mean|Q| * ||tanh(mean(s)) - a||^2, so the
    # weight does not depend on the scale of the rewards (0.4 is TD3+BC's alpha of 2.5). 0: off.
    # docs/training.md, "Behaviour cloning on the real rows".
    bc_weight: float = 0.0
    # Not in the published recipe: a Polyak average of the actor's weights, updated after every actor
    # step at this rate (0.0002: a window of about 5,000 updates), is the policy that acts
    # deterministically (evaluations, the diagnostics, the final policy, export); training samples
    # from the raw actor. On hopper-medium the raw actor's evaluations swing by 13-16 points from one
    # epoch to the next and the final policy is one draw from the swing (docs/training.md, "The
    # averaged actor"). None: off.
    actor_average_rate: float | None = None

    def __post_init__(self) -> None:
        if not self.hidden_sizes or any(h <= 0 for h in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be positive integers, got {self.hidden_sizes}")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        if self.log_std_min >= self.log_std_max:
            raise ValueError("log_std_min must be below log_std_max")
        if self.init_alpha <= 0:
            raise ValueError(f"init_alpha must be positive, got {self.init_alpha}")
        if self.bc_weight < 0:
            raise ValueError(f"bc_weight must be >= 0, got {self.bc_weight}")
        if self.actor_average_rate is not None and not 0.0 < self.actor_average_rate <= 1.0:
            raise ValueError(f"actor_average_rate must be in (0, 1] or null (off), got {self.actor_average_rate}")
        for name in ("actor_lr", "critic_lr", "alpha_lr"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


@dataclass
class TargetPenalty:
    """An uncertainty penalty taken off the reward inside every critic target (the authors' EMPO).

    Each model transition carries its raw penalty p (``batch["penalties"]``, zero for real data);
    the target uses ``r - c * p`` with ``c = coef``, or with ``decay`` ``c = coef * clamp(V'(s') /
    decay_scale, 0, 1)``, where V'(s') is that update's soft target value of the next state.
    """

    coef: float
    decay: bool = False
    decay_scale: float = 100.0


class EnsembleLinear(nn.Module):
    """``members`` independent linear layers applied in one batched matmul.

    The twin critics run as one [2, B, ...] computation: one kernel per layer instead of two.
    """

    def __init__(self, members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(members, 1, out_features))
        # the same init as nn.Linear, per member
        bound = 1.0 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [members, B, in]
        return torch.baddbmm(self.bias, x, self.weight)


class TwinCritic(nn.Module):
    """Two Q networks Q(s, a) -> [2, B], evaluated together."""

    def __init__(
        self, obs_dim: int, act_dim: int, hidden_sizes: list[int], members: int = 2, layer_norm: bool = False
    ) -> None:
        super().__init__()
        self.members = members
        sizes = [obs_dim + act_dim, *hidden_sizes]
        self.hidden = nn.ModuleList(EnsembleLinear(members, a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        # per-member LayerNorm gain and bias, applied before each hidden ReLU
        self.norm_gain = nn.ParameterList(nn.Parameter(torch.ones(members, 1, b)) for b in hidden_sizes) if layer_norm else None
        self.norm_bias = nn.ParameterList(nn.Parameter(torch.zeros(members, 1, b)) for b in hidden_sizes) if layer_norm else None
        self.out = EnsembleLinear(members, sizes[-1], 1)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, act], dim=-1).unsqueeze(0).expand(self.members, -1, -1)
        for index, layer in enumerate(self.hidden):
            x = layer(x)
            if self.norm_gain is not None and self.norm_bias is not None:
                x = F.layer_norm(x, x.shape[-1:]) * self.norm_gain[index] + self.norm_bias[index]
            x = F.relu(x)
        return self.out(x).squeeze(-1)


class TanhGaussianActor(nn.Module):
    """pi(a|s) = tanh(N(mu(s), sigma(s))), log-std clamped to [log_std_min, log_std_max]."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: list[int], log_std_min: float, log_std_max: float):
        super().__init__()
        layers: list[nn.Module] = []
        last = obs_dim
        for size in hidden_sizes:
            layers += [nn.Linear(last, size), nn.ReLU()]
            last = size
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(last, 2 * act_dim)
        self.act_dim = act_dim
        self.log_std_min = log_std_min
        self.log_std_max = log_std_max

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.head(self.trunk(obs)).chunk(2, dim=-1)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)

    def sample(self, obs: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action in (-1, 1) and its log-probability [B]."""
        mean, log_std = self(obs)
        std = log_std.exp()
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        pre_tanh = mean + std * eps
        action = torch.tanh(pre_tanh)
        # Gaussian log-density minus log|d tanh/du| = log(1 - tanh(u)^2), written in the
        # numerically stable form 2 * (log 2 - u - softplus(-2u)).
        gauss = -0.5 * eps.pow(2) - log_std - 0.5 * math.log(2.0 * math.pi)
        correction = 2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))
        return action, (gauss - correction).sum(dim=-1)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        mean, _ = self(obs)
        return torch.tanh(mean)


class SAC:
    """The agent: actor, twin critics with target copies, temperature, their optimisers.

    Actions are in [-1, 1]^|A| (the MuJoCo tasks' action space).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        config: SACConfig | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
        total_lr_steps: int | None = None,
        target_penalty: TargetPenalty | None = None,
        alpha_max: float | None = None,
        capturable: bool = False,
    ) -> None:
        self.config = config = config or SACConfig()
        self.target_penalty = target_penalty
        self.alpha_max = alpha_max  # the temperature used in the losses is clamped to <= alpha_max
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.device = torch.device(device)
        # parameters are initialised from a seeded CPU generator so that they do not depend on
        # the device or on the global RNG
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.actor = TanhGaussianActor(obs_dim, act_dim, config.hidden_sizes, config.log_std_min, config.log_std_max)
            self.critic = TwinCritic(obs_dim, act_dim, config.hidden_sizes, layer_norm=config.critic_layer_norm)
            self.critic_target = TwinCritic(obs_dim, act_dim, config.hidden_sizes, layer_norm=config.critic_layer_norm)
        self.actor.to(self.device)
        self.critic.to(self.device)
        self.critic_target.to(self.device)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(config.init_alpha), device=self.device, requires_grad=True)
        self.target_entropy = float(-act_dim if config.target_entropy is None else config.target_entropy)

        # ``capturable``: optimiser steps and learning rates live on the device, so that an update
        # can be captured in a CUDA graph (empo/loop/graphed.py); the lr schedule then edits the
        # lr tensor in place
        def adam(params, lr: float) -> torch.optim.Adam:
            if capturable:
                return torch.optim.Adam(params, lr=torch.tensor(lr, device=self.device), capturable=True)
            # fused=True on CUDA was measured no faster here (163 vs 168 updates/s on an H100: the
            # eager update is bound by Python and launches elsewhere), so the default stays
            return torch.optim.Adam(params, lr=lr)

        self.actor_optim = adam(self.actor.parameters(), config.actor_lr)
        self.critic_optim = adam(self.critic.parameters(), config.critic_lr)
        self.alpha_optim = adam([self.log_alpha], config.alpha_lr)
        # cosine decay of the actor lr over ``total_lr_steps`` calls of ``step_lr_schedule``
        # (the loop calls it once an epoch, as OfflineRL-Kit does)
        self.actor_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        if config.actor_lr_cosine_decay and total_lr_steps:
            self.actor_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.actor_optim, T_max=total_lr_steps)

        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed + 1)
        self._critic_params = list(self.critic.parameters())
        self._target_params = list(self.critic_target.parameters())
        # the averaged actor starts as a copy of the actor (config.actor_average_rate)
        self.actor_average: TanhGaussianActor | None = None
        if config.actor_average_rate is not None:
            self.actor_average = copy.deepcopy(self.actor).requires_grad_(False)
            self._actor_params = list(self.actor.parameters())
            self._average_params = list(self.actor_average.parameters())

    # ----------------------------------------------------------------------------- acting
    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Batched actions [B, act_dim] for observations [B, obs_dim] on the device."""
        if deterministic:
            return (self.actor if self.actor_average is None else self.actor_average).deterministic(obs)
        action, _ = self.actor.sample(obs, self.generator if generator is None else generator)
        return action

    @torch.no_grad()
    def q_value(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """min over the twin critics, [B]."""
        return self.critic(obs, act).min(dim=0).values

    @property
    def alpha(self) -> torch.Tensor:
        """The temperature used in the losses: exp(log_alpha), clamped to ``alpha_max`` if set."""
        alpha = self.log_alpha.detach().exp()
        return alpha if self.alpha_max is None else alpha.clamp(max=self.alpha_max)

    # ----------------------------------------------------------------------------- learning
    def update(self, batch: dict[str, torch.Tensor], real_rows: int | None = None) -> dict[str, torch.Tensor]:
        """One gradient step of critics, actor and temperature on ``batch``.

        ``batch`` holds observations, actions, rewards [B], next_observations, terminals [B], and
        with a ``target_penalty`` the raw penalties [B]. ``real_rows``: how many of the first rows
        come from the dataset (None: all), the rows ``bc_weight`` clones. Returns detached scalar
        tensors; reading them forces a sync, so read them rarely.
        """
        cfg = self.config
        obs, act = batch["observations"], batch["actions"]
        alpha = self.alpha

        # critics
        with torch.no_grad():
            next_act, next_log_prob = self.actor.sample(batch["next_observations"], self.generator)
            next_q = self.critic_target(batch["next_observations"], next_act).min(dim=0).values
            next_value = next_q - alpha * next_log_prob
            reward = batch["rewards"]
            penalty_in_target = torch.zeros((), device=self.device)
            if self.target_penalty is not None:
                tp = self.target_penalty
                coef = tp.coef * (next_value / tp.decay_scale).clamp(0.0, 1.0) if tp.decay else tp.coef
                penalty = coef * batch["penalties"]
                reward = reward - penalty
                penalty_in_target = penalty.mean()
            target_q = reward + cfg.gamma * (1.0 - batch["terminals"]) * next_value
        q = self.critic(obs, act)
        critic_loss = (q - target_q.unsqueeze(0)).pow(2).mean(dim=1).sum()
        self.critic_optim.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optim.step()

        # actor: gradients flow through the critics into the action only
        self.critic.requires_grad_(False)
        new_act, log_prob = self.actor.sample(obs, self.generator)
        q_new = self.critic(obs, new_act).min(dim=0).values
        actor_loss = (alpha * log_prob - q_new).mean()
        real = obs.shape[0] if real_rows is None else real_rows
        if cfg.bc_weight > 0 and real > 0:
            cloned = (self.actor.deterministic(obs[:real]) - act[:real]).pow(2).sum(dim=-1).mean()
            actor_loss = actor_loss + cfg.bc_weight * q_new.detach().abs().mean() * cloned
        self.actor_optim.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optim.step()
        self.critic.requires_grad_(True)
        if self.actor_average is not None:
            with torch.no_grad():
                torch._foreach_lerp_(self._average_params, self._actor_params, cfg.actor_average_rate)

        # temperature
        log_prob = log_prob.detach()
        if cfg.auto_alpha:
            alpha_loss = -(self.log_alpha * (log_prob + self.target_entropy)).mean()
            self.alpha_optim.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_optim.step()
        else:
            alpha_loss = torch.zeros((), device=self.device)

        # Polyak averaging of the target critics, in place
        with torch.no_grad():
            torch._foreach_lerp_(self._target_params, self._critic_params, cfg.tau)

        q_detached = q.detach()
        return {
            "critic_loss": critic_loss.detach(),
            "actor_loss": actor_loss.detach(),
            "alpha_loss": alpha_loss.detach(),
            "alpha": alpha,
            "q1_mean": q_detached[0].mean(),
            "q2_mean": q_detached[1].mean(),
            "target_q_mean": target_q.mean(),
            "entropy": -log_prob.mean(),
            "penalty_in_target": penalty_in_target,
        }

    def step_lr_schedule(self) -> None:
        if self.actor_scheduler is not None:
            self.actor_scheduler.step()

    # ----------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "actor": self.actor.state_dict(),
            "actor_average": None if self.actor_average is None else self.actor_average.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "actor_optim": self.actor_optim.state_dict(),
            "critic_optim": self.critic_optim.state_dict(),
            "alpha_optim": self.alpha_optim.state_dict(),
            "actor_scheduler": None if self.actor_scheduler is None else self.actor_scheduler.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (state.get("obs_dim"), state.get("act_dim")) != (self.obs_dim, self.act_dim):
            raise EmpoError(
                f"SAC checkpoint is for obs_dim={state.get('obs_dim')}, act_dim={state.get('act_dim')}; "
                f"this agent has obs_dim={self.obs_dim}, act_dim={self.act_dim}"
            )
        self.actor.load_state_dict(state["actor"])
        if self.actor_average is not None:
            if state.get("actor_average") is None:
                raise EmpoError("SAC checkpoint has no averaged actor, but sac.actor_average_rate is set")
            self.actor_average.load_state_dict(state["actor_average"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.actor_optim.load_state_dict(state["actor_optim"])
        self.critic_optim.load_state_dict(state["critic_optim"])
        self.alpha_optim.load_state_dict(state["alpha_optim"])
        if self.actor_scheduler is not None and state.get("actor_scheduler") is not None:
            self.actor_scheduler.load_state_dict(state["actor_scheduler"])
        self.generator.set_state(state["generator"].cpu())  # generator states are CPU byte tensors

    def save(self, path: str) -> None:
        torch.save(self.state_dict(), path)

    def load(self, path: str) -> None:
        self.load_state_dict(torch.load(path, map_location=self.device, weights_only=False))
