"""Why a run does or does not learn: figures read once an epoch beside the real evaluation.

Hand-written, since they read the loop's own model, penalty and critics on the device
(docs/training.md, "Diagnostics"). Every figure lands in progress.csv and TensorBoard
(``diag/...``):

- **exploitation gap**: the current deterministic policy rolled out in the model from episode
  start states of the data for ``horizon`` steps (each stopping at the model's termination)
  against the same policy's real return over its evaluation episodes' first ``horizon`` steps.
  A model return far above the real one is a policy that exploits the model;
- **the penalty against the raw reward**: the share of the rollouts' raw reward that the penalty
  takes off, and the rollouts' mean penalty in units of the model's mean penalty on the data's
  own transitions (1: as certain as on the data);
- **Q against the achievable return**: the critics' min Q of the start states under the
  deterministic policy against the real discounted return of the evaluation episodes, and the
  bound max(data reward) / (1 - gamma) no return can pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from empo.loop.penalty import Penalty
from empo.loop.rollout import rollout
from empo.models.dynamics import Dynamics

DIAGNOSTICS: tuple[str, ...] = (
    "model_return",
    "model_penalised_return",
    "model_length",
    "real_return",
    "real_length",
    "exploitation_gap",
    "q_start",
    "real_discounted_return",
    "q_bound",
    "penalty_to_reward",
    "penalty_vs_data",
    "data_penalty_mean",
)


@dataclass
class DiagnosticsConfig:
    """Per-epoch diagnostics (docs/training.md, "Diagnostics"); they change no update of the run."""

    start_states: int = 10  # episode start states of the data rolled out in the model; 0: no diagnostics
    horizon: int = 1000  # model steps per start state, and the real episodes' steps they are set against
    every: int = 1  # epochs between diagnostics (the others log NaN)

    def __post_init__(self) -> None:
        if self.start_states < 0:
            raise ValueError(f"start_states must be >= 0, got {self.start_states}")
        for name in ("horizon", "every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def model_return(
    model: Dynamics, policy: Any, start_obs: torch.Tensor, horizon: int, penalty: Penalty, generator: torch.Generator,
    q_function: Any = None,
) -> dict[str, float]:
    """Mean undiscounted model return (raw and penalised as the rollouts penalise it) and length of
    ``policy`` from ``start_obs`` over ``horizon`` steps: the loop's own rollout engine
    (empo/loop/rollout.py), each sample stopping at its termination."""
    stats = rollout(model, policy, start_obs, horizon, penalty, generator=generator, q_function=q_function).stats
    length = float(stats["mean_length"])  # transitions per start state: the engine's means are per transition
    return {"model_return": float(stats["raw_reward_mean"]) * length,
            "model_penalised_return": float(stats["penalised_reward_mean"]) * length, "model_length": length}


DATA_PENALTY_ROWS = 10_000  # dataset transitions on which a run measures its model's penalty once


@torch.no_grad()
def data_penalty(model: Dynamics, observations: torch.Tensor, actions: torch.Tensor, generator: torch.Generator) -> float:
    """The model's mean raw penalty on dataset transitions (s, a): its uncertainty where it was fitted."""
    values = [model.step(o, a, generator=generator).penalty.reshape(-1) for o, a in zip(observations.split(2500), actions.split(2500), strict=True)]
    return float(torch.cat(values).mean()) if values else float("nan")


def empty_row() -> dict[str, float]:
    return {name: float("nan") for name in DIAGNOSTICS}
