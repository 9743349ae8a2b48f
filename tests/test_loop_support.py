"""Shared pieces of the loop tests: a tiny hand-written dynamics model and a synthetic dataset.

The fake model stands in for ``empo.models.DynamicsModel`` so that the loop tests do not depend
on the real models: a linear next state, a reward, a hopper-like termination rule on the first
coordinate, and a penalty that grows with the action's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from empo.data.transitions import Transitions


@dataclass
class FakeStep:
    next_obs: torch.Tensor
    reward: torch.Tensor
    terminal: torch.Tensor
    penalty: torch.Tensor


class FakeDynamics:
    """next_obs = obs + 0.1 * act @ W (+ noise); terminal when next_obs[:, 0] < threshold."""

    kind = "fake"

    def __init__(self, obs_dim: int = 11, act_dim: int = 3, threshold: float = 0.7, noise: float = 0.01):
        gen = torch.Generator().manual_seed(0)
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.weight = torch.randn(act_dim, obs_dim, generator=gen)
        self.threshold = threshold
        self.noise = noise
        self.calls: list[int] = []  # batch size of every step, for the masking test

    def to(self, device):
        self.weight = self.weight.to(device)
        return self

    @property
    def device(self):
        return self.weight.device

    def predict(self, obs, act, generator=None):
        moved = self.step(obs, act, generator)
        return moved.next_obs, moved.reward

    def step(self, obs, act, generator=None):
        self.calls.append(int(obs.shape[0]))
        eps = torch.randn(obs.shape, generator=generator, device=obs.device)
        next_obs = obs + 0.1 * act @ self.weight + self.noise * eps
        reward = next_obs[:, 0] - 0.1 * act.pow(2).sum(dim=1)
        terminal = next_obs[:, 0] < self.threshold
        penalty = act.abs().sum(dim=1)
        return FakeStep(next_obs, reward, terminal, penalty)


def synthetic_transitions(n: int = 500, obs_dim: int = 11, act_dim: int = 3, seed: int = 0) -> Transitions:
    """Episodes of 50 steps with hopper shapes; height (obs[:, 0]) around 1.25."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(0.0, 0.1, size=(n, obs_dim)).astype(np.float32)
    obs[:, 0] += 1.25
    act = rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32)
    next_obs = obs + rng.normal(0.0, 0.01, size=obs.shape).astype(np.float32)
    rewards = rng.normal(1.0, 0.1, size=n).astype(np.float32)
    terminals = np.zeros(n, dtype=np.float32)
    timeouts = np.zeros(n, dtype=np.float32)
    timeouts[49::50] = 1.0
    return Transitions(
        observations=obs,
        actions=act,
        rewards=rewards,
        next_observations=next_obs,
        terminals=terminals,
        timeouts=timeouts,
        episode_starts=np.arange(0, n, 50),
        metadata={"source": "synthetic"},
    )
