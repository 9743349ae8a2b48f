"""The penalty-vs-error diagnostic on a stand-in model whose error per row is known."""

from __future__ import annotations

import math

import numpy as np
import torch

from empo.evaluation.transition_error import penalty_and_error
from empo.models.dynamics import StepResult
from tests.test_loop_support import synthetic_transitions


class NoisyOracle:
    """Next state = the true one + noise of a per-row scale; penalty: that scale, its reverse, or a constant."""

    device = torch.device("cpu")

    def __init__(self, data, penalty: str) -> None:
        q = data.qlearning()
        self.truth = {tuple(o): n for o, n in zip(q.observations.tolist(), q.next_observations, strict=True)}
        self.penalty = penalty

    def step(self, obs, act, generator=None) -> StepResult:
        true_next = torch.as_tensor(np.stack([self.truth[tuple(o)] for o in obs.tolist()]))
        scale = torch.linspace(0.01, 1.0, obs.shape[0])
        next_obs = true_next + scale[:, None] * torch.randn(true_next.shape, generator=generator)
        penalty = {"scale": scale, "reversed": scale.flip(0), "flat": torch.ones_like(scale)}[self.penalty]
        return StepResult(next_obs, torch.zeros(obs.shape[0]), torch.zeros(obs.shape[0], dtype=torch.bool), penalty)


def test_penalty_and_error_says_whether_the_penalty_ranks_the_errors():
    data = synthetic_transitions(n=400)
    tracking = penalty_and_error(NoisyOracle(data, "scale"), data, max_samples=300)
    assert tracking["n"] == 300 and tracking["spearman"] > 0.7
    assert math.isclose(tracking["penalty_mean"], 0.505, rel_tol=1e-3)
    # the sampled next states' error: mean over dimensions of scale^2 * noise^2, about mean(scale^2) = 0.34
    assert 0.25 < tracking["sample_mse"] < 0.43
    assert penalty_and_error(NoisyOracle(data, "reversed"), data, max_samples=300)["spearman"] < -0.7
    assert math.isnan(penalty_and_error(NoisyOracle(data, "flat"), data, max_samples=300)["spearman"])
    # seeded: the same rows and noise again
    again = penalty_and_error(NoisyOracle(data, "scale"), data, max_samples=300)
    assert again == tracking
