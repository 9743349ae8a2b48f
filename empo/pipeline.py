"""The flow from a task to a trained agent, below the commands: dataset -> model -> agent run.

Each step works alone from Python, and ``empo-train`` is these calls with arguments parsed::

    from empo.loop.config import resolve_config
    from empo.pipeline import train_agent, resume

    config = resolve_config("hopper-medium", "empo", "smoke", seed=0)
    summary = train_agent(config, "runs/hopper-smoke")      # dataset, model (cached), agent
    summary = resume("runs/hopper-smoke")                   # continue an interrupted run

``prepare_dataset`` loads a task's dataset (building it when none is on disk), ``prepare_model``
gives the transition model (a given folder, the cache under ``$EMPO_HOME/models`` keyed by the
model settings, the dataset and the seed, or a new fit), and ``train_agent`` / ``resume`` run the
loop in a run folder (docs/training.md). ``empo.runs.load_run`` reads a run folder back.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from empo.config import dict_differences, from_dict, load_json_object, load_yaml, save_yaml
from empo.errors import EmpoError
from empo.utils import atomic_write_text, empo_home, exclusive_lock, git_commit

if TYPE_CHECKING:
    from empo.data.tasks import Task
    from empo.data.transitions import Transitions
    from empo.loop.config import TrainConfig
    from empo.models.config import ModelConfig
    from empo.models.dynamics import Dynamics, DynamicsModel
    from empo.threads import ThreadCounter

Log = Callable[[str], Any]
RUN_JSON = "run.json"
MODEL_CONFIG_YAML = "model_config.yaml"


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` (CUDA when there is one, else the CPU) or a torch device name, checked to exist."""
    if isinstance(name, torch.device):
        device = name
    elif name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise EmpoError(f"--device: '{name}' is not a torch device (try cpu, cuda or auto)") from None
    allowed = ("cpu", "cuda") + (("mps",) if torch.backends.mps.is_available() else ())
    if device.type not in allowed:
        raise EmpoError(f"--device {name}: this project runs on {', '.join(allowed)} or auto, not on {device.type}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise EmpoError(f"--device {name}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise EmpoError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def seed_everything(seed: int) -> None:
    """Python's, numpy's and torch's global generators (network initialisation draws from torch's)."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------------- dataset
def prepare_dataset(
    task_name: str, d4rl_path: str | Path | None = None, minari_id: str | None = None, log: Log = print, progress: bool = True
) -> Transitions:
    """The task's dataset, checked against the task's sizes; built first when none is on disk.

    A named D4RL file or Minari id is read instead. Says which dataset it uses and from where.
    """
    from empo.data import ensure_dataset, get_task, load_transitions

    task = get_task(task_name)
    if d4rl_path is not None or minari_id is not None:
        transitions = load_transitions(task.name, d4rl_path=d4rl_path, minari_id=minari_id)
    else:
        transitions = ensure_dataset(task.name, log=log, progress=progress)
    transitions.validate(task, origin=f"dataset of {task.name}")
    log(f"dataset: {task.name}, {len(transitions.qlearning()):,} transitions from {transitions.source}")
    return transitions


def dataset_fingerprint(transitions: Transitions) -> str:
    """Identifies the data a model was fit on: its source, size and a checksum of the arrays."""
    q = transitions.qlearning()
    sums = [float(getattr(q, name).sum(dtype="float64")) for name in ("observations", "actions", "rewards")]
    return json.dumps({"source": transitions.source, "rows": len(q), "sums": [round(s, 3) for s in sums]})


# --------------------------------------------------------------------------------------- model
def model_config_for(config: TrainConfig) -> ModelConfig | None:
    """The run's transition-model settings (preset + overrides), validated; None for the simulator.

    Called before any data is loaded, so that a misspelt model key fails in seconds.
    """
    from empo.models import load_model_config
    from empo.models.config import with_samplers

    kind = config.algorithm.model_kind
    if kind == "simulator":
        if config.model.overrides or config.model.samplers:
            raise EmpoError("model.overrides and model.samplers cannot be used with model_kind=simulator (the simulator is the model)")
        return None
    model_config = load_model_config(kind, config.model.preset, config.model.overrides or None, task=config.task)
    with_samplers(model_config, config.model.samplers)  # checked now; applied to the model once it is loaded
    return model_config


# settings added after models were first cached: left out of the cache key while at these values,
# so that every model cached before they existed keeps its key (and is not fitted again)
KEY_COMPATIBLE_DEFAULTS: dict[tuple[str, ...], Any] = {
    ("etm", "mean_head"): False,
    ("etm", "mean_head_ensemble"): False,
    ("etm", "mean_head_layers"): 2,
    ("etm", "mean_head_hidden_size"): 0,
    ("etm", "mean_head_updates"): 1,
    **{("etm", sampler, "init_noise"): 0.0 for sampler in ("train_langevin", "rollout_langevin", "eval_langevin")},
    ("etm", "early_stop_patience"): None,
    ("etm", "early_stop_improvement"): 0.01,
    ("etm", "early_stop_window"): 1,
    ("etm", "weight_ema"): None,
    ("etm", "fall_weight"): 1.0,
    ("etm", "fall_window"): 20,
    **{(kind, cap): None for kind in ("etm", "ftm") for cap in ("max_updates", "max_minutes")},
}


def model_cache_dir(task_name: str, model_config: ModelConfig, transitions: Transitions, seed: int) -> Path:
    settings = asdict(model_config)
    for (*parents, key), value in KEY_COMPATIBLE_DEFAULTS.items():
        section = settings
        for name in parents:
            section = section[name]
        if section.get(key, value) == value:
            section.pop(key, None)
    blob = json.dumps({"model": settings, "data": dataset_fingerprint(transitions)}, sort_keys=True)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:12]
    return empo_home() / "models" / f"{task_name}-{model_config.kind}-{digest}-s{seed}"


def prepare_model(
    config: TrainConfig,
    task: Task,
    transitions: Transitions,
    device: torch.device,
    model_dir: str | Path | None = None,
    progress: bool = True,
    log: Log = print,
    threads: ThreadCounter | None = None,
) -> tuple[Dynamics, Path | None]:
    """(model, its folder): the model in ``model_dir``, the cached one, or a new fit (then cached)."""
    from empo.models import load_dynamics

    kind = config.algorithm.model_kind
    model_config = model_config_for(config)
    if model_config is None:
        from empo.envs.simulator import SimulatorDynamics

        if model_dir is not None:
            raise EmpoError("--model-dir cannot be used with model_kind=simulator (the simulator is the model)")
        log(f"model_kind=simulator: rollouts step the real {task.gym_id} env (a diagnostic, not offline RL)")
        return SimulatorDynamics(task, device), None
    if model_dir is not None:
        model_dir = Path(model_dir)
        model = load_dynamics(model_dir, task, device=device)
        if model.kind != kind:
            raise EmpoError(f"--model-dir {model_dir} holds a {model.kind} model, but {config.algo} needs a {kind} model")
    else:
        model, model_dir = cached_model(model_config, task, transitions, config.seed, device, progress, log, threads)
    return with_run_samplers(model, config, log), model_dir


def with_run_samplers(model: Dynamics, config: TrainConfig, log: Log = print) -> Dynamics:
    """``model`` with the run's ``model.samplers`` applied (an ETM's inference samplers; no new fit)."""
    from empo.models.config import with_samplers

    if not config.model.samplers:
        return model
    if getattr(model, "kind", None) != "etm" or not hasattr(model, "config"):
        raise EmpoError(f"model.samplers changes an ETM's samplers; the model is {getattr(model, 'kind', type(model).__name__)}")
    model.config = with_samplers(model.config, config.model.samplers)
    log(f"model.samplers: the model's inference samplers changed by {config.model.samplers}")
    return model


def cached_model(
    model_config: ModelConfig,
    task: Task,
    transitions: Transitions,
    seed: int,
    device: torch.device,
    progress: bool = True,
    log: Log = print,
    threads: ThreadCounter | None = None,
) -> tuple[DynamicsModel, Path]:
    """The model of these settings, data and seed from the cache (``$EMPO_HOME/models``), fit first
    when the cache has none (an interrupted fit continues from its checkpoint)."""
    from empo.models import load_dynamics, train_dynamics

    kind = model_config.kind
    cache = model_cache_dir(task.name, model_config, transitions, seed)
    # two processes (a sweep's workers) never fit or write the same model
    with exclusive_lock(cache, lambda: log(f"waiting for another process that is fitting {cache.name}")):
        if (cache / "model.json").is_file() and (cache / "model.pt").is_file():
            log(f"using the cached {kind} model in {cache}")
            return load_dynamics(cache, task, device=device), cache
        resume_fit = (cache / "checkpoint.pt").is_file()
        log(f"{'continuing' if resume_fit else 'training'} the {kind} model ({model_config.preset} preset) in {cache}")
        model = train_dynamics(
            transitions, task, model_config, cache, device=device, seed=seed, progress=progress, resume=resume_fit, threads=threads
        )
    return model.to(device), cache


# ------------------------------------------------------------------------------------- agent run
def default_preset(device: torch.device, log: Log = print) -> str:
    """The preset when none is named: the published recipe on a GPU, the learn preset on a CPU (the
    one meant to learn above the data there: docs/training.md, "The learn preset")."""
    if device.type == "cuda":
        log("preset: paper (no --preset given; the published recipe, about 13 h on one H100)")
        return "paper"
    log(
        f"preset: learn (no --preset given and the device is {device}: models fitted until they stop improving, "
        "200 epochs, at most 3 h of one thread; the paper preset is a GPU recipe that would take months here, "
        "--preset quick is the 1.5 h check)"
    )
    return "learn"


def default_run_dir(config: TrainConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.task}-{config.algo}-{config.preset}-s{config.seed}-{stamp}"


def train_agent(
    config: TrainConfig,
    run_dir: str | Path | None = None,
    *,
    device: str | torch.device = "auto",
    model: Dynamics | None = None,
    model_dir: str | Path | None = None,
    d4rl_path: str | Path | None = None,
    minari_id: str | None = None,
    progress: bool = True,
    threads: ThreadCounter | None = None,
    stop_after: int | None = None,
    log: Log = print,
    command: str | None = None,
    started: str | None = None,
) -> dict[str, Any]:
    """Start a new run in ``run_dir`` (default ``runs/<task>-<algo>-<preset>-s<seed>-<time>``); returns its summary.

    ``model`` puts a model object of your own in the loop (any :class:`empo.models.Dynamics`;
    ``model_dir`` is then only recorded); otherwise :func:`prepare_model` provides it.
    ``stop_after`` stops after that many epochs (continue with :func:`resume`).
    """
    from empo.loop.trainer import CHECKPOINT

    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
    if (run_dir / CHECKPOINT).is_file():
        raise EmpoError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or pick another --run-dir")
    info = {
        "task": config.task,
        "model_dir": None,
        "d4rl_path": str(d4rl_path) if d4rl_path else None,
        "minari_id": minari_id,
        "device": None,
        "git_commit": git_commit(mark_dirty=False),
        "command": command,
        "started": started or time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    return _run(config, run_dir, info, device, model, model_dir, progress, threads, stop_after, log, resuming=False)


def resume(
    run_dir: str | Path,
    *,
    device: str | torch.device = "auto",
    progress: bool = True,
    threads: ThreadCounter | None = None,
    stop_after: int | None = None,
    log: Log = print,
    task: str | None = None,
) -> dict[str, Any]:
    """Continue the run in ``run_dir`` from its last checkpoint; returns its summary.

    ``task``, when given, must be the run's (a guard against resuming the wrong folder).
    """
    from empo.loop.config import config_from_dict
    from empo.loop.trainer import CHECKPOINT

    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise EmpoError(f"--resume {run_dir}: no config.yaml there; is it a run directory of empo-train?")
    config = config_from_dict(load_yaml(config_path), where=str(config_path))
    if task is not None and task != config.task:
        raise EmpoError(f"--resume {run_dir}: the run is for {config.task}, not {task}")
    if not (run_dir / CHECKPOINT).is_file():
        raise EmpoError(f"--resume {run_dir}: no {CHECKPOINT} (the run did not finish an epoch); start it again")
    info = load_json_object(run_dir / RUN_JSON, "the inputs of an empo-train run", missing_ok=True)
    return _run(config, run_dir, info, device, None, info.get("model_dir"), progress, threads, stop_after, log, resuming=True)


def run_or_resume(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    device: str | torch.device = "auto",
    progress: bool = True,
    threads: ThreadCounter | None = None,
    log: Log = print,
    model_dir: str | Path | None = None,
    command: str | None = None,
    on_start: Callable[[], Any] | None = None,
) -> tuple[dict[str, Any], str]:
    """Bring the run in ``run_dir`` to its end whatever state it is in: (summary, how), how being
    "finished before" (its summary, nothing run), "resumed" (from its checkpoint) or "started".
    ``on_start`` is called once the run is known to need work, before it resumes or starts."""
    from empo.loop.trainer import CHECKPOINT

    run_dir = Path(run_dir)
    previous, resumable = finished_summary(run_dir), (run_dir / CHECKPOINT).is_file()
    if previous is not None or resumable:
        check_same_config(config, run_dir)
    if previous is not None:
        return previous, "finished before"
    if on_start is not None:
        on_start()
    if resumable:
        return resume(run_dir, device=device, progress=progress, threads=threads, log=log), "resumed"
    summary = train_agent(config, run_dir, device=device, model_dir=model_dir, progress=progress, threads=threads,
                          log=log, command=command)
    return summary, "started"


def finished_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """The summary of the run in ``run_dir`` if that run finished, else None."""
    summary = load_json_object(Path(run_dir) / "summary.json", "the summary of an empo-train run", missing_ok=True)
    return summary if summary.get("status") == "finished" else None


def check_same_config(config: TrainConfig, run_dir: str | Path) -> None:
    """Raise :class:`EmpoError` naming the settings in which the run in ``run_dir`` differs from
    ``config``: a run folder is reused only for the config it was started with, so that a sweep whose
    settings (or a preset's YAML) changed since does not report or continue runs made with the old ones."""
    from empo.loop.config import config_differences, config_from_dict

    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise EmpoError(f"{run_dir} holds a run but no config.yaml; move the folder away to start the run anew")
    differences = config_differences(config_from_dict(load_yaml(config_path), where=str(config_path)), config)
    # the model preset's YAML may have changed under the same preset name: compare the model's settings too
    # (not for a model given by folder, whose settings are its own)
    model_path = run_dir / MODEL_CONFIG_YAML
    model_config = model_config_for(config)
    given_model = load_json_object(run_dir / RUN_JSON, "the inputs of an empo-train run", missing_ok=True).get("model_dir")
    if model_config is not None and model_path.is_file() and not given_model:
        from empo.models.config import ModelConfig, model_settings, with_samplers

        old = from_dict(ModelConfig, load_yaml(model_path), where=str(model_path))
        new = with_samplers(model_config, config.model.samplers)  # as the run saved it
        differences += dict_differences(model_settings(old), model_settings(new), prefix="model: ")
    if differences:
        shown = "; ".join(differences[:5]) + (f"; and {len(differences) - 5} more" if len(differences) > 5 else "")
        raise EmpoError(
            f"{run_dir} holds a run started with other settings ({shown}); move the folder away to run "
            f"these settings, or continue it as it was with empo-train --resume {run_dir}"
        )


def _clear_unfinished_attempt(run_dir: Path, log: Log) -> None:
    """Logs of an earlier start that died before its first checkpoint (a kill between its first CSV
    row and the checkpoint) would be appended to by the new start: remove them first."""
    import shutil

    stale = [run_dir / name for name in ("progress.csv", "summary.json") if (run_dir / name).is_file()]
    if (run_dir / "tb").is_dir():
        stale.append(run_dir / "tb")
    if stale:
        log(f"{run_dir}: removing the logs of a start that ended before its first checkpoint ({', '.join(p.name for p in stale)})")
        for path in stale:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def _run(
    config: TrainConfig,
    run_dir: Path,
    info: dict[str, Any],
    device: str | torch.device,
    model: Dynamics | None,
    model_dir: str | Path | None,
    progress: bool,
    threads: ThreadCounter | None,
    stop_after: int | None,
    log: Log,
    resuming: bool,
) -> dict[str, Any]:
    from empo.data.tasks import get_task
    from empo.loop.agents import get_agent_spec
    from empo.loop.graphed import apply_tf32, check_runtime
    from empo.loop.trainer import Trainer
    from empo.models.dynamics import check_dynamics

    if stop_after is not None and stop_after < 1:
        raise EmpoError(f"--stop-after must be >= 1, got {stop_after}")
    task = get_task(config.task)
    device = resolve_device(device)
    model_config = model_config_for(config) if model is None and model_dir is None else None
    check_runtime(config.runtime, device)  # before the dataset and the model, which take minutes
    get_agent_spec(config.agent).load(config.agent)  # a framework's agent needs its package installed
    apply_tf32(config.runtime, device)  # the model fit too runs under the run's TF32 setting
    seed_everything(config.seed)
    transitions = prepare_dataset(task.name, info.get("d4rl_path"), info.get("minari_id"), log=log, progress=progress)
    if model is None:
        model, model_dir = prepare_model(config, task, transitions, device, model_dir, progress, log, threads)
    else:  # a model object of the caller's: its samplers change as a cached one's would
        model = with_run_samplers(model, config, log)
    check_dynamics(model, task, where="the transition model")

    run_dir.mkdir(parents=True, exist_ok=True)
    if not resuming:
        _clear_unfinished_attempt(run_dir, log)
        info.update(
            model_dir=str(Path(model_dir).resolve()) if model_dir else None,
            dataset_source=transitions.source,
            # the data's own score (its episodes' mean return, normalised): what an offline agent should beat
            dataset_normalized_score=transitions.normalized_score(task),
            device=str(device),
        )
        atomic_write_text(run_dir / RUN_JSON, json.dumps(info, indent=2) + "\n")
        resolved = getattr(model, "config", None) or model_config
        if resolved is not None:
            save_yaml(resolved, run_dir / MODEL_CONFIG_YAML)

    evaluator = None
    if config.training.eval_episodes > 0:
        from empo.evaluation.policy_eval import PolicyEvaluator

        evaluator = PolicyEvaluator(task, config.training.eval_episodes, device)
    dataset = transitions.qlearning().to_tensors(device)
    episode_starts = torch.as_tensor(transitions.observations[transitions.episode_starts])  # the diagnostics' start states
    trainer = Trainer(
        config, dataset, model, run_dir, device=device, task=task, evaluator=evaluator, progress=progress, threads=threads,
        start_observations=episode_starts,
    )
    if resuming:
        trainer.load_checkpoint()
        if trainer.epoch >= config.training.epochs:
            log(f"{run_dir}: the run already finished ({trainer.epoch} epochs)")
        else:
            log(f"resuming {run_dir} after epoch {trainer.epoch} of {config.training.epochs}")
    else:
        log(f"run directory: {run_dir}")
    try:
        return trainer.run(stop_after_epochs=stop_after)
    except KeyboardInterrupt:
        done = f"after epoch {trainer.epoch}" if trainer.epoch else "before its first epoch ended"
        how = f"continue with: empo-train --resume {run_dir}" if trainer.epoch else "start it again"
        log(f"interrupted {done}; {how}")
        raise
    finally:
        if evaluator is not None:
            evaluator.close()
