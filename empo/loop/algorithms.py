"""The algorithms the loop runs, by name: each is one :class:`AlgoConfig` default in :data:`ALGORITHMS`.

An algorithm here is a setting of the shared loop (docs/training.md): which model kind it learns
from, its rollout horizon, and its penalty strategy (empo/loop/penalty.py). The loop and the
rollout engine know no algorithm by name, so adding one is one registry line::

    ALGORITHMS["mopo-ens"] = Algorithm("MOPO's loop on the ETM", lambda: AlgoConfig(model_kind="etm"))

after which ``empo-train --algo mopo-ens`` runs it and a run config accepts a ``mopo-ens:`` section
(configs/tasks/*.yaml may give its per-task values there; without one it runs on these defaults).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from empo.errors import EmpoError


@dataclass
class AlgoConfig:
    """What differs between algorithms on one task (a run config's ``empo:`` / ``mopo:`` section)."""

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
    # The unit of the penalty. "raw": the model's uncertainty as it comes (published; its scale
    # depends on the model kind, its fit and the task). "data": divided by the model's mean
    # penalty on the dataset's own transitions, measured before the first rollout, so that a
    # transition as uncertain as the data costs penalty_coef reward (docs/fidelity.md). Not in the paper.
    penalty_unit: Literal["raw", "data"] = "raw"

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")
        if self.penalty_coef < 0:
            raise ValueError(f"penalty_coef must be >= 0, got {self.penalty_coef}")
        if self.decay_scale <= 0:
            raise ValueError(f"decay_scale must be positive, got {self.decay_scale}")
        if self.alpha_max is not None and not self.alpha_max > 0:
            raise ValueError(f"alpha_max must be positive or null, got {self.alpha_max}")


@dataclass(frozen=True)
class Algorithm:
    description: str  # one line for --help
    defaults: Callable[[], AlgoConfig]  # the setting before a task YAML, a preset or --set changes it


ALGORITHMS: dict[str, Algorithm] = {
    # the authors' EMPO: penalty inside the critic target, decay always on, alpha clamped to [0, 1]
    "empo": Algorithm(
        "EMPO: the energy-based model (ETM), its ensemble spread as the penalty",
        lambda: AlgoConfig(model_kind="etm", penalty_coef=2.0, penalty_at="update", penalty_decay=True, alpha_max=1.0),
    ),
    "mopo": Algorithm(
        "MOPO: the forward Gaussian ensemble (FTM), its largest predicted std as the penalty",
        lambda: AlgoConfig(model_kind="ftm", penalty_coef=1.0),
    ),
}


def get_algorithm(name: str) -> Algorithm:
    if name not in ALGORITHMS:
        raise EmpoError(f"unknown algorithm '{name}'; valid algorithms: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]

