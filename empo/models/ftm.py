"""FTM: the Gaussian forward-model ensemble used by MOPO (docs/method.md, "FTM").

Hand-written because it must be fast and batched on the device: all members (7 by default) are
one network with a leading member dimension, trained together (each on its own bootstrap
minibatch) and evaluated in one forward pass.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from empo.models.config import FTMConfig, ModelConfig
from empo.models.dynamics import DynamicsModel, StepResult
from empo.models.fitting import DeviceTimer, EnsembleTrainer, HoldoutStopper
from empo.models.layers import EnsembleLinear


class GaussianEnsemble(nn.Module):
    """Swish MLPs giving the mean and a soft-bounded log-variance of (Delta s, r) per member."""

    def __init__(self, config: FTMConfig, input_dim: int, target_dim: int) -> None:
        super().__init__()
        members, hidden = config.ensemble_size, config.hidden_size
        self.members, self.target_dim = members, target_dim
        sizes = [input_dim] + [hidden] * config.hidden_layers
        self.hidden = nn.ModuleList(EnsembleLinear(members, a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.output = EnsembleLinear(members, hidden, 2 * target_dim)
        # Per member (not shared) so that each member's snapshot/early stopping is independent.
        self.max_logvar = nn.Parameter(torch.full((members, 1, target_dim), config.max_logvar_init))
        self.min_logvar = nn.Parameter(torch.full((members, 1, target_dim), config.min_logvar_init))
        self.weight_decays = list(config.weight_decays)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x [M, N, input_dim] or [N, input_dim] -> (mean, logvar), each [M, N, target_dim]."""
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.members, -1, -1)
        h = x
        for layer in self.hidden:
            h = F.silu(layer(h))
        mean, raw_logvar = self.output(h).chunk(2, dim=-1)
        logvar = self.max_logvar - F.softplus(self.max_logvar - raw_logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar

    def decay_loss(self) -> Tensor:
        layers = [*self.hidden, self.output]
        return sum(wd * 0.5 * layer.weight.square().sum() for wd, layer in zip(self.weight_decays, layers, strict=True))


def gaussian_nll_loss(net: GaussianEnsemble, x: Tensor, target: Tensor, logvar_coef: float) -> tuple[Tensor, Tensor]:
    """MOPO's training loss for all members: x [M, B, in], target [M, B, D]. Returns (loss, MSE per member)."""
    mean, logvar = net(x)
    sq = (mean - target).square()
    nll = (sq * torch.exp(-logvar) + logvar).mean(dim=(1, 2))  # [M]
    loss = nll.sum() + net.decay_loss() + logvar_coef * (net.max_logvar.sum() - net.min_logvar.sum())
    return loss, sq.mean(dim=(1, 2)).detach()


class FTMDynamics(DynamicsModel):
    """The FTM ensemble behind the :class:`DynamicsModel` interface (raw-unit targets, as MOPO)."""

    kind = "ftm"

    def __init__(self, obs_dim: int, act_dim: int, termination: str, config: ModelConfig) -> None:
        super().__init__(obs_dim, act_dim, termination, config)
        cfg = config.ftm
        self.net = GaussianEnsemble(cfg, obs_dim + act_dim, self.target_dim)
        self.register_buffer("elites", torch.arange(cfg.elites, dtype=torch.long))

    @property
    def members(self) -> int:
        return self.net.members

    def distribution(self, obs: Tensor, act: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, std) of (Delta s, r) for the elite members: each [E, B, obs_dim + 1]."""
        self.check_inputs(obs, act)
        with torch.no_grad():
            mean, logvar = self.net(self.input_scaler(torch.cat([obs, act], dim=-1)))
        return mean[self.elites], torch.exp(0.5 * logvar[self.elites])

    def step(self, obs: Tensor, act: Tensor, generator: torch.Generator | None = None) -> StepResult:
        """Sample each member's Gaussian, keep a random elite per sample; penalty = max_e ||std_e||_2."""
        mean, std = self.distribution(obs, act)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        samples = mean + std * noise
        pick = torch.randint(mean.shape[0], (obs.shape[0],), generator=generator, device=obs.device)
        chosen = samples.gather(0, pick.view(1, -1, 1).expand(1, -1, samples.shape[-1])).squeeze(0)
        next_obs = obs + chosen[:, :-1]
        penalty = std.norm(dim=-1).amax(dim=0)
        return StepResult(next_obs, chosen[:, -1], self.termination_fn(next_obs), penalty)

    def predict(self, obs: Tensor, act: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Mean over elites of the predicted means."""
        mean, _ = self.distribution(obs, act)
        delta = mean.mean(dim=0)
        return obs + delta[:, :-1], delta[:, -1]


class FTMTrainer(EnsembleTrainer):
    """Bootstrap minibatches per member; holdout early stopping with per-member best snapshots."""

    def __init__(
        self, model: FTMDynamics, x: Tensor, y: Tensor, x_hold: Tensor, y_hold: Tensor, generator: torch.Generator
    ) -> None:
        self.model, self.cfg, self.generator = model, model.config.ftm, generator
        self.x, self.y = model.input_scaler(x), y
        self.x_hold, self.y_hold = model.input_scaler(x_hold), y_hold
        self.optimizer = torch.optim.Adam(model.net.parameters(), lr=self.cfg.lr)
        self.stopper = HoldoutStopper(self.cfg.early_stop_improvement, self.cfg.early_stop_patience)
        self.best_state = {k: v.detach().clone() for k, v in model.net.state_dict().items()}
        self.epochs = 0
        self.done = False

    def max_epochs(self) -> int:
        return self.cfg.max_epochs if self.cfg.max_epochs is not None else 10**9  # None: until early stopping

    def loss_for(self, index: Tensor, timer: DeviceTimer) -> Tensor:
        loss, _ = gaussian_nll_loss(self.model.net, self.x[index], self.y[index], self.cfg.logvar_loss_coef)
        return loss

    @torch.no_grad()
    def member_holdout_mse(self) -> Tensor:
        mean, _ = self.model.net(self.x_hold)
        return (mean - self.y_hold).square().mean(dim=(1, 2)).cpu()

    def end_epoch(self, errors: dict[str, float]) -> None:
        """Early stopping: a member improves if its holdout MSE drops by more than 1% of its best."""
        mse = self.member_holdout_mse()
        improved = self.stopper.improves(mse)
        if bool(improved.any()):
            mask = improved.to(self.x.device)
            for name, value in self.model.net.state_dict().items():
                keep = mask.view(-1, *([1] * (value.dim() - 1)))
                self.best_state[name] = torch.where(keep, value, self.best_state[name]).detach().clone()
        self.epochs += 1
        errors["member_holdout_mse_min"] = float(mse.min())
        if self.stopper.stalled() or (self.cfg.max_epochs is not None and self.epochs >= self.cfg.max_epochs):
            self.done = True

    def finish(self) -> None:
        """Restore each member's best snapshot and keep the elites with the lowest holdout MSE."""
        self.model.net.load_state_dict(self.best_state)
        elites = torch.argsort(self.member_holdout_mse())[: self.cfg.elites]
        self.model.elites = elites.sort().values.to(self.model.elites.device)

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "stopper": self.stopper.state_dict(),
            "best_state": self.best_state,
            "epochs": self.epochs,
            "done": self.done,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if "stopper" in state:
            self.stopper.load_state_dict(state["stopper"])
        else:  # a checkpoint written before the stopper was shared with the ETM
            self.stopper.load_state_dict({"best": state["best_mse"].double(), "epochs_since_update": state["epochs_since_update"]})
        self.best_state = {k: v.to(self.x.device) for k, v in state["best_state"].items()}
        self.epochs = int(state["epochs"])
        self.done = bool(state["done"])
