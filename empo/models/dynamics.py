"""``DynamicsModel``: the one interface the training loop and the evaluation code step through.

Both model kinds (ETM, FTM) take batched tensors on the model's device and return a
:class:`StepResult`; ``predict`` is the deterministic prediction used by evaluation.
Saved as ``model.pt`` (state dict, incl. scalers) + ``model.json`` (sizes, rule, config).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from empo.config import from_dict, to_dict
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


def build_model(kind: str, obs_dim: int, act_dim: int, termination: str, config: ModelConfig) -> DynamicsModel:
    from empo.models.etm import ETMDynamics
    from empo.models.ftm import FTMDynamics

    if kind == "etm":
        return ETMDynamics(obs_dim, act_dim, termination, config)
    if kind == "ftm":
        return FTMDynamics(obs_dim, act_dim, termination, config)
    raise EmpoError(f"unknown model kind '{kind}'; valid kinds: etm, ftm")


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


def load_dynamics(model_dir: str | Path, task: Task | None = None, device: str | torch.device = "cpu") -> DynamicsModel:
    """Load a model saved by :func:`train_dynamics`; with ``task`` its sizes must match the task's."""
    model_dir = Path(model_dir)
    meta = read_model_meta(model_dir)
    if task is not None and (meta["obs_dim"] != task.obs_dim or meta["act_dim"] != task.act_dim):
        raise EmpoError(
            f"{model_dir}: the model was trained on observations of size {meta['obs_dim']} and actions of "
            f"size {meta['act_dim']} (task {meta.get('meta', {}).get('task', '?')}), but task {task.name} "
            f"({task.gym_id}) has observations of size {task.obs_dim} and actions of size {task.act_dim}"
        )
    config = from_dict(ModelConfig, meta["config"], where=f"{model_dir / MODEL_META}: config")
    model = build_model(meta["kind"], meta["obs_dim"], meta["act_dim"], meta["termination"], config)
    state = torch.load(model_dir / MODEL_WEIGHTS, map_location="cpu", weights_only=True)
    if "holdout_index" in state:
        model.holdout_index = torch.zeros_like(state["holdout_index"])
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise EmpoError(f"{model_dir / MODEL_WEIGHTS}: weights do not match the saved config: {exc}") from None
    model.meta = dict(meta.get("meta", {}))
    return model.to(device).eval()
