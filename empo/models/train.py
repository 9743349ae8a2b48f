"""``train_dynamics``: fit an ETM or FTM ensemble on a dataset, with logs, checkpoints and resume.

Per epoch: a tqdm bar, one TensorBoard scalar set and one CSV row (loss, holdout error in raw
units, sampler seconds, epoch seconds), then a checkpoint written atomically. The data stay on
the device as tensors; losses are summed on the device and read once per epoch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from empo.config import from_dict, save_yaml, to_dict
from empo.errors import EmpoError
from empo.models.config import ModelConfig
from empo.models.dynamics import DynamicsModel
from empo.models.fitting import DeviceTimer
from empo.models.registry import build_model, get_model_kind
from empo.recorder import RunRecorder
from empo.threads import ThreadCounter, flush_denormals

if TYPE_CHECKING:
    from empo.data.tasks import Task
    from empo.data.transitions import Transitions

CHECKPOINT = "checkpoint.pt"
LOG_CSV = "train_log.csv"
CONFIG_YAML = "config.yaml"
LOG_FIELDS = ("epoch", "loss", "holdout_next_obs_mse", "holdout_reward_mse", "sampler_s", "epoch_s", "updates", "fit_minutes")


def holdout_size(n: int, fraction: float, minimum: int, maximum: int | None) -> int:
    """max(fraction * n, minimum), capped by maximum and by n // 5 on small datasets (at least 1)."""
    size = max(int(fraction * n), minimum)
    if maximum is not None:
        size = min(size, maximum)
    return max(1, min(size, n // 5))


def holdout_split(n: int, section: Any, seed: int) -> tuple[Tensor, Tensor]:
    """(holdout rows sorted, training rows) of ``n`` for a model kind's config ``section`` and ``seed``:
    the split every fit of that seed uses."""
    n_hold = holdout_size(n, section.holdout_fraction, section.holdout_min, section.holdout_max)
    split = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return split[:n_hold].sort().values, split[n_hold:]


def holdout_errors(model: DynamicsModel, x: Tensor, y: Tensor, generator: torch.Generator | None) -> dict[str, float]:
    """Raw-unit MSE of the deterministic prediction: next state (mean over dims) and reward."""
    obs, act = x[:, : model.obs_dim], x[:, model.obs_dim :]
    next_obs, reward = model.predict(obs, act, generator)
    return {
        "holdout_next_obs_mse": float((next_obs - obs - y[:, :-1]).square().mean()),
        "holdout_reward_mse": float((reward - y[:, -1]).square().mean()),
    }


def _tensors(transitions: Transitions, device: torch.device) -> tuple[Tensor, Tensor]:
    """Inputs cat(s, a) and targets cat(s' - s, r) as float32 tensors on the device."""
    data = transitions.to_tensors(device)
    x = torch.cat([data["observations"], data["actions"]], dim=-1)
    y = torch.cat([data["next_observations"] - data["observations"], data["rewards"].unsqueeze(-1)], dim=-1)
    return x, y


def fall_row_weights(data: Transitions, weight: float, window: int) -> np.ndarray:
    """Per row: ``weight`` for the ``window`` rows that end an episode by its termination rule (the
    terminal row and those before it, within the episode), 1 elsewhere."""
    n = len(data)
    weights = np.ones(n, dtype=np.float64)
    ends = np.append(np.asarray(data.episode_starts)[1:], n)  # one past each episode's last row
    for start, stop in zip(data.episode_starts, ends, strict=True):
        if stop > start and data.terminals[stop - 1] > 0.5:
            weights[max(start, stop - window) : stop] = weight
    return weights


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
    on_epoch: Callable[[int, DynamicsModel], bool | None] | None = None,
    finish: bool = False,
) -> DynamicsModel:
    """Train a ``config.kind`` model on ``transitions.qlearning()`` and save it into ``out_dir``.

    ``out_dir`` receives config.yaml, checkpoint.pt (every epoch, atomically), train_log.csv,
    tb/ (TensorBoard) and the final model (model.pt + model.json). With ``resume`` training
    continues from out_dir/checkpoint.pt (its config and seed win over the arguments). ``threads``
    re-counts the free CPU cores before every epoch (empo/threads.py). ``on_epoch(epoch, model)``
    runs after each epoch's checkpoint (e.g. to score the model on other data); returning True
    ends the fit there, as if ``epochs`` had been reached. ``finish`` (with ``resume``) trains no
    further: it saves the model the checkpoint holds, as the fit would have at its end (the best
    snapshot early stopping kept, the averaged weights, the elites), for a fit whose holdout error
    has flattened before its stopping rule or cap ends it; the model's meta says ``stopped_by: hand``.
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    device = torch.device(device)
    flush_denormals()  # decayed weights of dead units slow CPU arithmetic many times (empo/threads.py)
    recorder = RunRecorder(out_dir, LOG_CSV, LOG_FIELDS, CHECKPOINT)
    checkpoint_path = recorder.checkpoint_path
    checkpoint: dict[str, Any] | None = None
    if finish and not resume:
        raise EmpoError("finishing a fit needs the fit to resume from (--resume DIR --finish)")
    if resume:
        if not checkpoint_path.is_file():
            raise EmpoError(f"--resume {out_dir}: no {CHECKPOINT} there to continue from")
        checkpoint = recorder.load_checkpoint(weights_only=True)
        config = from_dict(ModelConfig, checkpoint["config"], where=f"{checkpoint_path}: config")
        seed = int(checkpoint["seed"])
    out_dir.mkdir(parents=True, exist_ok=True)

    data = transitions.qlearning().validate(task, origin=f"dataset of {task.name}")
    n = len(data)
    get_model_kind(config.kind)  # an unknown kind is an error before any work
    sub = getattr(config, config.kind)  # the kind's config section (empo/models/registry.py)
    hold_index, train_index = holdout_split(n, sub, seed)
    n_hold = hold_index.numel()
    if n - n_hold < 2:
        raise EmpoError(f"dataset of {task.name} has {n} transitions; too few to train a model")

    torch.manual_seed(seed)  # network initialisation
    generator = torch.Generator(device=device).manual_seed(seed)
    x, y = _tensors(data, device)
    x_train, y_train = x[train_index.to(device)], y[train_index.to(device)]
    x_hold, y_hold = x[hold_index.to(device)], y[hold_index.to(device)]

    model = build_model(config.kind, task.obs_dim, task.act_dim, task.env.termination, config).to(device)
    model.fit_scalers(x_train, y_train)
    model.holdout_index = hold_index.to(device)
    model.meta = {"task": task.name, "n_transitions": n, "seed": seed, "source": data.source}
    trainer = get_model_kind(config.kind).trainer_class(model, x_train, y_train, x_hold, y_hold, generator)
    if getattr(sub, "fall_weight", 1.0) != 1.0:
        weights = fall_row_weights(data, sub.fall_weight, sub.fall_window)
        trainer.row_weights = torch.as_tensor(weights, device=device)[train_index.to(device)]
    epochs = trainer.max_epochs()
    eval_rows = trainer.holdout_rows(n_hold)

    start_epoch = 0
    fit_seconds = 0.0  # the fit's epochs on this machine, for the minutes cap and the holdout curve
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        trainer.load_state_dict(checkpoint["trainer"])
        generator.set_state(checkpoint["generator"])
        start_epoch = int(checkpoint["epoch"])
        fit_seconds = float(checkpoint.get("fit_seconds", 0.0))
    save_yaml(config, out_dir / CONFIG_YAML)

    # TensorBoard's step is the number of model updates; on resume, what was logged after the checkpoint goes
    updates_per_epoch = trainer.steps_per_epoch()
    if checkpoint is not None:
        recorder.resume_after(start_epoch, start_epoch * updates_per_epoch)
    elif recorder.csv_path.is_file():
        recorder.csv_path.unlink()  # a new fit in this folder starts a new log
    timer = DeviceTimer(device)
    epoch = start_epoch
    stopped_by = "hand" if finish else None
    try:
        errors: dict[str, float] = {}
        while epoch < epochs and not trainer.done and stopped_by is None:
            if threads is not None:
                threads.update()
            started = time.perf_counter()
            label = f"{config.kind} epoch {epoch + 1}" + (f"/{epochs}" if epochs < 10**9 else "")
            with tqdm(total=trainer.steps_per_epoch(), desc=label, disable=not progress, leave=False) as bar:
                model.train()
                mean_loss = trainer.train_epoch(bar, timer)
            model.eval()
            scored = trainer.scored_model()
            scored.eval()
            errors = holdout_errors(scored, x_hold[:eval_rows], y_hold[:eval_rows], generator)
            trainer.end_epoch(errors)
            epoch += 1
            epoch_s = time.perf_counter() - started
            fit_seconds += epoch_s
            row = {
                "epoch": epoch,
                "loss": float(mean_loss),
                **errors,
                "sampler_s": timer.total(),
                "epoch_s": epoch_s,
                "updates": epoch * updates_per_epoch,
                "fit_minutes": fit_seconds / 60.0,
            }
            if not trainer.done and epoch < epochs:
                stopped_by = binding_cap(sub, row["updates"], fit_seconds)
            recorder.log_scalars({f"model/{key}": value for key, value in row.items() if key not in ("epoch", "updates")}, row["updates"])
            recorder.log_row({key: row[key] for key in LOG_FIELDS})
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
                "fit_seconds": fit_seconds,
            }
            recorder.save_checkpoint(snapshot)
            if on_epoch is not None and on_epoch(epoch, model):
                # the saved model's meta says it is a partial fit, for whoever reads it (a benchmark's report);
                # an FTM that stopped early on its own in this epoch finished normally
                if epoch < epochs and not trainer.done and stopped_by is None:
                    model.meta = {**model.meta, "ended_early_at_epoch": epoch, "epochs_planned": epochs}
                    stopped_by = "caller"
                break
    finally:
        recorder.close()
    if stopped_by is None:
        stopped_by = "early_stopping" if trainer.done and epoch < epochs else "epochs"
    elif stopped_by not in ("caller", "hand"):
        message = (f"{config.kind} fit: the cap {stopped_by} binds after epoch {epoch} ({epoch * updates_per_epoch} updates, "
                   f"{fit_seconds / 60:.1f} min); the holdout error had not stopped improving")
        (tqdm.write if progress else print)(message)
    model.meta = {**model.meta, "stopped_by": stopped_by, "fit_epochs": epoch, "fit_updates": epoch * updates_per_epoch,
                  "fit_minutes": round(fit_seconds / 60.0, 2)}
    trainer.finish()
    model.eval()
    model.save(out_dir)
    if errors:  # the fit's settings and last holdout errors as TensorBoard hparams (compare fits by config)
        try:
            recorder.log_hparams(
                {"kind": config.kind, "preset": config.preset, "seed": seed, **flat_settings(to_dict(config)[config.kind], config.kind)},
                {f"hparams/{key}": value for key, value in errors.items()} | {"hparams/epochs": float(epoch)},
            )
        finally:
            recorder.close()
    return model


def binding_cap(section: Any, updates: int, fit_seconds: float) -> str | None:
    """Which cap of a model kind's ``section`` ends the fit now (``max_updates=N``, ``max_minutes=M``), or None."""
    if section.max_updates is not None and updates >= section.max_updates:
        return f"max_updates={section.max_updates}"
    if section.max_minutes is not None and fit_seconds >= 60.0 * section.max_minutes:
        return f"max_minutes={section.max_minutes:g}"
    return None


def flat_settings(settings: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Nested settings as ``prefix.key.subkey`` -> value (lists as text), for TensorBoard's hparams."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(flat_settings(value, f"{prefix}.{key}"))
        else:
            flat[f"{prefix}.{key}"] = str(value) if isinstance(value, list) or value is None else value
    return flat
