"""What every transition-model kind's fit shares: a device timer and the ensemble trainer's base.

Hand-written because the fit must stay on the device: all members update together, each on its
own minibatch rows, and losses are read once per epoch (empo/models/train.py runs the epochs).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from empo.models.dynamics import DynamicsModel


class DeviceTimer:
    """Sums the time of code sections without a host sync per section (CUDA events, read per epoch)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.seconds = 0.0
        self.events: list[tuple[Any, Any]] = []
        self._start: Any = None

    def __enter__(self) -> DeviceTimer:
        if self.cuda:
            self._start = torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self.events.append((self._start, end))
        else:
            self.seconds += time.perf_counter() - self._start

    def total(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
            self.seconds += sum(start.elapsed_time(end) for start, end in self.events) / 1000.0
            self.events.clear()
        out, self.seconds = self.seconds, 0.0
        return out


class HoldoutStopper:
    """OfflineRL-Kit's early-stopping rule over holdout errors, one per member (or one for all).

    A member improves when its error falls by more than ``improvement`` of its best; the fit has
    stalled after ``patience`` epochs in which no member improved (never, with ``patience`` None).
    With ``window`` above 1 the error compared is the mean of the last ``window`` epochs' (the
    first ``window - 1`` epochs compare the mean of those so far), so that one epoch's noise neither
    sets a best that later epochs cannot beat nor counts as progress.
    """

    def __init__(self, improvement: float, patience: int | None, window: int = 1) -> None:
        self.improvement, self.patience, self.window = improvement, patience, window
        self.best: Tensor | None = None
        self.epochs_since_update = 0
        self.recent: list[Tensor] = []

    def improves(self, errors: Tensor) -> Tensor:
        """Record one epoch's ``errors`` [members] (CPU); returns which members improved (their best is now these)."""
        self.recent = (self.recent + [errors.detach().cpu().double()])[-self.window:]
        errors = torch.stack(self.recent).mean(dim=0)
        if self.best is None:
            self.best = torch.full_like(errors, float("inf"))
        improved = torch.isinf(self.best) | ((self.best - errors) / self.best > self.improvement)
        self.best = torch.where(improved, errors, self.best)
        self.epochs_since_update = 0 if bool(improved.any()) else self.epochs_since_update + 1
        return improved

    def stalled(self) -> bool:
        return self.patience is not None and self.epochs_since_update >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "epochs_since_update": self.epochs_since_update, "recent": list(self.recent)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.epochs_since_update = state["best"], int(state["epochs_since_update"])
        self.recent = list(state.get("recent", []))[-self.window:]  # checkpoints from before the window have none


def holdout_target_mse(errors: dict[str, float], obs_dim: int) -> float:
    """The raw-unit MSE over all target dimensions (next state and reward) from the per-part errors
    of ``empo.models.train.holdout_errors``: the FTM's early-stopping error, for a whole ensemble."""
    return (obs_dim * errors["holdout_next_obs_mse"] + errors["holdout_reward_mse"]) / (obs_dim + 1)


class EnsembleTrainer:
    """What every model kind's trainer shares: the epoch's length, each member's minibatch rows, the update.

    A kind's trainer (``ETMTrainer`` in etm.py, ``FTMTrainer`` in ftm.py) is built as
    ``Trainer(model, x_train, y_train, x_hold, y_hold, generator)`` with raw-unit inputs
    cat(s, a) and targets cat(s' - s, r), and says how many epochs to run (``max_epochs``) and how
    many holdout rows to score each epoch (``holdout_rows``); ``train_dynamics`` does the rest.
    """

    cfg: Any
    x: Tensor
    model: DynamicsModel
    generator: torch.Generator
    optimizer: torch.optim.Optimizer
    loss_per_row: bool = False  # the loss sums its batch's rows: the log divides by the batch size

    done: bool = False  # set by end_epoch when the fit should stop early
    # per training row, how often it is drawn relative to the others (None: uniformly); set by
    # train_dynamics from the kind's fall_weight (rows before a fall)
    row_weights: Tensor | None = None

    def loss_for(self, index: Tensor, timer: DeviceTimer) -> Tensor:
        """The summed loss of all members on their rows ``index`` [members, batch]."""
        raise NotImplementedError

    def max_epochs(self) -> int:
        raise NotImplementedError

    def holdout_rows(self, n_hold: int) -> int:
        """Holdout rows whose error is logged each epoch."""
        return n_hold

    def end_epoch(self, errors: dict[str, float]) -> None:
        """After each epoch's holdout errors (which it may add to): early stopping and the like."""

    def finish(self) -> None:
        """After the last epoch, before the model is saved."""

    def scored_model(self) -> DynamicsModel:
        """The model whose holdout error an epoch logs (and early stopping reads): the trained one,
        or the ETM's averaged weights (``etm.weight_ema``)."""
        return self.model

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])

    def train_epoch(self, bar: Any, timer: DeviceTimer) -> Tensor:
        """One epoch of updates; returns the mean loss per member, step (and row) as a device tensor."""
        total = torch.zeros((), device=self.x.device)
        for index in self.minibatch_indices():
            loss = self.update(index, timer)
            total += loss / (self.model.members * (index.shape[1] if self.loss_per_row else 1))
            bar.update(1)
        return total / self.steps_per_epoch()

    def update(self, index: Tensor, timer: DeviceTimer) -> Tensor:
        """One optimiser step on the rows ``index`` [members, batch]; returns the loss, detached."""
        loss = self.loss_for(index, timer)
        self.step_on(loss)
        return loss.detach()

    def step_on(self, loss: Tensor) -> None:
        """One optimiser step on ``loss``; parameters it does not reach keep no gradient, so Adam skips them."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def steps_per_epoch(self) -> int:
        return self.cfg.steps_per_epoch or max(1, math.ceil(self.x.shape[0] / self.cfg.batch_size))

    def minibatch_indices(self) -> Iterator[Tensor]:
        """Row indices [members, batch] for each step of an epoch, drawn lazily.

        A fixed ``steps_per_epoch`` draws independent random rows per step; otherwise each member
        passes over its own permutation of the data (or, with ``bootstrap``, a resample of it).
        """
        n, batch, members = self.x.shape[0], min(self.cfg.batch_size, self.x.shape[0]), self.model.members
        device = self.x.device
        fixed = self.cfg.steps_per_epoch is not None
        if not fixed:
            if getattr(self.cfg, "bootstrap", False):
                order = torch.randint(n, (members, n), generator=self.generator, device=device)
            else:
                order = torch.argsort(torch.rand(members, n, generator=self.generator, device=device), dim=1)
        for step in range(self.steps_per_epoch()):
            if fixed and self.row_weights is not None:
                yield torch.multinomial(self.row_weights, members * batch, replacement=True, generator=self.generator).view(members, batch)
            elif fixed:
                yield torch.randint(n, (members, batch), generator=self.generator, device=device)
            else:
                yield order[:, step * batch : (step + 1) * batch]
