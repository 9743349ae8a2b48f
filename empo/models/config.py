"""Model configs: every published ETM and FTM setting as a default (docs/models.md, docs/method.md "FTM").

The dataclass defaults are the ``paper`` preset; ``configs/models/*.yaml`` hold the presets (each
over paper, or over the preset its ``extends:`` names). For a task, the task YAML's ``models:
{<preset>: ...}`` section applies over its preset, and overrides over both. Unknown keys are errors
naming the key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from empo.config import MODEL_PRESETS, flatten, from_dict, merge, packaged_yaml, preset_sections
from empo.errors import EmpoError

PRESETS: tuple[str, ...] = MODEL_PRESETS
KINDS: tuple[str, ...] = ("etm", "ftm")


@dataclass
class LangevinConfig:
    """One Langevin sampler setting (docs/models.md, "The Langevin sampler and the published ETM settings").

    Update per step t: ``y <- clamp(y - clamp(eta_t * (grad_scale * clamp(dE/dy) + noise * eps)))``
    with ``eta_t = (step_size_start - step_size_end) * (1 - t / (steps - 1)) ** step_size_power + step_size_end``,
    t = 0..steps-1, so the last step uses ``step_size_end`` exactly (the authors' schedule).
    """

    steps: int = 50
    noise: float = 0.5  # sigma: scale of the Gaussian noise eps inside the step
    step_size_start: float = 0.1
    step_size_end: float = 1e-3
    step_size_power: float = 2.0  # polynomial decay of the step size
    grad_scale: float = 0.5  # the 0.5 in y - eta * (0.5 * grad + sigma * eps)
    grad_clip: float = 10.0  # elementwise clamp of dE/dy: 10 for training negatives, 0.5 at inference
    move_clip: float = 0.5  # elementwise clamp of each step's move
    bound: float = 1.1  # values clamped to [-bound, bound] (targets are scaled to [-1, 1])
    chains: int = 1  # chains per input; the lowest-energy last iterate is returned
    # start of the chains when no warm start is given; "mean_head": the ETM's mean-regression head's
    # prediction (needs etm.mean_head: true), the cheap warm start of sampler-steps-*-cpu.md;
    # "positive" (training negatives only): the true target, so that negatives are short chains
    # from the data (contrastive-divergence style)
    init: Literal["zeros", "uniform", "mean_head", "positive"] = "zeros"
    # standard deviation of Gaussian noise added to every chain's start (scaled units, targets in
    # [-1, 1]): spreads warm-started chains, e.g. negatives that start near the mean head or the data
    init_noise: float = 0.0
    # True: t / (steps - 1), the last step uses step_size_end (the authors' code). False: t / steps,
    # which stops above step_size_end (this project before 2026-11-26; kept to reproduce old runs).
    step_size_reaches_end: bool = True
    # dE/dy by the hand-written chain of batched matmuls (empo/models/energy_grad.py; equal to
    # autograd's up to float rounding, cheaper), the same chain through torch.compile (fuses the
    # elementwise passes; compiles on first use), or by torch.autograd
    gradient: Literal["analytic", "compiled", "autograd"] = "analytic"

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.chains < 1:
            raise ValueError(f"chains must be >= 1, got {self.chains}")
        for name in ("grad_clip", "move_clip", "bound", "grad_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.noise < 0:
            raise ValueError(f"noise must be >= 0, got {self.noise}")
        if not self.init_noise >= 0:
            raise ValueError(f"init_noise must be >= 0, got {self.init_noise}")
        if not self.step_size_start >= self.step_size_end >= 0:
            raise ValueError(
                f"step sizes must satisfy step_size_start >= step_size_end >= 0, got {self.step_size_start} and {self.step_size_end}"
            )


def check_budget(section: Any) -> None:
    """The early-stopping and cap settings a model kind's section shares, checked."""
    patience = getattr(section, "early_stop_patience", None)
    if patience is not None and patience < 1:
        raise ValueError(f"early_stop_patience must be >= 1 (or null: off), got {patience}")
    if not section.early_stop_improvement >= 0:
        raise ValueError(f"early_stop_improvement must be >= 0, got {section.early_stop_improvement}")
    if section.max_updates is not None and section.max_updates < 1:
        raise ValueError(f"max_updates must be >= 1 (or null: no cap), got {section.max_updates}")
    if section.max_minutes is not None and not section.max_minutes > 0:
        raise ValueError(f"max_minutes must be positive (or null: no cap), got {section.max_minutes}")


def _train_langevin() -> LangevinConfig:
    return LangevinConfig(steps=50, noise=0.5, step_size_start=0.1, step_size_end=1e-3, init="uniform")


def _rollout_langevin() -> LangevinConfig:
    return LangevinConfig(steps=30, noise=0.5, step_size_start=0.1, step_size_end=1e-5, grad_clip=0.5)


def _eval_langevin() -> LangevinConfig:
    return LangevinConfig(steps=100, noise=0.0, step_size_start=0.1, step_size_end=1e-5, grad_clip=0.5)


@dataclass
class ETMConfig:
    """Energy-based transition model ensemble (published settings: docs/models.md, docs/method.md "ETM")."""

    ensemble_size: int = 5
    hidden_size: int = 200
    hidden_layers: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4  # Adam's coupled L2 decay, as torch.optim.Adam(weight_decay=...)
    # "sum": the per-sample InfoNCE + gradient penalty summed over the batch (the authors' code);
    # "mean": averaged, which makes the same weight_decay batch_size times stronger against the data.
    loss_reduction: Literal["sum", "mean"] = "sum"
    batch_size: int = 1024
    epochs: int = 300
    steps_per_epoch: int | None = None  # None: one pass over the training split per epoch
    holdout_fraction: float = 0.1
    holdout_min: int = 1000
    holdout_max: int | None = None
    num_negatives: int = 16
    temperature: float = 1.0
    grad_penalty_margin: float = 5.0  # hinge on ||dE/dy||_2 above this
    grad_penalty_weight: float = 1.0
    holdout_eval_size: int = 1000  # holdout rows scored each epoch (Langevin is costly)
    train_langevin: LangevinConfig = field(default_factory=_train_langevin)
    rollout_langevin: LangevinConfig = field(default_factory=_rollout_langevin)
    eval_langevin: LangevinConfig = field(default_factory=_eval_langevin)
    # A small MLP (s, a) -> (Delta s, r) trained by mean squared error beside the energies, on the
    # same minibatches: the start of the samplers whose init is "mean_head" (a warm start, so that a
    # few Langevin steps refine a forward guess instead of travelling from zero). Not in the paper.
    mean_head: bool = False
    # One head per member instead of one for all (needs mean_head): each member's chains start from
    # its own guess, so the members' samples disagree where their heads do, as an FTM ensemble's
    # would, and the uncertainty penalty keeps that signal. Not in the paper.
    mean_head_ensemble: bool = False
    # The mean head's size: hidden layers of mean_head_hidden_size units (0: the energies' hidden_size)
    mean_head_layers: int = 2
    mean_head_hidden_size: int = 0
    # The head's updates per ETM update: the first on the update's minibatch, the others on fresh
    # ones, the head's loss alone. A head update costs about 2% of a quick-warm ETM update (no
    # Langevin chain); per-member heads trained alone match the quick FTM off the data after about
    # 24,000 updates, not the 6,000 a 30-minute CPU fit gives them at 1
    # (benchmarks/results/mean-heads-hopper-medium-cpu.md; 4 in etm-recipes-hopper-medium-cpu.md).
    mean_head_updates: int = 1
    # Early stopping on the holdout error of the evaluation sampler (the mean over next-state and
    # reward dimensions of the raw-unit MSE, as the FTM's rule): the fit ends after this many epochs
    # without a relative improvement above early_stop_improvement, and the best epoch's ETM is kept.
    # None: off, the published fixed ``epochs``. Not in the paper (docs/models.md, "Fits that stop").
    early_stop_patience: int | None = None
    early_stop_improvement: float = 0.01
    # The rule compares the mean holdout error of the last early_stop_window epochs, not one epoch's:
    # a single epoch's error of the InfoNCE-trained ETM varies by about 13% from one epoch to the
    # next (hopper-medium, learn preset), so one lucky epoch would end the fit (docs/models.md,
    # "Fits that stop"). 1: the FTM's rule on each epoch's error.
    early_stop_window: int = 1
    # Polyak averaging of the ETM's weights (energies and mean heads) with this decay per update
    # (None: off, the published training): the averaged weights are the ones scored on the holdout,
    # kept as the best snapshot and saved, while training goes on with the raw ones. Not in the paper.
    weight_ema: float | None = None
    # A budget that ends the fit wherever it stands (None: none); said on the console and in the
    # model's meta (``stopped_by``) when it binds. Updates are deterministic; minutes count the fit's
    # epochs on this machine (a resumed fit counts on from its checkpoint).
    max_updates: int | None = None
    max_minutes: float | None = None
    # Rows within fall_window steps before a transition that ends its episode by the termination
    # rule are drawn fall_weight times as often in the fit's minibatches (1: every row alike, the
    # published fit). Not in the paper: the learn ETM foresaw fewer of hopper's falls than the FTM
    # over 20 steps (docs/claims.md, "Why the ETM ranks worse on hopper"); the rows before a fall are
    # 3.5% of hopper-medium's. Needs steps_per_epoch (random minibatches).
    fall_weight: float = 1.0
    fall_window: int = 20

    def __post_init__(self) -> None:
        check_budget(self)
        if self.fall_weight <= 0 or self.fall_window < 1:
            raise ValueError(f"fall_weight must be > 0 and fall_window >= 1, got {self.fall_weight} and {self.fall_window}")
        if self.fall_weight != 1.0 and self.steps_per_epoch is None:
            raise ValueError("fall_weight other than 1 draws weighted random minibatches: it needs steps_per_epoch (not a pass over the data)")
        if self.early_stop_window < 1:
            raise ValueError(f"early_stop_window must be >= 1 (epochs whose holdout errors are averaged), got {self.early_stop_window}")
        if self.weight_ema is not None and not 0.0 < self.weight_ema < 1.0:
            raise ValueError(f"weight_ema must be in (0, 1) (the averaging decay per update) or null (off), got {self.weight_ema}")
        if self.mean_head_ensemble and not self.mean_head:
            raise ValueError("mean_head_ensemble needs mean_head: true")
        if self.mean_head_updates > 1 and not self.mean_head:
            raise ValueError("mean_head_updates above 1 needs mean_head: true")
        if self.mean_head_updates < 1:
            raise ValueError(f"mean_head_updates must be >= 1 (the head's updates per ETM update), got {self.mean_head_updates}")
        if self.mean_head_layers < 1 or self.mean_head_hidden_size < 0:
            raise ValueError(
                f"mean_head_layers must be >= 1 and mean_head_hidden_size >= 0 (0: hidden_size), "
                f"got {self.mean_head_layers} and {self.mean_head_hidden_size}"
            )
        for name in ("train_langevin", "rollout_langevin", "eval_langevin"):
            if getattr(self, name).init == "mean_head" and not self.mean_head:
                raise ValueError(f"{name}.init is mean_head, which needs mean_head: true")
        for name in ("rollout_langevin", "eval_langevin"):
            if getattr(self, name).init == "positive":
                raise ValueError(f"{name}.init: positive is for training negatives (train_langevin) only: inference has no true target")


@dataclass
class FTMConfig:
    """Gaussian forward-model ensemble as used by MOPO (docs/method.md, "FTM")."""

    ensemble_size: int = 7
    elites: int = 5
    hidden_size: int = 200
    hidden_layers: int = 4
    weight_decays: list[float] = field(default_factory=lambda: [2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4])
    lr: float = 1e-3
    batch_size: int = 256
    max_epochs: int | None = None  # None: until early stopping
    steps_per_epoch: int | None = None  # None: one bootstrap pass per epoch
    holdout_fraction: float = 0.2
    holdout_min: int = 0
    holdout_max: int | None = 1000
    bootstrap: bool = True
    early_stop_improvement: float = 0.01  # relative holdout-MSE improvement that counts
    early_stop_patience: int = 5  # epochs without any member improving
    logvar_loss_coef: float = 0.01  # pulls the soft bounds of the log-variance together
    max_logvar_init: float = 0.5
    min_logvar_init: float = -10.0
    # A budget that ends the fit wherever it stands (None: none); said on the console and in the
    # model's meta (``stopped_by``) when it binds. Updates are deterministic; minutes count the fit's
    # epochs on this machine (a resumed fit counts on from its checkpoint).
    max_updates: int | None = None
    max_minutes: float | None = None

    def __post_init__(self) -> None:
        check_budget(self)


@dataclass
class ModelConfig:
    kind: Literal["etm", "ftm"] = "etm"
    preset: str = "paper"
    etm: ETMConfig = field(default_factory=ETMConfig)
    ftm: FTMConfig = field(default_factory=FTMConfig)

    def __post_init__(self) -> None:
        if len(self.ftm.weight_decays) != self.ftm.hidden_layers + 1:
            raise ValueError(
                f"ftm.weight_decays needs hidden_layers + 1 = {self.ftm.hidden_layers + 1} values, "
                f"got {len(self.ftm.weight_decays)}"
            )
        if not 1 <= self.ftm.elites <= self.ftm.ensemble_size:
            raise ValueError(f"ftm.elites must be between 1 and ensemble_size, got {self.ftm.elites}")


def preset_dict(preset: str) -> dict[str, Any]:
    """The YAML of one preset as a dict: merged over the preset its ``extends:`` names (quick-warm
    over quick), and every preset over paper."""
    if preset not in PRESETS:
        raise EmpoError(f"unknown model preset '{preset}'; valid presets: {', '.join(PRESETS)}")
    chain: list[dict[str, Any]] = []
    name: str | None = preset
    while name is not None and name != "paper":
        loaded = packaged_yaml("models", name)
        parent = loaded.pop("extends", None)
        if parent is not None and (parent not in PRESETS or parent == preset or len(chain) >= len(PRESETS)):
            raise EmpoError(f"configs/models/{name}.yaml: extends {parent!r}, expected another preset of {', '.join(PRESETS)}")
        chain.append(loaded)
        name = parent
    data = packaged_yaml("models", "paper")
    for loaded in reversed(chain):
        data = merge(data, loaded)
    return data


_UNREAD = object()


def task_model_section(task: str, preset: str, sections: Any = _UNREAD) -> dict[str, Any]:
    """What ``configs/tasks/<task>.yaml`` sets differently for the model preset ``preset`` (its
    ``models: {<preset>: ...}`` section; empty without one), all of the file's sections validated.
    ``sections``: the ``models`` value when the caller has read the file already."""
    if sections is _UNREAD:
        sections = packaged_yaml("tasks", task).get("models")
    sections = preset_sections(sections, "models", PRESETS, f"configs/tasks/{task}.yaml", "model preset")
    return sections.get(preset, {})


def load_model_config(
    kind: str, preset: str = "paper", overrides: dict[str, Any] | None = None, task: str | None = None
) -> ModelConfig:
    """Build the config of a ``kind`` ("etm" or "ftm") model from a preset plus overrides.

    With ``task``, the task YAML's ``models.<preset>`` section (settings of the preset that depend
    on the task, e.g. the samplers' first step size of ``quick-accurate``) applies over the preset
    and before ``overrides``. ``overrides`` is a nested dict, e.g. ``{"etm": {"epochs": 10}}``;
    unknown keys raise :class:`EmpoError` naming the key.
    """
    if kind not in KINDS:
        raise EmpoError(f"unknown model kind '{kind}'; valid kinds: {', '.join(KINDS)}")
    data = preset_dict(preset)
    where = f"model config ({preset})"
    if task is not None:
        section = task_model_section(task, preset)
        if section:
            data = merge(data, section)
            where = f"model config ({preset}, with configs/tasks/{task}.yaml's models.{preset})"
    if overrides:
        if not isinstance(overrides, dict):
            raise EmpoError(f"model config overrides: expected a mapping, got {type(overrides).__name__}")
        data = merge(data, overrides)
    data["kind"] = kind
    data["preset"] = preset
    return from_dict(ModelConfig, data, where=where)


def model_settings(config: ModelConfig) -> dict[str, Any]:
    """What makes a model what it is, as dotted keys: its kind, preset and its kind's section (the
    other kind's settings are carried along in every config but never read)."""
    return {"kind": config.kind, "preset": config.preset,
            **flatten(dataclasses.asdict(getattr(config, config.kind)), f"{config.kind}.")}


INFERENCE_SAMPLERS: tuple[str, ...] = ("rollout_langevin", "eval_langevin")


def with_samplers(config: ModelConfig, samplers: dict[str, Any] | None, where: str = "model.samplers") -> ModelConfig:
    """``config`` with its ETM's inference samplers changed by ``samplers`` (``{etm: {rollout_langevin:
    {...}, eval_langevin: {...}}}``), validated. They act at inference only, so a fitted model takes them
    as it is (empo.pipeline applies them to cached and given models without a new fit)."""
    if not samplers:
        return config
    if not isinstance(samplers, dict) or set(samplers) - {"etm"}:
        raise EmpoError(f"{where}: expected {{etm: {{rollout_langevin: ..., eval_langevin: ...}}}}, got {samplers!r}")
    if config.kind != "etm":
        raise EmpoError(f"{where}: the samplers are the ETM's; this is a {config.kind} model")
    given = samplers["etm"]
    if not isinstance(given, dict) or set(given) - set(INFERENCE_SAMPLERS):
        unknown = sorted(set(given) - set(INFERENCE_SAMPLERS)) if isinstance(given, dict) else given
        raise EmpoError(f"{where}.etm: unknown {unknown!r}; the inference samplers are {', '.join(INFERENCE_SAMPLERS)}")
    changes = {}
    for name, values in given.items():
        current = dataclasses.asdict(getattr(config.etm, name))
        if not isinstance(values, dict):
            raise EmpoError(f"{where}.etm.{name}: expected a mapping of sampler settings, got {values!r}")
        changes[name] = from_dict(LangevinConfig, merge(current, values), where=f"{where}.etm.{name}")
    try:
        etm = dataclasses.replace(config.etm, **changes)
    except ValueError as exc:
        raise EmpoError(f"{where}: {exc}") from None
    return dataclasses.replace(config, etm=etm)


def parse_overrides(assignments: list[str]) -> dict[str, Any]:
    """``["etm.epochs=3", "etm.train_langevin.steps=10"]`` -> nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in assignments:
        if "=" not in item:
            raise EmpoError(f"--set '{item}': expected KEY=VALUE, e.g. etm.epochs=10")
        key, raw = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise EmpoError(f"--set '{item}': empty key")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise EmpoError(f"--set '{item}': '{part}' is set both as a value and a section")
        node[parts[-1]] = value
    return out
