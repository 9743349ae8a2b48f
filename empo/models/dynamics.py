"""The model contract (:class:`Dynamics`) and the base of the trained ensembles (:class:`DynamicsModel`).

Every model the loop steps (ETM, FTM, the simulator diagnostic, a model of your own) takes
batched tensors on its device and returns a :class:`StepResult`; ``predict`` is the deterministic
prediction used by evaluation. ``check_dynamics`` says what a model lacks. Trained ensembles are
saved as ``model.pt`` (state dict, incl. scalers) + ``model.json`` (sizes, rule, config);
empo/models/registry.py builds and loads them by kind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from empo.config import to_dict
from empo.errors import EmpoError
from empo.models.config import ModelConfig
from empo.models.layers import Standardizer
from empo.models.termination import get_termination_fn
from empo.utils import atomic_write, atomic_write_text

if TYPE_CHECKING:
    from empo.data.tasks import Task

MODEL_WEIGHTS = "model.pt"
MODEL_META = "model.json"
FORMAT_VERSION = 1


@dataclass
class StepResult:
    """One model step for a batch: next_obs [B, obs_dim], reward [B], terminal [B] bool, penalty [B].

    ``penalty`` is the raw uncertainty (no coefficient applied).
    """

    next_obs: Tensor
    reward: Tensor
    terminal: Tensor
    penalty: Tensor


@runtime_checkable
class Dynamics(Protocol):
    """What the loop and the evaluation code need of a transition model: the one model contract.

    The ETM and FTM ensembles (:class:`DynamicsModel`), the simulator diagnostic
    (``empo.envs.simulator``) and any model of your own implement it. ``step`` samples one
    transition per row with its raw uncertainty penalty; ``predict`` is the deterministic
    prediction that transition error and evaluation use. Tensors are batched on ``device``.
    """

    kind: str
    obs_dim: int
    act_dim: int

    @property
    def device(self) -> torch.device: ...

    def step(self, obs: Tensor, act: Tensor, generator: torch.Generator | None = None) -> StepResult: ...

    def predict(self, obs: Tensor, act: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]: ...


CONTRACT = ("kind", "obs_dim", "act_dim", "device", "step", "predict")


def check_dynamics(model: object, task: Task | None = None, where: str = "the transition model") -> None:
    """Raise :class:`EmpoError` naming what ``model`` lacks of :class:`Dynamics`, or a size that differs from ``task``'s."""
    name = type(model).__name__
    missing = [attr for attr in CONTRACT if not hasattr(model, attr)]
    if missing:
        raise EmpoError(
            f"{where} ({name}) lacks {', '.join(missing)}: a model needs {', '.join(CONTRACT)} (empo.models.Dynamics)"
        )
    for method in ("step", "predict"):
        if not callable(getattr(model, method)):
            raise EmpoError(f"{where} ({name}): '{method}' must be a method")
    if task is not None:
        for attr, expected in (("obs_dim", task.obs_dim), ("act_dim", task.act_dim)):
            got = getattr(model, attr)
            if got != expected:
                raise EmpoError(
                    f"{where} ({name}, kind {model.kind}) has {attr}={got}, but task {task.name} needs {expected}; "  # type: ignore[attr-defined]
                    "was it trained on another task?"
                )


class DynamicsModel(nn.Module):
    """Base of the ETM and FTM ensembles: sizes, input scaler, termination rule, save."""

    kind: str = ""

    def __init__(self, obs_dim: int, act_dim: int, termination: str, config: ModelConfig) -> None:
        super().__init__()
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.termination = termination
        self.termination_fn = get_termination_fn(termination)
        self.config = config
        self.input_scaler = Standardizer(self.obs_dim + self.act_dim)
        self.meta: dict[str, Any] = {}  # task name, dataset size, ... (saved in model.json)
        self.register_buffer("holdout_index", torch.zeros(0, dtype=torch.long))

    @property
    def device(self) -> torch.device:
        return self.input_scaler.mean.device

    @property
    def target_dim(self) -> int:
        """(Delta s, r): the next-state change plus one reward dimension."""
        return self.obs_dim + 1

    def fit_scalers(self, inputs: Tensor, targets: Tensor) -> None:
        self.input_scaler.fit(inputs)

    def check_inputs(self, obs: Tensor, act: Tensor) -> None:
        """Shape check only (no host sync): [B, obs_dim] and [B, act_dim]."""
        if obs.dim() != 2 or obs.shape[1] != self.obs_dim:
            raise EmpoError(f"obs must have shape [batch, {self.obs_dim}], got {list(obs.shape)}")
        if act.dim() != 2 or act.shape[1] != self.act_dim or act.shape[0] != obs.shape[0]:
            raise EmpoError(f"act must have shape [{obs.shape[0]}, {self.act_dim}], got {list(act.shape)}")

    def step(self, obs: Tensor, act: Tensor, generator: torch.Generator | None = None) -> StepResult:
        raise NotImplementedError

    def predict(self, obs: Tensor, act: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Deterministic (next_obs [B, obs_dim], reward [B]) for evaluation."""
        raise NotImplementedError

    def save(self, model_dir: str | Path) -> None:
        """Write model.pt (atomically) and model.json into ``model_dir``."""
        model_dir = Path(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        state = self.state_dict()
        atomic_write(model_dir / MODEL_WEIGHTS, lambda p: torch.save(state, p))
        meta = {
            "format": FORMAT_VERSION,
            "kind": self.kind,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "termination": self.termination,
            "meta": self.meta,
            "config": to_dict(self.config),
        }
        atomic_write_text(model_dir / MODEL_META, json.dumps(meta, indent=2))


def read_model_meta(model_dir: str | Path) -> dict[str, Any]:
    model_dir = Path(model_dir)
    meta_path = model_dir / MODEL_META
    if not meta_path.is_file() or not (model_dir / MODEL_WEIGHTS).is_file():
        raise EmpoError(f"{model_dir}: no trained model here (expected {MODEL_META} and {MODEL_WEIGHTS})")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise EmpoError(f"{meta_path}: not valid JSON: {exc}") from None
    for key in ("kind", "obs_dim", "act_dim", "termination", "config"):
        if key not in meta:
            raise EmpoError(f"{meta_path}: missing key '{key}'")
    return meta
