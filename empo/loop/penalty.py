"""How a model transition's uncertainty penalty meets its reward: one object per algorithm setting.

The rollout engine and the SAC update take a :class:`Penalty` and know no algorithm by name.
A transition with reward r and raw penalty u (the model's uncertainty) is worth ``r - c * u``:

- ``at="rollout"`` (MOPO): taken off once, when the rollout is stored;
- ``at="update"`` (the authors' EMPO): r and u are stored apart and every critic target subtracts
  ``c * u`` (``empo.agents.TargetPenalty``).

``c`` is ``coef``, or with ``decay`` ``coef * clamp(Q'(s') / decay_scale, 0, 1)`` per sample: where
the agent already expects little return the penalty is relaxed (docs/training.md). An algorithm's
setting is its ``AlgoConfig`` (empo/loop/config.py); :meth:`Penalty.of` reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch

from empo.agents.sac import TargetPenalty

if TYPE_CHECKING:
    from empo.loop.algorithms import AlgoConfig

Policy = Callable[[torch.Tensor], torch.Tensor]
QFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Penalty:
    coef: float
    at: Literal["rollout", "update"] = "rollout"
    decay: bool = False
    decay_scale: float = 100.0

    @classmethod
    def of(cls, algo: AlgoConfig, data_penalty: float | None = None) -> Penalty:
        """The algorithm's penalty; with ``penalty_unit: data`` its coefficient is divided by
        ``data_penalty`` (the model's mean penalty on the dataset), which is then required."""
        coef = algo.penalty_coef
        if algo.penalty_unit == "data":
            if data_penalty is None or not data_penalty > 0:
                raise ValueError(f"penalty_unit: data needs the model's mean penalty on the data, a positive number; got {data_penalty}")
            coef = coef / data_penalty
        return cls(coef, algo.penalty_at, algo.penalty_decay, algo.decay_scale)

    def coefficients(
        self, next_obs: torch.Tensor, policy: Policy | None = None, q_function: QFunction | None = None
    ) -> torch.Tensor | float:
        """``c`` per sample at rollout time: ``coef``, or with decay ``coef * clamp(Q'/scale, 0, 1)``,
        Q' being the critics' (min) value of the next state under the current policy."""
        if not self.decay:
            return self.coef
        if policy is None or q_function is None:
            raise ValueError("penalty decay needs the policy and the Q function")
        q_next = q_function(next_obs, policy(next_obs))
        return self.coef * (q_next / self.decay_scale).clamp(0.0, 1.0)

    def at_rollout(
        self,
        reward: torch.Tensor,
        penalty: torch.Tensor,
        next_obs: torch.Tensor,
        policy: Policy | None = None,
        q_function: QFunction | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(reward to store, penalised reward for the statistics) of a rollout step.

        At update time the reward is stored raw and the decay belongs to the critic target, so the
        statistics use the plain coefficient.
        """
        if self.at == "rollout":
            penalised = reward - self.coefficients(next_obs, policy, q_function) * penalty
            return penalised, penalised
        return reward, reward - self.coef * penalty

    def target_penalty(self) -> TargetPenalty | None:
        """What the SAC update subtracts inside its critic targets (None when taken off at rollout)."""
        return TargetPenalty(self.coef, self.decay, self.decay_scale) if self.at == "update" else None
