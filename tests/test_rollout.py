"""The rollout engine: per-sample termination, penalties, statistics."""

import pytest
import torch

from empo.loop.penalty import Penalty
from empo.loop.rollout import rollout
from tests.test_loop_support import FakeDynamics


class CountdownModel:
    """obs[:, 0] counts down by one per step; a sample terminates when it reaches 0.

    reward = 10, penalty = 1 + obs[:, 1], so the penalised reward is easy to predict.
    """

    obs_dim, act_dim = 2, 1

    def __init__(self):
        self.batch_sizes = []

    def step(self, obs, act, generator=None):
        from tests.test_loop_support import FakeStep

        self.batch_sizes.append(int(obs.shape[0]))
        next_obs = obs.clone()
        next_obs[:, 0] -= 1
        reward = torch.full((obs.shape[0],), 10.0)
        return FakeStep(next_obs, reward, next_obs[:, 0] <= 0, 1.0 + obs[:, 1])


def zero_policy(obs):
    return torch.zeros(obs.shape[0], 1)


def test_each_sample_stops_at_its_own_termination():
    # samples terminate after 1, 2, 3 steps, and two never within the horizon of 4
    start = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [9.0, 0.0], [9.0, 0.0]])
    model = CountdownModel()
    result = rollout(model, zero_policy, start, horizon=4, penalty=Penalty(0.0))
    assert model.batch_sizes == [5, 4, 3, 2]  # terminated samples are not stepped again
    t = result.transitions
    assert result.num_transitions == 1 + 2 + 3 + 4 + 4
    # every terminated sample contributes exactly one terminal transition, its last
    assert int(t["terminals"].sum()) == 3
    assert torch.all(t["next_observations"][t["terminals"] == 1, 0] == 0)
    # no transition starts from a terminated state
    assert torch.all(t["observations"][:, 0] > 0)
    assert float(result.stats["mean_length"]) == pytest.approx((1 + 2 + 3 + 4 + 4) / 5)
    assert float(result.stats["terminated_fraction"]) == pytest.approx(3 / 5)


def test_penalty_is_taken_off_the_reward():
    start = torch.tensor([[5.0, 0.0], [5.0, 1.0], [5.0, 3.0]])
    result = rollout(CountdownModel(), zero_policy, start, horizon=1, penalty=Penalty(2.0))
    assert torch.allclose(result.transitions["rewards"], torch.tensor([10.0 - 2.0, 10.0 - 4.0, 10.0 - 8.0]))
    assert float(result.stats["penalty_max"]) == 4.0
    assert float(result.stats["raw_reward_mean"]) == 10.0


def test_penalty_decay_scales_the_coefficient_by_the_next_value():
    start = torch.tensor([[5.0, 0.0], [5.0, 0.0], [5.0, 0.0]])
    q_values = torch.tensor([-50.0, 50.0, 500.0])  # clamp(Q/100, 0, 1) = 0, 0.5, 1
    result = rollout(
        CountdownModel(),
        zero_policy,
        start,
        horizon=1,
        penalty=Penalty(2.0, decay=True),
        q_function=lambda obs, act: q_values,
    )
    assert torch.allclose(result.transitions["rewards"], torch.tensor([10.0, 9.0, 8.0]))


def test_rollouts_are_reproducible_under_a_generator_and_count_non_finite_outputs():
    model = FakeDynamics()
    start = torch.randn(32, 11) * 0.1 + torch.tensor([1.0] + [0.0] * 10)

    def policy_with(gen):
        return lambda obs: torch.tanh(torch.randn(obs.shape[0], 3, generator=gen))

    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = rollout(model, policy_with(g1), start, 5, Penalty(1.0), generator=g1)
    b = rollout(model, policy_with(g2), start, 5, Penalty(1.0), generator=g2)
    for key in a.transitions:
        assert torch.equal(a.transitions[key], b.transitions[key])
    assert int(a.stats["nonfinite_outputs"]) == 0
    bad = start.clone()
    bad[0, 3] = float("nan")
    c = rollout(model, policy_with(g1), bad, 1, Penalty(1.0), generator=g1)
    assert int(c.stats["nonfinite_outputs"]) > 0
