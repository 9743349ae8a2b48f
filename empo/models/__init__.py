"""Transition models: the ETM ensemble (energy + Langevin sampler) and the FTM Gaussian ensemble.

The training loop codes against this API only (docs/models.md): every model implements
:class:`Dynamics`, and empo/models/registry.py maps a kind's name to its classes::

    config = load_model_config("etm", "quick", {"etm": {"epochs": 10}})
    model = train_dynamics(transitions, task, config, out_dir, device="cuda")
    model = load_dynamics(out_dir, task, device="cuda")
    result = model.step(obs, act, generator)  # StepResult(next_obs, reward, terminal, penalty)
"""

from empo.models.config import ETMConfig, FTMConfig, LangevinConfig, ModelConfig, load_model_config
from empo.models.dynamics import Dynamics, DynamicsModel, StepResult, check_dynamics
from empo.models.langevin import langevin_sample
from empo.models.registry import MODEL_KINDS, build_model, load_dynamics
from empo.models.termination import get_termination_fn
from empo.models.train import train_dynamics

__all__ = [
    "MODEL_KINDS",
    "Dynamics",
    "DynamicsModel",
    "build_model",
    "check_dynamics",
    "ETMConfig",
    "FTMConfig",
    "LangevinConfig",
    "ModelConfig",
    "StepResult",
    "get_termination_fn",
    "langevin_sample",
    "load_dynamics",
    "load_model_config",
    "train_dynamics",
]
