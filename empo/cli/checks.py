"""Checks of the folders and files the commands read, made before any slow work or any write.

Each problem is one :class:`EmpoError` that names the file, key or value and what was expected:
a missing or damaged file, a folder written by another command (a model fit where an agent run
is expected, or the reverse), a model of another kind or another task. torch loads lazily.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from empo.cli.common import existing_file, existing_folder, one_line
from empo.config import load_json_object
from empo.errors import EmpoError

CHECKPOINT = "checkpoint.pt"
MODEL_META, MODEL_WEIGHTS = "model.json", "model.pt"
RUN_JSON = "run.json"
#: what a checkpoint of each trainer holds (empo/models/train.py, empo/loop/trainer.py)
MODEL_CHECKPOINT_KEYS = ("config", "seed", "epoch", "model", "trainer", "generator")
AGENT_CHECKPOINT_KEYS = ("version", "config", "epoch", "updates", "agent", "model_buffer", "sample_generator",
                         "rollout_generator", "torch_rng", "numpy_rng", "python_rng", "best_score", "best_return",
                         "scores", "wall_time", "last_rollout_stats")
MODEL_KINDS = ("etm", "ftm")


def _first_line(exc: BaseException) -> str:
    """A library's message, short: its first sentence when it runs on (torch explains at length)."""
    text = one_line(str(exc))
    if not text:
        return type(exc).__name__
    if text.startswith("Weights only load failed"):
        return "it holds Python objects besides tensors, or is damaged"
    if len(text) > 160 and ". " in text[:300]:
        text = text[: text.index(". ") + 1]
    return text[:300]


def task_named(name: object, where: str):  # -> empo.data.Task
    """The task a file names, with the file in the message when the name is not a task."""
    from empo.data import get_task

    if not isinstance(name, str):
        raise EmpoError(f"{where}: the task is {name!r}, expected a task name such as hopper-medium")
    try:
        return get_task(name)
    except EmpoError as exc:
        raise EmpoError(f"{where}: {exc}") from None


def folder_kind(path: Path) -> str | None:
    """What wrote the folder ``path``, judged by its files: "empo-train" (an agent run),
    "empo-model train" (a model fit), or None."""
    if not path.is_dir():
        return None
    if (path / "progress.csv").is_file() or (path / "summary.json").is_file() or (path / "model_config.yaml").is_file():
        return "empo-train"
    if (path / MODEL_META).is_file() or (path / "train_log.csv").is_file():
        return "empo-model train"
    run_file = path / RUN_JSON
    if run_file.is_file():
        try:
            run = json.loads(run_file.read_text())
        except (OSError, ValueError):
            return None
        if isinstance(run, dict):
            return "empo-model train" if "model" in run else "empo-train" if "model_dir" in run else None
    return None


def load_torch_file(path: Path, what: str, weights_only: bool = True) -> dict[str, Any]:
    """A torch file that must hold a dict (``what`` names it: "a checkpoint of empo-train", ...)."""
    import pickle
    import zipfile

    import torch

    if path.stat().st_size == 0:
        raise EmpoError(f"{path}: the file is empty, expected {what}")
    try:
        # mmap: the check reads the file's index and what it inspects, not every tensor (a paper-preset
        # checkpoint holds a model buffer of hundreds of MB that the command loads again anyway)
        state = torch.load(path, map_location="cpu", weights_only=weights_only, mmap=True)
    except (RuntimeError, ValueError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, AttributeError,
            ImportError, IndexError, KeyError, TypeError, OSError) as exc:  # the types torch.load raises for damaged files
        raise EmpoError(f"{path}: cannot be read as {what}: damaged or of another kind ({_first_line(exc)})") from None
    if not isinstance(state, dict):
        raise EmpoError(f"{path}: expected {what} (a dict), got {type(state).__name__}")
    return state


def _require_keys(state: dict[str, Any], keys: tuple[str, ...], path: Path, what: str) -> None:
    missing = [key for key in keys if key not in state]
    if missing:
        raise EmpoError(f"{path}: missing {', '.join(repr(k) for k in missing)}; not {what}")


def _whole(value: Any, path: Path, key: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise EmpoError(f"{path}: '{key}' is {value!r}, expected a whole number of at least {low}")
    return value


# ------------------------------------------------------------------------------------ models
def check_model_dir(model_dir: Path, option: str = "--model-dir") -> dict[str, Any]:
    """A finished model of ``empo-model train`` (model.json and model.pt, both readable); its model.json."""
    if not model_dir.exists():
        raise EmpoError(f"{option} {model_dir}: no trained model here (no such folder)")
    existing_folder(model_dir, option, "model folder")
    meta_path, weights_path = model_dir / MODEL_META, model_dir / MODEL_WEIGHTS
    if not meta_path.exists() or not weights_path.exists():
        kind = folder_kind(model_dir)
        if kind == "empo-train":
            raise EmpoError(f"{option} {model_dir}: a run folder of empo-train, expected a model folder of empo-model train "
                            f"({MODEL_META} and {MODEL_WEIGHTS})")
        missing = " and ".join(name for name, p in ((MODEL_META, meta_path), (MODEL_WEIGHTS, weights_path)) if not p.exists())
        raise EmpoError(f"{option} {model_dir}: no trained model here ({missing} missing; expected the output of empo-model train)")
    existing_file(meta_path, option, "model description (JSON)")
    existing_file(weights_path, option, "model weights file")
    meta = load_json_object(meta_path, "the model description of empo-model train")
    for key in ("kind", "obs_dim", "act_dim", "termination", "config"):
        if key not in meta:
            raise EmpoError(f"{meta_path}: missing key '{key}'")
    if meta["kind"] not in MODEL_KINDS:
        raise EmpoError(f"{meta_path}: 'kind' is {meta['kind']!r}, expected one of {', '.join(MODEL_KINDS)}")
    for key in ("obs_dim", "act_dim"):
        _whole(meta[key], meta_path, key, low=1)
    if not isinstance(meta["config"], dict):
        raise EmpoError(f"{meta_path}: 'config' must be a mapping of the model's settings")
    if not isinstance(meta.get("meta", {}), dict):
        raise EmpoError(f"{meta_path}: 'meta' must be a mapping")
    from empo.models import get_termination_fn

    try:
        get_termination_fn(meta["termination"])
    except EmpoError as exc:
        raise EmpoError(f"{meta_path}: 'termination': {exc}") from None
    weights = load_torch_file(weights_path, "model weights of empo-model train")
    import torch

    if not weights or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise EmpoError(f"{weights_path}: expected the model's weights (a dict of tensors)")
    return meta


def read_model_run(run_dir: Path, option: str = "--resume") -> dict[str, Any]:
    """run.json of an ``empo-model train`` folder, checked."""
    existing_folder(run_dir, option, "model folder")
    run_file = run_dir / RUN_JSON
    if not run_file.is_file():
        raise EmpoError(f"{option} {run_dir}: no {RUN_JSON} there (not a directory written by empo-model train)")
    run = load_json_object(run_file, "the inputs of an empo-model train run")
    if "model" not in run and folder_kind(run_dir) == "empo-train":
        raise EmpoError(f"{option} {run_dir}: a run folder of empo-train, expected a folder of empo-model train")
    for key in ("task", "model", "preset", "seed"):
        if key not in run:
            raise EmpoError(f"{run_file}: missing key '{key}' (not a run of empo-model train)")
    for key in ("task", "preset"):
        if not isinstance(run[key], str):
            raise EmpoError(f"{run_file}: '{key}' is {run[key]!r}, expected a name")
    task_named(run["task"], str(run_file))
    if run["model"] not in MODEL_KINDS:
        raise EmpoError(f"{run_file}: 'model' is {run['model']!r}, expected one of {', '.join(MODEL_KINDS)}")
    from empo.cli.common import SEED_MAX

    if _whole(run["seed"], run_file, "seed") > SEED_MAX:
        raise EmpoError(f"{run_file}: 'seed' is {run['seed']}, expected at most {SEED_MAX}")
    if not isinstance(run.get("overrides") or {}, dict):
        raise EmpoError(f"{run_file}: 'overrides' must be a mapping of model settings")
    for key in ("d4rl_path", "minari_id"):
        if run.get(key) is not None and not isinstance(run[key], str):
            raise EmpoError(f"{run_file}: '{key}' is {run[key]!r}, expected a string or null")
    return run


def check_model_checkpoint(run_dir: Path, kind: str, obs_dim: int, act_dim: int, termination: str) -> None:
    """The fit checkpoint of an ``empo-model train`` folder can resume a ``kind`` model of these sizes."""
    from empo.config import from_dict
    from empo.models import ModelConfig, build_model

    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise EmpoError(f"--resume {run_dir}: no {CHECKPOINT} there to continue from (the fit did not finish an epoch); "
                        "start it again without --resume")
    state = load_torch_file(path, "a checkpoint of empo-model train")
    if "version" in state and "agent" in state:
        raise EmpoError(f"{path}: a checkpoint of empo-train (an agent), expected one of empo-model train")
    _require_keys(state, MODEL_CHECKPOINT_KEYS, path, "a checkpoint of empo-model train")
    config = from_dict(ModelConfig, state["config"], where=f"{path}: config")
    if config.kind != kind:
        raise EmpoError(f"{path}: a checkpoint of a {config.kind} model, but the run's {RUN_JSON} says {kind}")
    _whole(state["epoch"], path, "epoch")
    model = build_model(kind, obs_dim, act_dim, termination, config)
    weights = state["model"]
    if not isinstance(weights, dict):
        raise EmpoError(f"{path}: 'model' must hold the model's weights")
    if "holdout_index" in weights:
        model.holdout_index = weights["holdout_index"].new_zeros(weights["holdout_index"].shape)
    try:
        model.load_state_dict(weights)
    except (RuntimeError, AttributeError, TypeError) as exc:
        raise EmpoError(
            f"{path}: the weights do not fit a {kind} model for observations of size {obs_dim} and actions of size "
            f"{act_dim} ({_first_line(exc)})"
        ) from None


def check_model_settings(config: Any) -> None:
    """Sizes, counts and rates of the settings a model fit uses (a ``ModelConfig``): in range, finite."""
    section = getattr(config, config.kind)
    where = f"model settings ({config.kind})"

    def need(name: str, ok: bool, expected: str) -> None:
        if not ok:
            raise EmpoError(f"{where}: {config.kind}.{name} is {getattr(section, name)!r}, expected {expected}")

    def at_least(name: str, low: int, optional: bool = False) -> None:
        value = getattr(section, name)
        need(name, (optional and value is None) or (value is not None and value >= low),
             f"{'null or ' if optional else ''}a whole number of at least {low}")

    def positive(name: str) -> None:
        value = getattr(section, name)
        need(name, math.isfinite(value) and value > 0, "a positive number")

    def nonnegative(name: str) -> None:
        value = getattr(section, name)
        need(name, math.isfinite(value) and value >= 0, "a number of at least 0")

    for name in ("ensemble_size", "hidden_size", "hidden_layers", "batch_size"):
        at_least(name, 1)
    at_least("steps_per_epoch", 1, optional=True)
    at_least("holdout_min", 0)
    at_least("holdout_max", 0, optional=True)
    need("holdout_fraction", 0.0 <= section.holdout_fraction < 1.0, "a fraction in [0, 1)")
    positive("lr")
    if config.kind == "etm":
        for name in ("epochs", "num_negatives", "holdout_eval_size"):
            at_least(name, 1)
        positive("temperature")
        for name in ("weight_decay", "grad_penalty_margin", "grad_penalty_weight"):
            nonnegative(name)
    else:
        at_least("max_epochs", 1, optional=True)
        at_least("early_stop_patience", 1)
        for name in ("early_stop_improvement", "logvar_loss_coef"):
            nonnegative(name)
        need("weight_decays", all(math.isfinite(w) and w >= 0 for w in section.weight_decays), "numbers of at least 0")
        need("max_logvar_init", section.max_logvar_init > section.min_logvar_init, "above min_logvar_init")


# -------------------------------------------------------------------------------- agent runs
def check_agent_run(run_dir: Path, option: str, task: str | None = None, resuming: bool = False) -> None:
    """A run folder of ``empo-train`` that can be loaded or exported: config.yaml, a readable checkpoint
    whose agent fits the task and config.yaml's settings, and run.json (when there) a JSON object;
    to be resumed (``resuming``) also run.json's model folder, of the kind the algorithm needs."""
    from empo.config import load_yaml
    from empo.loop.config import config_from_dict

    if not run_dir.exists():
        raise EmpoError(f"{option} {run_dir}: no such run folder of empo-train (no config.yaml there)")
    existing_folder(run_dir, option, "run folder of empo-train")
    config_path, checkpoint_path = run_dir / "config.yaml", run_dir / CHECKPOINT
    kind = folder_kind(run_dir)
    if kind == "empo-model train":
        raise EmpoError(f"{option} {run_dir}: a model folder of empo-model train, expected a run folder of empo-train")
    if not config_path.exists():
        raise EmpoError(f"{option} {run_dir}: not a run folder of empo-train (no config.yaml there)")
    existing_file(config_path, option, "run config (YAML)")
    data = load_yaml(config_path)
    if not data:
        raise EmpoError(f"{config_path}: empty, expected the resolved config of an empo-train run")
    for key in ("task", "algo", "preset"):
        if key not in data:
            raise EmpoError(f"{config_path}: missing key '{key}'; expected the resolved config of an empo-train run")
    config = config_from_dict(data, where=str(config_path))
    task_spec = task_named(config.task, str(config_path))
    if task is not None and task != config.task:
        raise EmpoError(f"{option} {run_dir}: the run is for {config.task}, not {task}")
    if not checkpoint_path.exists():
        raise EmpoError(f"{option} {run_dir}: no {CHECKPOINT} (the run did not finish an epoch); start it again")
    existing_file(checkpoint_path, option, "checkpoint of empo-train")
    state = load_torch_file(checkpoint_path, "a checkpoint of empo-train", weights_only=False)
    if "trainer" in state and "model" in state and "version" not in state:
        raise EmpoError(f"{checkpoint_path}: a checkpoint of empo-model train (a model fit), expected one of empo-train")
    _require_keys(state, AGENT_CHECKPOINT_KEYS, checkpoint_path, "a checkpoint of empo-train")
    agent = state["agent"]
    if not isinstance(agent, dict):
        raise EmpoError(f"{checkpoint_path}: 'agent' does not hold the {config.agent} agent's state (a mapping)")
    dims = (agent.get("obs_dim"), agent.get("act_dim"))
    if dims != (task_spec.obs_dim, task_spec.act_dim):
        raise EmpoError(
            f"{checkpoint_path}: the agent acts on observations of size {dims[0]} with actions of size {dims[1]}, but "
            f"{config.task} (config.yaml) has {task_spec.obs_dim} and {task_spec.act_dim}"
        )
    saved = state["config"]
    if isinstance(saved, dict) and (saved.get("task"), saved.get("algo")) != (config.task, config.algo):
        raise EmpoError(
            f"{checkpoint_path}: a checkpoint of {saved.get('algo')} on {saved.get('task')}, but config.yaml is for "
            f"{config.algo} on {config.task}"
        )
    _whole(state["epoch"], checkpoint_path, "epoch")
    from empo.loop.agents import check_agent_state

    try:
        check_agent_state(config, task_spec, agent)
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise EmpoError(
            f"{checkpoint_path}: the agent (actor, critics, optimisers) does not match config.yaml's sac settings "
            f"({_first_line(exc)})"
        ) from None
    except EmpoError as exc:
        raise EmpoError(f"{checkpoint_path}: {exc}") from None
    info_path = run_dir / RUN_JSON
    if info_path.exists():
        info = load_json_object(info_path, "the inputs of an empo-train run")
        model_dir = info.get("model_dir")
        if resuming and model_dir is not None:
            if not isinstance(model_dir, str):
                raise EmpoError(f"{info_path}: 'model_dir' is {model_dir!r}, expected a folder name or null")
            meta = check_model_dir(Path(model_dir), f"{info_path}: model_dir")
            if meta["kind"] != config.algorithm.model_kind:
                raise EmpoError(f"{info_path}: model_dir {model_dir} holds a {meta['kind']} model, but "
                                f"{config.algo} needs a {config.algorithm.model_kind} model")
        for key in ("d4rl_path", "minari_id"):
            if info.get(key) is not None and not isinstance(info[key], str):
                raise EmpoError(f"{info_path}: '{key}' is {info[key]!r}, expected a string or null")
