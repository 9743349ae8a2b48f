"""The training config: a dataclass tree validated strictly (unknown keys are errors naming them).

Resolution order, later wins: dataclass defaults (the published settings, docs/training.md "Configuration")
<- ``configs/tasks/<task>.yaml`` (horizon and penalty per algorithm) <- ``configs/presets/<preset>.yaml``
(cost: epochs, rollout batch, model preset) <- command-line overrides (``--set key=value``).
The resolved config is written into the run directory as ``config.yaml``.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from empo.agents.sac import SACConfig
from empo.config import from_dict, merge
from empo.errors import EmpoError

ALGOS: tuple[str, ...] = ("empo", "mopo")
PRESETS: tuple[str, ...] = ("paper", "quick", "smoke")


@dataclass
class AlgoConfig:
    """What differs between EMPO and MOPO on one task."""

    # "simulator": the real MuJoCo env stands in for the model (a perfect model, zero penalty):
    # a diagnostic that tells loop/agent problems from model problems; not offline RL
    model_kind: Literal["etm", "ftm", "simulator"] = "etm"
    horizon: int = 5
    penalty_coef: float = 2.0
    # Where the penalty meets the reward. "update": the raw penalty is stored with each model
    # transition and subtracted inside every critic target (the authors' EMPO); "rollout": taken
    # off the reward once, when the rollout is stored (MOPO, as in OfflineRL-Kit).
    penalty_at: Literal["update", "rollout"] = "rollout"
    # coef * clamp(Q'(s') / decay_scale, 0, 1) per sample. At "update", Q' is that update's soft
    # target value of s' (min target critic - alpha * log pi); at "rollout", the critics' min value.
    penalty_decay: bool = False
    decay_scale: float = 100.0
    # Upper clamp of the SAC temperature used in the losses, applied after each update (the
    # authors' EMPO clamps alpha to [0, 1]); None: no clamp.
    alpha_max: float | None = None

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")
        if self.penalty_coef < 0:
            raise ValueError(f"penalty_coef must be >= 0, got {self.penalty_coef}")
        if self.decay_scale <= 0:
            raise ValueError(f"decay_scale must be positive, got {self.decay_scale}")
        if self.alpha_max is not None and not self.alpha_max > 0:
            raise ValueError(f"alpha_max must be positive or null, got {self.alpha_max}")


def _empo() -> AlgoConfig:
    # the authors' EMPO: penalty inside the critic target, decay always on, alpha clamped to [0, 1]
    return AlgoConfig(model_kind="etm", horizon=5, penalty_coef=2.0, penalty_at="update", penalty_decay=True, alpha_max=1.0)


def _mopo() -> AlgoConfig:
    return AlgoConfig(model_kind="ftm", horizon=5, penalty_coef=1.0)


@dataclass
class RolloutConfig:
    start_states: int = 50_000  # rollout batch: start states sampled from the dataset
    every: int = 1000  # gradient steps between rollouts
    retain_rollouts: int = 5  # model buffer capacity = start_states * horizon * retain_rollouts

    def __post_init__(self) -> None:
        for name in ("start_states", "every", "retain_rollouts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class TrainingConfig:
    epochs: int = 3000
    steps_per_epoch: int = 1000
    batch_size: int = 256
    real_ratio: float = 0.05
    eval_episodes: int = 10
    # the finished run's policy evaluated once more over this many episodes (summary.json's
    # final_eval_*; an epoch's 5-10 episodes swing too much to report); 0: none
    final_eval_episodes: int = 50

    def __post_init__(self) -> None:
        for name in ("epochs", "steps_per_epoch", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_episodes", "final_eval_episodes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.real_ratio <= 1.0:
            raise ValueError(f"real_ratio must be in [0, 1], got {self.real_ratio}")


@dataclass
class RuntimeConfig:
    """How the loop runs on its device; none of these changes the algorithm's definition.

    ``tf32``: float32 matmuls in TF32 on GPUs that have it (Ampere and later; about 1.7x faster
    Langevin sampling and ETM steps on an H100, benchmarks/results/device-benchmark-gpu.md, at
    about 1e-3 relative rounding). ``cuda_graph``: each SAC step (batch sampling, update, metric
    sums) replayed as one captured CUDA graph instead of hundreds of kernel launches; CUDA only.
    ``sync_debug``: run the hot loop under ``torch.cuda.set_sync_debug_mode("error")``, so that a
    host synchronisation inside it fails loudly (a check for developers); CUDA only.
    """

    tf32: bool = True
    cuda_graph: bool = False
    sync_debug: bool = False


@dataclass
class ModelSection:
    """The transition model's preset (configs/models/) and overrides, e.g. {etm: {epochs: 10}}."""

    preset: Literal["paper", "quick", "smoke"] = "paper"
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    task: str = "hopper-medium"
    algo: Literal["empo", "mopo"] = "empo"
    preset: Literal["paper", "quick", "smoke"] = "paper"
    seed: int = 0
    empo: AlgoConfig = field(default_factory=_empo)
    mopo: AlgoConfig = field(default_factory=_mopo)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    sac: SACConfig = field(default_factory=SACConfig)
    model: ModelSection = field(default_factory=ModelSection)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    @property
    def algorithm(self) -> AlgoConfig:
        """The settings of the chosen algorithm."""
        return self.empo if self.algo == "empo" else self.mopo

    @property
    def model_buffer_capacity(self) -> int:
        return self.rollout.start_states * self.algorithm.horizon * self.rollout.retain_rollouts

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _read_packaged_yaml(folder: str, name: str) -> dict[str, Any]:
    resource = importlib.resources.files("empo.configs") / folder / f"{name}.yaml"
    if not resource.is_file():
        raise EmpoError(f"configs/{folder}/{name}.yaml is missing from the installed package")
    data = yaml.safe_load(resource.read_text()) or {}
    if not isinstance(data, dict):
        raise EmpoError(f"configs/{folder}/{name}.yaml: expected a mapping at the top level")
    return data


def task_config_dict(task: str) -> dict[str, Any]:
    from empo.data.tasks import get_task

    get_task(task)  # a misspelt task name is an error listing the valid ones
    return _read_packaged_yaml("tasks", task)


def preset_config_dict(preset: str) -> dict[str, Any]:
    if preset not in PRESETS:
        raise EmpoError(f"unknown preset '{preset}'; valid presets: {', '.join(PRESETS)}")
    return _read_packaged_yaml("presets", preset)


def resolve_config(
    task: str,
    algo: str = "empo",
    preset: str = "paper",
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
) -> TrainConfig:
    """Task YAML + preset YAML + overrides -> validated :class:`TrainConfig`."""
    if algo not in ALGOS:
        raise EmpoError(f"unknown algorithm '{algo}'; valid algorithms: {', '.join(ALGOS)}")
    data = merge(task_config_dict(task), preset_config_dict(preset))
    data = merge(data, {"task": task, "algo": algo, "preset": preset, "seed": seed})
    if overrides:
        data = merge(data, overrides)
    config = from_dict(TrainConfig, data, where=f"training config ({task}, {preset})")
    if config.task != task:
        raise EmpoError(f"training config: 'task' is {config.task!r} but the run is for {task!r}")
    return config


def config_from_dict(data: dict[str, Any], where: str = "config.yaml") -> TrainConfig:
    return from_dict(TrainConfig, data, where=where)
