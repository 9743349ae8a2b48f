"""benchmarks/model_optimism.py: with the real simulator as the model the reward bias is zero at every
horizon, and a model that adds a known amount to the reward and to the penalty shows exactly that."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from empo.data.tasks import get_task
from empo.envs.simulator import SimulatorDynamics
from empo.models.dynamics import StepResult

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import model_optimism

    return model_optimism


class Flattering:
    """The simulator, its reward raised by ``extra`` and its penalty set to ``penalty`` on every step."""

    def __init__(self, sim: SimulatorDynamics, extra: float, penalty: float) -> None:
        self.sim, self.extra, self.penalty = sim, extra, penalty

    def step(self, obs, act, generator=None) -> StepResult:
        out = self.sim.step(obs, act)
        return StepResult(out.next_obs, out.reward + self.extra, out.terminal, torch.full_like(out.reward, self.penalty))


def steady_policy(obs: torch.Tensor) -> torch.Tensor:
    # small fixed actions: halfcheetah never terminates, so every episode has its full length
    return 0.2 * torch.tanh(obs[:, :6])


def test_a_perfect_model_has_no_bias_and_a_flattering_one_shows_its_offset(bench):
    task = get_task("halfcheetah-medium")
    sim = SimulatorDynamics(task)
    try:
        real = bench.real_episodes(lambda o: steady_policy(torch.as_tensor(o[None]))[0].numpy(), task.gym_id, 2, seed=3)
        # the real episodes are cut at 1,000 steps; 60 keep the simulator's host loop quick
        real = [{key: value[:60] for key, value in episode.items()} for episode in real]
        generator, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)

        exact = bench.optimism(sim, steady_policy, real, coef=1.0, horizons=[1, 5, 80], generator=generator, rng=rng)
        assert exact["real_steps"] == 120
        assert abs(exact["one_step_reward_bias"]["mean"]) < 1e-3
        assert exact["one_step_next_state_mse"] < 1e-6
        assert set(exact["closed_loop"]) == {1, 5}  # no episode here has 80 steps
        assert exact["closed_loop"][5]["starts"] == 2 * (60 - 5 + 1)
        assert abs(exact["closed_loop"][5]["raw_bias"]["mean"]) < 1e-3
        assert exact["closed_loop"][5]["model_steps"] == 5.0

        flattering = bench.optimism(Flattering(sim, 0.5, 0.2), steady_policy, real, coef=2.0, horizons=[5], generator=generator, rng=rng)
        cell = flattering["closed_loop"][5]
        assert cell["raw_bias"]["mean"] == pytest.approx(0.5, abs=1e-3)
        assert cell["raw_bias"]["low"] <= cell["raw_bias"]["mean"] <= cell["raw_bias"]["high"]
        assert cell["penalised_bias"]["mean"] == pytest.approx(0.5 - 2.0 * 0.2, abs=1e-3)
        assert flattering["one_step_penalty_in_reward"] == pytest.approx(0.4)
    finally:
        sim.close()


def test_block_interval_covers_the_mean_and_widens_with_noise(bench):
    rng = np.random.default_rng(0)
    steady, noisy = np.full(500, 2.0), 2.0 + rng.normal(0, 3.0, 500)
    assert bench.block_interval(steady, rng) == pytest.approx((2.0, 2.0))
    low, high = bench.block_interval(noisy, rng)
    assert low < noisy.mean() < high and high - low > 0.1
