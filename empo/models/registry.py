"""The model kinds: one registry line maps a kind's name to its config section, model and trainer.

Adding a kind means one new module (its ``DynamicsModel`` subclass and its ``EnsembleTrainer``
subclass, as etm.py and ftm.py) and one line in ``MODEL_KINDS``; its settings are a section of
``ModelConfig`` (empo/models/config.py) named like the kind. ``build_model`` and
``load_dynamics`` go through this table; nothing else names a kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from empo.config import from_dict
from empo.errors import EmpoError
from empo.models.config import ETMConfig, FTMConfig, ModelConfig
from empo.models.dynamics import MODEL_META, MODEL_WEIGHTS, DynamicsModel, read_model_meta
from empo.models.etm import ETMDynamics, ETMTrainer
from empo.models.fitting import EnsembleTrainer
from empo.models.ftm import FTMDynamics, FTMTrainer

if TYPE_CHECKING:
    from empo.data.tasks import Task


@dataclass(frozen=True)
class ModelKind:
    """One model kind: its config section class (the ``ModelConfig`` field named like the kind), model and trainer."""

    config_class: type
    model_class: type[DynamicsModel]
    trainer_class: type[EnsembleTrainer]


MODEL_KINDS: dict[str, ModelKind] = {
    "etm": ModelKind(ETMConfig, ETMDynamics, ETMTrainer),
    "ftm": ModelKind(FTMConfig, FTMDynamics, FTMTrainer),
}


def get_model_kind(kind: str) -> ModelKind:
    if kind not in MODEL_KINDS:
        raise EmpoError(f"unknown model kind '{kind}'; valid kinds: {', '.join(MODEL_KINDS)}")
    return MODEL_KINDS[kind]


def build_model(kind: str, obs_dim: int, act_dim: int, termination: str, config: ModelConfig) -> DynamicsModel:
    """A new, untrained model of ``kind`` with ``config``'s settings."""
    return get_model_kind(kind).model_class(obs_dim, act_dim, termination, config)


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
