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

import math
from collections.abc import Callable

import torch
from torch import Tensor

from empo.errors import EmpoError

TerminationFn = Callable[[Tensor], Tensor]

# The envs' healthy ranges of obs[0] (height) and obs[1] (torso angle), strict at both ends; the
# rules below check them, and a diagnosis of why a rollout ended can name which one failed.
HEALTHY_RANGES: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "hopper": ((0.7, math.inf), (-0.2, 0.2)),
    "walker2d": ((0.8, 2.0), (-1.0, 1.0)),
}


def height_and_angle_healthy(next_obs: Tensor, env: str) -> Tensor:
    """obs[0] and obs[1] inside ``env``'s healthy ranges (NaN is not)."""
    (h_low, h_high), (a_low, a_high) = HEALTHY_RANGES[env]
    height, angle = next_obs[:, 0], next_obs[:, 1]
    return (height > h_low) & (height < h_high) & (angle > a_low) & (angle < a_high)


def hopper_termination(next_obs: Tensor) -> Tensor:
    """Hopper-v5: done unless all finite, |obs[1:]| < 100, height > 0.7 and |angle| < 0.2."""
    healthy = (
        torch.isfinite(next_obs).all(dim=-1)
        & (next_obs[:, 1:].abs() < 100.0).all(dim=-1)
        & height_and_angle_healthy(next_obs, "hopper")
    )
    return ~healthy


def walker2d_termination(next_obs: Tensor) -> Tensor:
    """Walker2d-v5: done unless 0.8 < height < 2.0 and -1 < angle < 1 (NaN counts as done)."""
    return ~height_and_angle_healthy(next_obs, "walker2d")


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
