"""``train_dynamics``: fit an ETM or FTM ensemble on a dataset, with logs, checkpoints and resume.

Per epoch: a tqdm bar, one TensorBoard scalar set and one CSV row (loss, holdout error in raw
units, sampler seconds, epoch seconds), then a checkpoint written atomically. The data stay on
the device as tensors; losses are summed on the device and read once per epoch.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from empo.config import from_dict, save_yaml, to_dict
from empo.errors import EmpoError
from empo.models.config import ModelConfig
from empo.models.dynamics import DynamicsModel, build_model
from empo.models.etm import ETMDynamics, infonce_loss, sample_negatives
from empo.models.ftm import FTMDynamics, gaussian_nll_loss
from empo.threads import ThreadCounter
from empo.utils import atomic_write

if TYPE_CHECKING:
    from empo.data.tasks import Task
    from empo.data.transitions import Transitions

CHECKPOINT = "checkpoint.pt"
LOG_CSV = "train_log.csv"
CONFIG_YAML = "config.yaml"
LOG_FIELDS = ("epoch", "loss", "holdout_next_obs_mse", "holdout_reward_mse", "sampler_s", "epoch_s")


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


def holdout_size(n: int, fraction: float, minimum: int, maximum: int | None) -> int:
    """max(fraction * n, minimum), capped by maximum and by n // 5 on small datasets (at least 1)."""
    size = max(int(fraction * n), minimum)
    if maximum is not None:
        size = min(size, maximum)
    return max(1, min(size, n // 5))


def holdout_errors(model: DynamicsModel, x: Tensor, y: Tensor, generator: torch.Generator | None) -> dict[str, float]:
    """Raw-unit MSE of the deterministic prediction: next state (mean over dims) and reward."""
    obs, act = x[:, : model.obs_dim], x[:, model.obs_dim :]
    next_obs, reward = model.predict(obs, act, generator)
    return {
        "holdout_next_obs_mse": float((next_obs - obs - y[:, :-1]).square().mean()),
        "holdout_reward_mse": float((reward - y[:, -1]).square().mean()),
    }


class _EnsembleTrainer:
    """What both trainers share: the epoch's length, each member's minibatch rows, the update step."""

    cfg: Any
    x: Tensor
    model: DynamicsModel
    generator: torch.Generator
    optimizer: torch.optim.Optimizer
    loss_per_row: bool = False  # the loss sums its batch's rows: the log divides by the batch size

    def loss_for(self, index: Tensor, timer: DeviceTimer) -> Tensor:
        """The summed loss of all members on their rows ``index`` [members, batch]."""
        raise NotImplementedError

    def train_epoch(self, bar: Any, timer: DeviceTimer) -> Tensor:
        """One epoch of updates; returns the mean loss per member, step (and row) as a device tensor."""
        total = torch.zeros((), device=self.x.device)
        for index in self.minibatch_indices():
            loss = self.loss_for(index, timer)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.detach() / (self.model.members * (index.shape[1] if self.loss_per_row else 1))
            bar.update(1)
        return total / self.steps_per_epoch()

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
            if fixed:
                yield torch.randint(n, (members, batch), generator=self.generator, device=device)
            else:
                yield order[:, step * batch : (step + 1) * batch]


class ETMTrainer(_EnsembleTrainer):
    """One optimiser for all members; each member draws its own minibatch every step."""

    def __init__(self, model: ETMDynamics, x: Tensor, y: Tensor, generator: torch.Generator) -> None:
        self.model, self.cfg, self.generator = model, model.config.etm, generator
        self.x, self.y = model.input_scaler(x), model.target_scaler(y)
        self.optimizer = torch.optim.Adam(model.energy.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        self.loss_per_row = self.cfg.loss_reduction == "sum"
        self.done = False

    def loss_for(self, index: Tensor, timer: DeviceTimer) -> Tensor:
        net = self.model.energy
        x, y = self.x[index], self.y[index]
        with timer:
            with torch.no_grad():
                code = net.encode(x)
            negatives = sample_negatives(net, code, y.shape[-1], self.cfg, self.generator)
        loss, _, _ = infonce_loss(net, x, y, self.cfg, self.generator, negatives=negatives)
        return loss

    def end_epoch(self, errors: dict[str, float]) -> None:
        pass

    def finish(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])


class FTMTrainer(_EnsembleTrainer):
    """Bootstrap minibatches per member; holdout early stopping with per-member best snapshots."""

    def __init__(
        self, model: FTMDynamics, x: Tensor, y: Tensor, x_hold: Tensor, y_hold: Tensor, generator: torch.Generator
    ) -> None:
        self.model, self.cfg, self.generator = model, model.config.ftm, generator
        self.x, self.y = model.input_scaler(x), y
        self.x_hold, self.y_hold = model.input_scaler(x_hold), y_hold
        self.optimizer = torch.optim.Adam(model.net.parameters(), lr=self.cfg.lr)
        members = model.members
        self.best_mse = torch.full((members,), float("inf"))
        self.best_state = {k: v.detach().clone() for k, v in model.net.state_dict().items()}
        self.epochs_since_update = 0
        self.epochs = 0
        self.done = False

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
        improved = (self.best_mse - mse) / self.best_mse > self.cfg.early_stop_improvement
        improved |= torch.isinf(self.best_mse)
        if bool(improved.any()):
            mask = improved.to(self.x.device)
            for name, value in self.model.net.state_dict().items():
                keep = mask.view(-1, *([1] * (value.dim() - 1)))
                self.best_state[name] = torch.where(keep, value, self.best_state[name]).detach().clone()
            self.best_mse = torch.where(improved, mse, self.best_mse)
            self.epochs_since_update = 0
        else:
            self.epochs_since_update += 1
        self.epochs += 1
        errors["member_holdout_mse_min"] = float(mse.min())
        if self.epochs_since_update >= self.cfg.early_stop_patience or (
            self.cfg.max_epochs is not None and self.epochs >= self.cfg.max_epochs
        ):
            self.done = True

    def finish(self) -> None:
        """Restore each member's best snapshot and keep the elites with the lowest holdout MSE."""
        self.model.net.load_state_dict(self.best_state)
        elites = torch.argsort(self.member_holdout_mse())[: self.cfg.elites]
        self.model.elites = elites.sort().values.to(self.model.elites.device)

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "best_mse": self.best_mse,
            "best_state": self.best_state,
            "epochs_since_update": self.epochs_since_update,
            "epochs": self.epochs,
            "done": self.done,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.best_mse = state["best_mse"]
        self.best_state = {k: v.to(self.x.device) for k, v in state["best_state"].items()}
        self.epochs_since_update = int(state["epochs_since_update"])
        self.epochs = int(state["epochs"])
        self.done = bool(state["done"])


def _tensors(transitions: Transitions, device: torch.device) -> tuple[Tensor, Tensor]:
    """Inputs cat(s, a) and targets cat(s' - s, r) as float32 tensors on the device."""
    data = transitions.to_tensors(device)
    x = torch.cat([data["observations"], data["actions"]], dim=-1)
    y = torch.cat([data["next_observations"] - data["observations"], data["rewards"].unsqueeze(-1)], dim=-1)
    return x, y


def train_dynamics(
    transitions: Transitions,
    task: Task,
    config: ModelConfig,
    out_dir: Path,
    device: str | torch.device = "cpu",
    seed: int = 0,
    progress: bool = True,
    resume: bool = False,
    threads: ThreadCounter | None = None,
) -> DynamicsModel:
    """Train a ``config.kind`` model on ``transitions.qlearning()`` and save it into ``out_dir``.

    ``out_dir`` receives config.yaml, checkpoint.pt (every epoch, atomically), train_log.csv,
    tb/ (TensorBoard) and the final model (model.pt + model.json). With ``resume`` training
    continues from out_dir/checkpoint.pt (its config and seed win over the arguments). ``threads``
    re-counts the free CPU cores before every epoch (empo/threads.py).
    """
    from torch.utils.tensorboard import SummaryWriter
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    device = torch.device(device)
    checkpoint_path = out_dir / CHECKPOINT
    checkpoint: dict[str, Any] | None = None
    if resume:
        if not checkpoint_path.is_file():
            raise EmpoError(f"--resume {out_dir}: no {CHECKPOINT} there to continue from")
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        config = from_dict(ModelConfig, checkpoint["config"], where=f"{checkpoint_path}: config")
        seed = int(checkpoint["seed"])
    out_dir.mkdir(parents=True, exist_ok=True)

    data = transitions.qlearning().validate(task, origin=f"dataset of {task.name}")
    n = len(data)
    sub = config.etm if config.kind == "etm" else config.ftm
    n_hold = holdout_size(n, sub.holdout_fraction, sub.holdout_min, sub.holdout_max)
    if n - n_hold < 2:
        raise EmpoError(f"dataset of {task.name} has {n} transitions; too few to train a model")

    torch.manual_seed(seed)  # network initialisation
    generator = torch.Generator(device=device).manual_seed(seed)
    split = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    hold_index, train_index = split[:n_hold].sort().values, split[n_hold:]
    x, y = _tensors(data, device)
    x_train, y_train = x[train_index.to(device)], y[train_index.to(device)]
    x_hold, y_hold = x[hold_index.to(device)], y[hold_index.to(device)]

    model = build_model(config.kind, task.obs_dim, task.act_dim, task.env.termination, config).to(device)
    model.fit_scalers(x_train, y_train)
    model.holdout_index = hold_index.to(device)
    model.meta = {"task": task.name, "n_transitions": n, "seed": seed, "source": data.source}
    if isinstance(model, ETMDynamics):
        trainer: ETMTrainer | FTMTrainer = ETMTrainer(model, x_train, y_train, generator)
        epochs = config.etm.epochs
        eval_rows = min(config.etm.holdout_eval_size, n_hold)
    else:
        assert isinstance(model, FTMDynamics)
        trainer = FTMTrainer(model, x_train, y_train, x_hold, y_hold, generator)
        epochs = config.ftm.max_epochs if config.ftm.max_epochs is not None else 10**9
        eval_rows = n_hold

    start_epoch = 0
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        trainer.load_state_dict(checkpoint["trainer"])
        generator.set_state(checkpoint["generator"])
        start_epoch = int(checkpoint["epoch"])
    save_yaml(config, out_dir / CONFIG_YAML)

    writer = SummaryWriter(str(out_dir / "tb"), purge_step=start_epoch if start_epoch else None)
    log_path = out_dir / LOG_CSV
    if not resume or not log_path.is_file():
        with log_path.open("w", newline="") as fh:
            csv.writer(fh).writerow(LOG_FIELDS)
    timer = DeviceTimer(device)
    epoch = start_epoch
    try:
        while epoch < epochs and not trainer.done:
            if threads is not None:
                threads.update()
            started = time.perf_counter()
            label = f"{config.kind} epoch {epoch + 1}" + (f"/{epochs}" if config.kind == "etm" else "")
            with tqdm(total=trainer.steps_per_epoch(), desc=label, disable=not progress, leave=False) as bar:
                model.train()
                mean_loss = trainer.train_epoch(bar, timer)
            model.eval()
            errors = holdout_errors(model, x_hold[:eval_rows], y_hold[:eval_rows], generator)
            trainer.end_epoch(errors)
            epoch += 1
            row = {
                "epoch": epoch,
                "loss": float(mean_loss),
                **errors,
                "sampler_s": timer.total(),
                "epoch_s": time.perf_counter() - started,
            }
            for key, value in row.items():
                if key != "epoch":
                    writer.add_scalar(f"model/{key}", value, epoch)
            with log_path.open("a", newline="") as fh:
                csv.writer(fh).writerow([row[k] for k in LOG_FIELDS])
            if progress:
                tqdm.write(
                    f"{config.kind} epoch {epoch}: loss {row['loss']:.4f}  holdout next-state MSE "
                    f"{row['holdout_next_obs_mse']:.4g}  reward MSE {row['holdout_reward_mse']:.4g}  "
                    f"({row['epoch_s']:.1f} s, sampler {row['sampler_s']:.1f} s)"
                )
            snapshot = {
                "config": to_dict(config),
                "seed": seed,
                "epoch": epoch,
                "model": model.state_dict(),
                "trainer": trainer.state_dict(),
                "generator": generator.get_state(),
            }
            atomic_write(checkpoint_path, lambda p, obj=snapshot: torch.save(obj, p))
    finally:
        writer.close()
    trainer.finish()
    model.eval()
    model.save(out_dir)
    return model
