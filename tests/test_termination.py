"""Termination rules vs the real gymnasium v5 envs' own ``terminated`` signal.

Two kinds of states: next states from real random-policy episodes (every step compared), and
states placed with ``set_state`` just inside and outside each bound, including the hopper's
lower bound -100 on obs[1:] that the public code's ``np.abs(next_obs[:, 1:] < 100)`` misses.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch

from empo.errors import EmpoError
from empo.models import get_termination_fn


def rule(name, obs):
    return bool(get_termination_fn(name)(torch.as_tensor(np.asarray(obs, dtype=np.float32))[None])[0])


def episode_next_states(env_id, episodes, seed):
    """(next_obs, terminated) of every step of random-policy episodes."""
    env = gym.make(env_id)
    env.action_space.seed(seed)
    states, dones = [], []
    for ep in range(episodes):
        env.reset(seed=seed + ep)
        for _ in range(300):
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            states.append(obs)
            dones.append(terminated)
            if terminated or truncated:
                break
    env.close()
    return np.asarray(states, dtype=np.float32), np.asarray(dones)


@pytest.mark.parametrize(("env_id", "name"), [("Hopper-v5", "hopper"), ("Walker2d-v5", "walker2d"), ("HalfCheetah-v5", "halfcheetah")])
def test_rule_matches_env_on_real_episodes(env_id, name):
    states, dones = episode_next_states(env_id, episodes=6, seed=0)
    predicted = get_termination_fn(name)(torch.as_tensor(states)).numpy()
    assert predicted.dtype == np.bool_ and predicted.shape == dones.shape
    np.testing.assert_array_equal(predicted, dones)
    if name != "halfcheetah":
        assert dones.sum() >= 5 and (~dones).sum() >= 50  # both outcomes are exercised


def placed(env_id, edit):
    """Put the env in a state near a real one, edited by ``edit(qpos, qvel)``; return (obs, env done)."""
    env = gym.make(env_id)
    env.reset(seed=3)
    for _ in range(3):
        env.step(np.zeros(env.action_space.shape))
    base = env.unwrapped
    qpos, qvel = base.data.qpos.copy(), base.data.qvel.copy()
    edit(qpos, qvel)
    base.set_state(qpos, qvel)
    obs, done = base._get_obs(), not base.is_healthy
    env.close()
    return obs, done


def set_qpos(index, value):
    def edit(qpos, qvel):
        qpos[index] = value

    return edit


HOPPER_CASES = [
    ("height just above 0.7", set_qpos(1, 0.71), False),
    ("height just below 0.7", set_qpos(1, 0.69), True),
    ("angle 0.19", set_qpos(2, 0.19), False),
    ("angle 0.21", set_qpos(2, 0.21), True),
    ("angle -0.19", set_qpos(2, -0.19), False),
    ("angle -0.21", set_qpos(2, -0.21), True),
    ("joint at +150", set_qpos(3, 150.0), True),
    ("joint at -150 (the lower bound the public code misses)", set_qpos(4, -150.0), True),
    ("joint at -99", set_qpos(5, -99.0), False),
]


@pytest.mark.parametrize(("label", "edit", "expected"), HOPPER_CASES, ids=[c[0] for c in HOPPER_CASES])
def test_hopper_rule_at_each_bound(label, edit, expected):
    obs, env_done = placed("Hopper-v5", edit)
    assert env_done == expected, f"env disagrees with the case's premise: {label}"
    assert rule("hopper", obs) == env_done


def test_the_public_codes_abs_of_bool_rule_would_be_caught():
    def buggy(obs):  # np.abs(next_obs[:, 1:] < 100): abs of a boolean, lower bound lost
        obs = np.asarray(obs)
        healthy = np.isfinite(obs).all() and np.abs(obs[1:] < 100).all() and obs[0] > 0.7 and abs(obs[1]) < 0.2
        return not healthy

    obs, env_done = placed("Hopper-v5", set_qpos(4, -150.0))
    assert env_done and not buggy(obs)  # the buggy rule misses it ...
    assert rule("hopper", obs)  # ... ours does not


def test_hopper_velocity_bound_is_invisible_in_the_clipped_observation():
    """Documented difference: the env checks unclipped qvel; the observation clips it to [-10, 10]."""

    def fast(qpos, qvel):
        qvel[3] = 150.0

    obs, env_done = placed("Hopper-v5", fast)
    assert env_done
    assert obs[1 + 4 + 3] == 10.0
    assert not rule("hopper", obs)


def test_hopper_nan_is_done():
    assert rule("hopper", [np.nan] + [0.0] * 10)


WALKER_CASES = [
    ("height 0.81", set_qpos(1, 0.81), False),
    ("height 0.79", set_qpos(1, 0.79), True),
    ("height 1.99", set_qpos(1, 1.99), False),
    ("height 2.01", set_qpos(1, 2.01), True),
    ("angle 0.99", set_qpos(2, 0.99), False),
    ("angle 1.01", set_qpos(2, 1.01), True),
    ("angle -0.99", set_qpos(2, -0.99), False),
    ("angle -1.01", set_qpos(2, -1.01), True),
    ("joint at -150 (no state bound in walker)", set_qpos(4, -150.0), False),
]


@pytest.mark.parametrize(("label", "edit", "expected"), WALKER_CASES, ids=[c[0] for c in WALKER_CASES])
def test_walker2d_rule_at_each_bound(label, edit, expected):
    obs, env_done = placed("Walker2d-v5", edit)
    assert env_done == expected, f"env disagrees with the case's premise: {label}"
    assert rule("walker2d", obs) == env_done


def test_unknown_rule_is_an_error_listing_the_valid_ones():
    with pytest.raises(EmpoError, match="hopper"):
        get_termination_fn("hoper")
