"""FTM: the Gaussian forward-model ensemble used by MOPO (DESIGN.md section 6).

Hand-written because it must be fast and batched on the device: all members (7 by default) are
one network with a leading member dimension, trained together (each on its own bootstrap
minibatch) and evaluated in one forward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from empo.models.config import FTMConfig, ModelConfig
from empo.models.dynamics import DynamicsModel, StepResult
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
