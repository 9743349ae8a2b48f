"""The training config: a dataclass tree validated strictly (unknown keys are errors naming them).

Resolution order, later wins: dataclass defaults (the published settings, docs/training.md "Configuration")
<- the algorithm's registry defaults (empo/loop/algorithms.py)
<- ``configs/tasks/<task>.yaml`` (horizon and penalty per algorithm) <- ``configs/presets/<preset>.yaml``
(cost: epochs, rollout batch, model preset) <- the task YAML's ``presets: {<preset>: ...}`` section
(a preset's settings that depend on the task) <- command-line overrides (``--set key=value``).
The task YAML's ``models: {<model preset>: ...}`` section is the model's (empo.models.config), not
the run's: the run's model config resolves it for the run's task.
The resolved config is written into the run directory as ``config.yaml``.

Each registered algorithm has a section named after it at the top level of the dict and YAML form
(``empo:``, ``mopo:``, so ``--set empo.penalty_coef=5``); in :class:`TrainConfig` they are the
``algorithms`` mapping.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from empo.agents.sac import SACConfig
from empo.config import dict_differences, flatten, from_dict, merge, packaged_yaml, preset_sections, unknown_key
from empo.errors import EmpoError
from empo.loop.agents import AGENTS, unsupported_settings
from empo.loop.algorithms import ALGORITHMS, AlgoConfig, get_algorithm
from empo.loop.diagnostics import DiagnosticsConfig
from empo.models.config import task_model_section

__all__ = ["AlgoConfig", "ModelSection", "PRESETS", "RolloutConfig", "RuntimeConfig", "TrainConfig",
           "TrainingConfig", "config_differences", "config_from_dict", "resolve_config", "run_settings"]

PRESETS: tuple[str, ...] = ("paper", "learn", "quick", "smoke")


@dataclass
class RolloutConfig:
    start_states: int = 50_000  # rollout batch: start states sampled from the dataset
    every: int = 1000  # gradient steps between rollouts
    retain_rollouts: int = 5  # model buffer capacity = start_states * horizon * retain_rollouts
    # not published (docs/training.md, "Rollouts from the episode starts"): at every rollout, also
    # this many of the data's episode-start states rolled out for episode_horizon steps, so that the
    # critics see where the current policy goes from where the real episodes begin; 0: off
    episode_starts: int = 0
    episode_horizon: int = 100

    def __post_init__(self) -> None:
        for name in ("start_states", "every", "retain_rollouts", "episode_horizon"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.episode_starts < 0:
            raise ValueError(f"episode_starts must be >= 0, got {self.episode_starts}")


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
    # which policy the run finishes with (docs/training.md, "The final policy"): "last", the last
    # epoch's (published); "best_model_return", of the epochs from final_policy_from (a share of
    # training.epochs) on, the one whose deterministic policy had the highest penalised return in
    # the model in the diagnostics: chosen offline, with the model and the data alone (not published)
    final_policy: Literal["last", "best_model_return"] = "last"
    final_policy_from: float = 0.25

    def __post_init__(self) -> None:
        if self.final_policy not in ("last", "best_model_return"):
            raise ValueError(f"final_policy must be 'last' or 'best_model_return', got {self.final_policy!r}")
        if not 0.0 <= self.final_policy_from < 1.0:
            raise ValueError(f"final_policy_from must be in [0, 1), got {self.final_policy_from}")
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
    """The transition model's preset (configs/models/), overrides of its fit, e.g. {etm: {epochs: 10}},
    and of its inference samplers (``samplers``)."""

    # empo.models.config.PRESETS
    preset: Literal["paper", "quick", "quick-warm", "quick-accurate", "learn", "smoke"] = "paper"
    overrides: dict[str, Any] = field(default_factory=dict)
    # The ETM's inference samplers, e.g. {etm: {rollout_langevin: {steps: 10}}}: applied to the model
    # the run uses (cached, --model-dir or new) without a new fit; not part of the model cache key.
    samplers: dict[str, Any] = field(default_factory=dict)


def _default_algorithms() -> dict[str, AlgoConfig]:
    return {name: algorithm.defaults() for name, algorithm in ALGORITHMS.items()}


@dataclass
class TrainConfig:
    task: str = "hopper-medium"
    algo: str = "empo"  # a name in empo.loop.algorithms.ALGORITHMS
    preset: Literal["paper", "learn", "quick", "smoke"] = "paper"
    seed: int = 0
    # who learns from the loop's data: a name in empo.loop.agents.AGENTS (sac: the built-in SAC;
    # sb3-sac, tianshou-sac: those frameworks' SAC, docs/integrations.md)
    agent: str = "sac"
    # every registered algorithm's setting on this task, by name (the chosen one is `algorithm`)
    algorithms: dict[str, AlgoConfig] = field(default_factory=_default_algorithms)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    sac: SACConfig = field(default_factory=SACConfig)
    model: ModelSection = field(default_factory=ModelSection)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)

    def __post_init__(self) -> None:
        if self.algo not in ALGORITHMS:
            raise ValueError(f"algo: unknown algorithm {self.algo!r}; valid algorithms: {', '.join(ALGORITHMS)}")
        if self.agent not in AGENTS:
            raise ValueError(f"agent: unknown agent {self.agent!r}; valid agents: {', '.join(AGENTS)}")
        self.algorithms = {**_default_algorithms(), **self.algorithms}
        if self.training.final_policy == "best_model_return" and (self.diagnostics.start_states == 0 or self.diagnostics.every != 1):
            raise ValueError(
                "training.final_policy=best_model_return picks the epoch by the diagnostics' model return, so it needs them every "
                f"epoch: set diagnostics.start_states above 0 (it is {self.diagnostics.start_states}) and diagnostics.every=1 "
                f"(it is {self.diagnostics.every}), or training.final_policy=last"
            )
        unsupported = unsupported_settings(self)
        if unsupported:
            # each refused 'key=value' with the value this agent runs
            fallback = {"penalty_at": "rollout", "alpha_max": "null", "cuda_graph": "false", "sync_debug": "false", "bc_weight": "0",
                        "actor_average_rate": "null"}
            fixes = [
                f"{key}={fallback[key.rsplit('.', 1)[-1]]}" for key in (item.split("=")[0] for item in unsupported)
            ]
            raise ValueError(
                f"agent {self.agent!r} cannot run {', '.join(unsupported)} (the built-in agent 'sac' can); "
                f"with this agent set {', '.join(fixes)}"
            )

    @property
    def algorithm(self) -> AlgoConfig:
        """The settings of the chosen algorithm."""
        return self.algorithms[self.algo]

    @property
    def model_buffer_capacity(self) -> int:
        per_rollout = self.rollout.start_states * self.algorithm.horizon + self.rollout.episode_starts * self.rollout.episode_horizon
        return per_rollout * self.rollout.retain_rollouts

    def to_dict(self) -> dict[str, Any]:
        """The dict (and config.yaml) form: each algorithm's section at the top level, after ``seed``."""
        data = dataclasses.asdict(self)
        sections = data.pop("algorithms")
        head = {key: data.pop(key) for key in ("task", "algo", "preset", "seed", "agent")}
        return {**head, **sections, **data}


def task_config_dict(task: str, preset: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The task YAML's settings, and its ``presets.<preset>`` section: what ``preset`` sets
    differently on this task (empty without ``preset`` or such a section)."""
    from empo.data.tasks import get_task

    get_task(task)  # a misspelt task name is an error listing the valid ones
    data = packaged_yaml("tasks", task)
    # its model presets' sections: checked, not run settings
    task_model_section(task, "paper", data.pop("models", None))
    per_preset = preset_sections(data.pop("presets", None), "presets", PRESETS, f"configs/tasks/{task}.yaml")
    return data, per_preset.get(preset, {}) if preset is not None else {}


def preset_config_dict(preset: str) -> dict[str, Any]:
    if preset not in PRESETS:
        raise EmpoError(f"unknown preset '{preset}'; valid presets: {', '.join(PRESETS)}")
    return packaged_yaml("presets", preset)


def _with_algorithm_sections(data: dict[str, Any], where: str) -> dict[str, Any]:
    """The dict form -> :func:`from_dict`'s: top-level sections named after an algorithm move into
    ``algorithms``, each over its algorithm's registry defaults (a partial section keeps the rest)."""
    known = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "algorithms"] + list(ALGORITHMS)
    for key in data:
        if key not in known and key != "algorithms":
            raise unknown_key(key, known, where)
    data = dict(data)
    given = data.pop("algorithms", None) or {}
    if not isinstance(given, dict):
        raise EmpoError(f"{where}.algorithms: expected a mapping of algorithm names to settings, got {given!r}")
    for name in list(data):
        if name in ALGORITHMS:
            given = merge(given, {name: data.pop(name)})
    sections: dict[str, Any] = {}
    for name, section in given.items():
        if name not in ALGORITHMS:
            raise EmpoError(f"{where}: unknown algorithm section '{name}'; valid algorithms: {', '.join(ALGORITHMS)}")
        if not isinstance(section, dict):
            raise EmpoError(f"{where}.{name}: expected a mapping of keys to values, got {section!r}")
        sections[name] = from_dict(AlgoConfig, merge(dataclasses.asdict(get_algorithm(name).defaults()), section),
                                   where=f"{where}.{name}")
    data["algorithms"] = sections
    return data


def resolve_config(
    task: str,
    algo: str = "empo",
    preset: str = "paper",
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
) -> TrainConfig:
    """Registry defaults + task YAML + preset YAML + overrides -> validated :class:`TrainConfig`."""
    get_algorithm(algo)
    task_data, task_preset_data = task_config_dict(task, preset)
    data = merge(merge(task_data, preset_config_dict(preset)), task_preset_data)
    data = merge(data, {"task": task, "algo": algo, "preset": preset, "seed": seed})
    if overrides:
        data = merge(data, overrides)
    config = config_from_dict(data, where=f"training config ({task}, {preset})")
    if config.task != task:
        raise EmpoError(f"training config: 'task' is {config.task!r} but the run is for {task!r}")
    return config


def run_settings(config: TrainConfig) -> dict[str, Any]:
    """What makes a run what it is, as dotted keys: its config less the ``runtime`` section (how it
    runs, not what: :class:`RuntimeConfig`), the ``diagnostics`` (they change no update) and the sections of the algorithms it does not run."""
    ignored = {"runtime", "diagnostics", *(name for name in config.algorithms if name != config.algo)}
    return {key: value for key, value in flatten(config.to_dict()).items() if key.split(".")[0] not in ignored}


def config_differences(old: TrainConfig, new: TrainConfig) -> list[str]:
    """The settings of :func:`run_settings` that differ between two configs, as ``key: old -> new``."""
    return dict_differences(run_settings(old), run_settings(new))


def config_from_dict(data: dict[str, Any], where: str = "config.yaml") -> TrainConfig:
    """A :class:`TrainConfig` from its dict form (:meth:`TrainConfig.to_dict`, a run's config.yaml)."""
    if not isinstance(data, dict):
        raise EmpoError(f"{where}: expected a mapping of keys to values, got {type(data).__name__}")
    return from_dict(TrainConfig, _with_algorithm_sections(data, where), where=where)
