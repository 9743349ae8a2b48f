"""Termination rules for model rollouts: batched torch functions next_obs [B, obs_dim] -> done [B] bool.

Each rule mirrors the gymnasium v5 env's own ``terminated`` signal (docs/method.md, "Termination
rules") and is tested against the real env in tests/test_termination.py. The observation excludes
the x position, so ``obs[0]`` is the height (qpos[1]) and ``obs[1]`` the torso angle (qpos[2]).

Hopper-v5 checks ``state_vector()[2:]`` = qpos[2:] and the *unclipped* qvel in (-100, 100),
while the observation holds qvel clipped to [-10, 10]. So on an observation the velocity part of
that check can never fire: a real state with |qvel| >= 100 terminates in the env but shows
|obs| = 10 here. The joint-angle part (obs[1:5] = qpos[2:6]) is checked exactly. The public
ETM code's ``np.abs(next_obs[:, 1:] < 100)`` (abs of a boolean) drops the lower bound -100; this
rule checks both bounds. All env comparisons are strict (``lo < x < hi``); NaN compares false
in numpy, hence "all finite".
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from empo.errors import EmpoError

TerminationFn = Callable[[Tensor], Tensor]


def hopper_termination(next_obs: Tensor) -> Tensor:
    """Hopper-v5: done unless all finite, |obs[1:]| < 100, height > 0.7 and |angle| < 0.2."""
    height, angle = next_obs[:, 0], next_obs[:, 1]
    healthy = (
        torch.isfinite(next_obs).all(dim=-1)
        & (next_obs[:, 1:].abs() < 100.0).all(dim=-1)
        & (height > 0.7)
        & (angle > -0.2)
        & (angle < 0.2)
    )
    return ~healthy


def walker2d_termination(next_obs: Tensor) -> Tensor:
    """Walker2d-v5: done unless 0.8 < height < 2.0 and -1 < angle < 1 (NaN counts as done)."""
    height, angle = next_obs[:, 0], next_obs[:, 1]
    healthy = (height > 0.8) & (height < 2.0) & (angle > -1.0) & (angle < 1.0)
    return ~healthy


def never_terminates(next_obs: Tensor) -> Tensor:
    """HalfCheetah-v5 (and the toy envs): never terminates."""
    return torch.zeros(next_obs.shape[0], dtype=torch.bool, device=next_obs.device)


TERMINATION_RULES: dict[str, TerminationFn] = {
    "hopper": hopper_termination,
    "walker2d": walker2d_termination,
    "halfcheetah": never_terminates,
    "never": never_terminates,
}


def get_termination_fn(name: str) -> TerminationFn:
    """The rule named ``name`` (``task.env.termination``)."""
    try:
        return TERMINATION_RULES[name]
    except KeyError:
        raise EmpoError(
            f"unknown termination rule '{name}'; valid rules: {', '.join(sorted(TERMINATION_RULES))}"
        ) from None
