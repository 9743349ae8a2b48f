"""ETM: an ensemble of energy networks E(norm(s, a), norm(Delta s, r)) -> scalar (docs/models.md).

Hand-written because it must be fast and batched on the device: all members are one network
with a leading member dimension, the (s, a) part of the first layer is computed once per input
and reused by every Langevin step and every chain/negative, and one training step updates all
members together (each on its own minibatch, so members stay independent as if trained apart).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from empo.errors import EmpoError
from empo.models.config import ETMConfig, LangevinConfig, ModelConfig
from empo.models.dynamics import DynamicsModel, StepResult
from empo.models.energy_grad import sampler_grad_fn
from empo.models.energy_net import EnergyEnsemble
from empo.models.fitting import DeviceTimer, EnsembleTrainer, HoldoutStopper, holdout_target_mse
from empo.models.langevin import langevin_sample
from empo.models.layers import EnsembleLinear, MaxAbsScaler


def negative_start(config: ETMConfig, y_pos: Tensor, head_prediction: Tensor | None = None) -> Tensor | None:
    """Where the negatives' chains start per ``train_langevin.init``: the positives, the mean head's
    prediction, or None (zeros or uniform, drawn by the sampler). [M, B, dim], no gradient."""
    init = config.train_langevin.init
    if init == "positive":
        return y_pos.detach()
    if init == "mean_head":
        if head_prediction is None:
            raise EmpoError(
                "train_langevin.init: mean_head needs the mean head's prediction (etm.mean_head: true, and "
                "infonce_loss given the negatives, as ETMTrainer.loss_for samples them)"
            )
        return head_prediction.detach()
    return None


def sample_negatives(
    net: EnergyEnsemble,
    code: Tensor,
    dim: int,
    config: ETMConfig,
    generator: torch.Generator | None = None,
    start: Tensor | None = None,
) -> Tensor:
    """``num_negatives`` Langevin-refined negatives per input from the current energy: [M, B, K, dim].

    ``start`` [M, B, dim] is the chains' warm start (``negative_start``); every negative's chain
    starts there plus ``train_langevin.init_noise``.
    """
    sampler = dataclasses.replace(config.train_langevin, chains=config.num_negatives)
    frozen_code = code.detach()
    return langevin_sample(
        lambda y: net.energy_from_code(frozen_code, y),
        tuple(code.shape[:2]),
        dim,
        sampler,
        generator=generator,
        init=start,
        keep_chains=True,
        device=code.device,
        dtype=code.dtype,
        grad_fn=sampler_grad_fn(net, frozen_code, sampler.gradient),
    )


def infonce_loss(
    net: EnergyEnsemble,
    x: Tensor,
    y_pos: Tensor,
    config: ETMConfig,
    generator: torch.Generator | None = None,
    negatives: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """InfoNCE over Langevin-refined negatives plus the gradient penalty, for all members at once.

    x [M, B, input_dim], y_pos [M, B, target_dim] (scaled to [-1, 1]); ``negatives``
    [M, B, K, target_dim] are sampled here unless given. Returns (loss to minimise, InfoNCE per
    member [M], penalty per member [M]); the two per-member figures are means over the batch.
    Per sample the loss is InfoNCE + weight * penalty; ``config.loss_reduction`` sums it over the
    batch (the authors' code) or averages it. Members are summed: each member's gradient is that
    of its own loss, as if trained alone.
    """
    code = net.encode(x)
    if negatives is None:
        negatives = sample_negatives(net, code, y_pos.shape[-1], config, generator, negative_start(config, y_pos))
    y_all = torch.cat([y_pos.unsqueeze(2), negatives], dim=2).detach().requires_grad_(True)
    energy = net.energy_from_code(code, y_all)  # [M, B, 1 + K]
    logits = -energy / config.temperature
    nce = torch.logsumexp(logits, dim=-1) - logits[..., 0]  # [M, B]
    # Gradient penalty at all 1 + K points: squared hinge on ||dE/dy||_2 above the margin.
    (grad,) = torch.autograd.grad(energy.sum(), y_all, create_graph=True)
    excess = F.relu(grad.norm(dim=-1) - config.grad_penalty_margin)
    penalty = excess.square().mean(dim=-1)  # [M, B]: mean over the 1 + K points of a sample
    per_sample = nce + config.grad_penalty_weight * penalty
    loss = per_sample.sum() if config.loss_reduction == "sum" else per_sample.mean(dim=-1).sum()
    return loss, nce.detach().mean(dim=-1), penalty.detach().mean(dim=-1)


def mean_head_loss(prediction: Tensor, target: Tensor, per_row: bool) -> Tensor:
    """The mean head's squared error [M, B, D] -> scalar: summed over dimensions and members, and over
    the batch (``per_row``, as ``loss_reduction: sum``) or averaged over it."""
    squared = (prediction - target).square().sum(dim=-1)  # [M, B]: each member's minibatch
    return squared.sum() if per_row else squared.mean(dim=-1).sum()


def mean_head_network(
    input_dim: int, target_dim: int, hidden: int, members: int = 0, layers: int = 2
) -> torch.nn.Sequential:
    """``layers`` ReLU layers (s, a) -> (Delta s, r); ``members`` > 0: one such MLP per member, [M, B, in] -> [M, B, out]."""
    sizes = [input_dim] + [hidden] * layers + [target_dim]
    modules: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        modules.append(EnsembleLinear(members, a, b) if members else torch.nn.Linear(a, b))
        if i < layers:
            modules.append(torch.nn.ReLU())
    return torch.nn.Sequential(*modules)


class ETMDynamics(DynamicsModel):
    """The ETM ensemble behind the :class:`DynamicsModel` interface."""

    kind = "etm"

    def __init__(self, obs_dim: int, act_dim: int, termination: str, config: ModelConfig) -> None:
        super().__init__(obs_dim, act_dim, termination, config)
        cfg = config.etm
        self.target_scaler = MaxAbsScaler(self.target_dim)
        self.energy = EnergyEnsemble(
            cfg.ensemble_size, obs_dim + act_dim, self.target_dim, cfg.hidden_size, cfg.hidden_layers
        )
        # the warm start of "mean_head" samplers (ETMConfig.mean_head): scaled inputs -> scaled targets
        head_members = cfg.ensemble_size if cfg.mean_head_ensemble else 0
        head_hidden = cfg.mean_head_hidden_size or cfg.hidden_size
        self.mean_head = (
            mean_head_network(obs_dim + act_dim, self.target_dim, head_hidden, head_members, cfg.mean_head_layers)
            if cfg.mean_head else None
        )

    @property
    def members(self) -> int:
        return self.energy.members

    def fit_scalers(self, inputs: Tensor, targets: Tensor) -> None:
        super().fit_scalers(inputs, targets)
        self.target_scaler.fit(targets)

    def sample_members(
        self,
        obs: Tensor,
        act: Tensor,
        sampler: LangevinConfig,
        generator: torch.Generator | None = None,
        init: Tensor | None = None,
    ) -> Tensor:
        """Every member's Langevin sample of (Delta s, r) in raw units: [M, B, obs_dim + 1].

        ``init`` is an optional warm start in raw units, [B, obs_dim + 1] or [M, B, obs_dim + 1].
        """
        self.check_inputs(obs, act)
        x = self.input_scaler(torch.cat([obs, act], dim=-1))
        with torch.no_grad():
            code = self.energy.encode(x)
        start = None
        if init is not None:
            start = self.target_scaler(init)
        elif sampler.init == "mean_head":
            if self.mean_head is None:
                raise EmpoError("this ETM has no mean head (etm.mean_head: false), so a sampler cannot start from it")
            with torch.no_grad():
                start = self.mean_head(x.unsqueeze(0).expand(self.members, -1, -1) if self.config.etm.mean_head_ensemble else x)
        if start is not None and start.dim() == 2:
            start = start.unsqueeze(0).expand(self.members, -1, -1)
        y = langevin_sample(
            lambda y: self.energy.energy_from_code(code, y),
            (self.members, obs.shape[0]),
            self.target_dim,
            sampler,
            generator=generator,
            init=start,
            device=obs.device,
            dtype=obs.dtype,
            grad_fn=sampler_grad_fn(self.energy, code, sampler.gradient),
        )
        return self.target_scaler.inverse(y)

    def step(self, obs: Tensor, act: Tensor, generator: torch.Generator | None = None) -> StepResult:
        """Each sample takes one member at random; penalty = ||std over members of next_obs||_2."""
        delta = self.sample_members(obs, act, self.config.etm.rollout_langevin, generator)  # [M, B, D]
        next_obs_all = obs.unsqueeze(0) + delta[..., :-1]
        pick = torch.randint(self.members, (obs.shape[0],), generator=generator, device=obs.device)
        chosen = delta.gather(0, pick.view(1, -1, 1).expand(1, -1, delta.shape[-1])).squeeze(0)
        next_obs = obs + chosen[:, :-1]
        penalty = next_obs_all.std(dim=0, correction=0).norm(dim=-1)
        return StepResult(next_obs, chosen[:, -1], self.termination_fn(next_obs), penalty)

    def predict(self, obs: Tensor, act: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Median over members of the noiseless evaluation chains (100 steps from zero by default).

        The median, not the mean: where members find different modes (at a discontinuity) the
        mean would land between them, on no real outcome.
        """
        delta = self.sample_members(obs, act, self.config.etm.eval_langevin, generator).median(dim=0).values
        return obs + delta[:, :-1], delta[:, -1]


class ETMTrainer(EnsembleTrainer):
    """One optimiser for all members; each member draws its own minibatch every step."""

    def __init__(
        self, model: ETMDynamics, x: Tensor, y: Tensor, x_hold: Tensor, y_hold: Tensor, generator: torch.Generator
    ) -> None:
        self.model, self.cfg, self.generator = model, model.config.etm, generator
        self.x, self.y = model.input_scaler(x), model.target_scaler(y)
        params = list(model.energy.parameters()) + (list(model.mean_head.parameters()) if model.mean_head is not None else [])
        self.optimizer = torch.optim.Adam(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        self.loss_per_row = self.cfg.loss_reduction == "sum"
        self.done = False
        self.stopper = HoldoutStopper(self.cfg.early_stop_improvement, self.cfg.early_stop_patience, self.cfg.early_stop_window)
        self.best_state: dict[str, Tensor] | None = None
        # torch's own Polyak averaging over the parameters (the scalers and the holdout index are
        # buffers, fixed before training, so the copy's stay right)
        self.averaged = (
            None if self.cfg.weight_ema is None
            else AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(self.cfg.weight_ema), use_buffers=False)
        )

    def max_epochs(self) -> int:
        return self.cfg.epochs

    def scored_model(self) -> ETMDynamics:
        return self.model if self.averaged is None else self.averaged.module

    def end_epoch(self, errors: dict[str, float]) -> None:
        """With ``early_stop_patience``: keep the best epoch's ETM by its holdout target MSE, stop when it stalls."""
        if self.cfg.early_stop_patience is None:
            return
        target_mse = holdout_target_mse(errors, self.model.obs_dim)
        if self.stopper.improves(torch.tensor([target_mse]))[0]:
            self.best_state = {k: v.detach().clone() for k, v in self.scored_model().state_dict().items()}
        errors["holdout_target_mse_best"] = float(self.stopper.best[0])
        self.done = self.stopper.stalled()

    def finish(self) -> None:
        """The saved ETM: the best epoch's (with early stopping), else the averaged weights (with them), else the last."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        elif self.averaged is not None:
            self.model.load_state_dict(self.averaged.module.state_dict())

    def state_dict(self) -> dict[str, Any]:
        state = {"optimizer": self.optimizer.state_dict(), "stopper": self.stopper.state_dict(), "best_state": self.best_state}
        if self.averaged is not None:
            state["averaged"] = self.averaged.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if "stopper" in state:  # checkpoints written before early stopping existed have neither
            self.stopper.load_state_dict(state["stopper"])
            best = state["best_state"]
            self.best_state = None if best is None else {k: v.to(self.x.device) for k, v in best.items()}
        if self.averaged is not None:
            if "averaged" not in state:
                raise EmpoError("this checkpoint was written without etm.weight_ema; resume it with the settings it was started with")
            self.averaged.load_state_dict(state["averaged"])

    def holdout_rows(self, n_hold: int) -> int:
        return min(self.cfg.holdout_eval_size, n_hold)  # Langevin prediction is costly

    def loss_for(self, index: Tensor, timer: DeviceTimer) -> Tensor:
        net, head = self.model.energy, self.model.mean_head
        x, y = self.x[index], self.y[index]
        head_prediction = head(x) if head is not None else None
        with timer:
            with torch.no_grad():
                code = net.encode(x)
            start = negative_start(self.cfg, y, head_prediction)
            negatives = sample_negatives(net, code, y.shape[-1], self.cfg, self.generator, start)
        loss, _, _ = infonce_loss(net, x, y, self.cfg, self.generator, negatives=negatives)
        if head_prediction is not None:  # its parameters are its own, so this term trains the head alone
            loss = loss + mean_head_loss(head_prediction, y, self.loss_per_row)
        return loss

    def update(self, index: Tensor, timer: DeviceTimer) -> Tensor:
        """The ETM update, then the mean head's further updates (``etm.mean_head_updates``) alone."""
        loss = super().update(index, timer)
        head = self.model.mean_head
        for _ in range(self.cfg.mean_head_updates - 1):
            rows = torch.randint(self.x.shape[0], tuple(index.shape), generator=self.generator, device=self.x.device)
            self.step_on(mean_head_loss(head(self.x[rows]), self.y[rows], self.loss_per_row))  # reaches the head alone
        if self.averaged is not None:
            self.averaged.update_parameters(self.model)
        return loss
