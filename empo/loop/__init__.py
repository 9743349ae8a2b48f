"""The EMPO/MOPO training loop: rollout engine, device buffers, config, trainer."""

from empo.loop.algorithms import ALGORITHMS, AlgoConfig, Algorithm
from empo.loop.buffers import TransitionBuffer, sample_mixed
from empo.loop.config import TrainConfig, resolve_config
from empo.loop.rollout import RolloutResult, rollout
from empo.loop.trainer import Trainer

__all__ = [
    "ALGORITHMS",
    "AlgoConfig",
    "Algorithm",
    "RolloutResult",
    "TrainConfig",
    "Trainer",
    "TransitionBuffer",
    "resolve_config",
    "rollout",
    "sample_mixed",
]
