"""WallPoint: a 1-D point whose transition is discontinuous, to show ETM's core claim.

A point at x in [-1, WALL] moves by ``STEP * a`` (a in [-1, 1]). If the move would cross the
wall at x = WALL the point is reset to x = RESET and gets reward 1; otherwise reward 0 (the left
edge at -1 is a plain clip). So next state and reward jump at x + STEP * a = WALL (the state by
WALL - RESET = 0.5): a Gaussian forward model (FTM) smooths the jump; an energy model (ETM) can
keep it sharp. RESET sits mid-range so that the reset targets are not the extreme (Delta s, r)
values, which max-abs scaling would put at the edge of the sampler's box.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from empo.data.tasks import EnvSpec, Task
from empo.data.transitions import Transitions

WALL = 0.5
RESET = 0.0
STEP = 1.0
ENV_SPEC = EnvSpec("wallpoint", "empo/WallPoint-v0", 1, 1, 0.0, 1.0, "never", 0.0, 0.0)


def wall_step(x: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched transition: (x [N, 1], a [N, 1]) -> (x' [N, 1], reward [N])."""
    proposed = np.clip(x + STEP * np.clip(a, -1.0, 1.0), -1.0, None)
    crossed = proposed > WALL
    next_x = np.where(crossed, RESET, proposed).astype(np.float32)
    return next_x, crossed[:, 0].astype(np.float32)


def distance_to_wall(x: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Signed distance of the proposed position to the wall: |.| small means near the jump."""
    return (x + STEP * np.clip(a, -1.0, 1.0))[:, 0] - WALL


class WallPointEnv(gym.Env):
    """The same transition as a gymnasium env (episodes of ``episode_len`` steps, never terminal)."""

    def __init__(self, episode_len: int = 50) -> None:
        self.observation_space = gym.spaces.Box(-1.0, WALL, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.episode_len = episode_len
        self._x = np.zeros((1, 1), dtype=np.float32)
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._x = self.np_random.uniform(-1.0, WALL, size=(1, 1)).astype(np.float32)
        self._t = 0
        return self._x[0].copy(), {}

    def step(self, action):
        self._x, reward = wall_step(self._x, np.asarray(action, dtype=np.float32).reshape(1, 1))
        self._t += 1
        return self._x[0].copy(), float(reward[0]), False, self._t >= self.episode_len, {}


def wall_task() -> Task:
    """A Task for WallPoint (obs 1, act 1, never terminates), to use with train_dynamics."""
    return Task(ENV_SPEC, "random")


def make_wall_dataset(episodes: int = 1000, episode_len: int = 4, seed: int = 0, low: float = -1.0) -> Transitions:
    """Uniform-random-action episodes from start states uniform in [low, WALL], as Transitions.

    Short episodes started near the wall make about a fifth of the steps cross it.
    The last step of each episode is flagged as a timeout (D4RL semantics drop it from training).
    """
    rng = np.random.default_rng(seed)
    x = rng.uniform(low, WALL, size=(episodes, 1)).astype(np.float32)
    obs, act, rew, nxt = [], [], [], []
    for _ in range(episode_len):
        a = rng.uniform(-1.0, 1.0, size=(episodes, 1)).astype(np.float32)
        x_next, r = wall_step(x, a)
        obs.append(x)
        act.append(a)
        rew.append(r)
        nxt.append(x_next)
        x = x_next
    # [T, E, ...] -> episode-major rows
    def rows(parts: list[np.ndarray]) -> np.ndarray:
        return np.stack(parts, axis=1).reshape(episodes * episode_len, *parts[0].shape[1:])

    timeouts = np.zeros(episodes * episode_len, dtype=np.float32)
    timeouts[episode_len - 1 :: episode_len] = 1.0
    return Transitions(
        rows(obs),
        rows(act),
        rows(rew),
        rows(nxt),
        np.zeros(episodes * episode_len),
        timeouts,
        np.arange(0, episodes * episode_len, episode_len),
        metadata={"source": "wallpoint"},
    )


def near_wall_batch(n: int, width: float = 0.05, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(x, a) pairs whose proposed position lies within ``width`` of the wall (both sides)."""
    rng = np.random.default_rng(seed)
    target = WALL + rng.uniform(-width, width, size=(n, 1))
    # a such that x = target - STEP * a lies in the state range [-1, WALL]
    low = np.maximum((target - WALL) / STEP, -1.0) + 1e-3
    high = np.minimum((target + 1.0) / STEP, 1.0)
    a = rng.uniform(low, high).astype(np.float32)
    x = (target - STEP * a).astype(np.float32)
    return x, a
