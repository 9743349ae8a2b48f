"""ModelEnv (a dynamics model as a gymnasium vector env) and its stable-baselines3 adapter."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from empo.data.tasks import get_task
from empo.envs.model_env import ModelEnv
from empo.errors import EmpoError
from empo.models import build_model, load_model_config
from empo.models.termination import hopper_termination
from tests.test_loop_support import FakeDynamics, synthetic_transitions

TASK = get_task("hopper-medium")


@pytest.fixture(scope="module")
def data():
    return synthetic_transitions()


def last_states(obs, terminated, truncated, infos):
    """The state each sub-env reached this step: final_obs where it ended (SameStep), else obs."""
    reached = obs.copy()
    for i in np.flatnonzero(terminated | truncated):
        reached[i] = infos["final_obs"][i]
    return reached


def merged(infos, key):
    """``key`` of every sub-env's step, whether it went on (infos) or ended (final_info)."""
    values = np.zeros(len(infos.get("_final_obs", infos.get(f"_{key}"))))
    for part in (infos, infos.get("final_info", {})):
        if key in part:
            values = np.where(part[f"_{key}"], part[key], values)
    return values


def test_the_single_view_passes_gymnasiums_checks(data):
    env = ModelEnv.single(FakeDynamics(), TASK, data, horizon=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any other warning fails the check
        warnings.filterwarnings("ignore", message=".*infinity.*")  # unbounded observations, as MuJoCo's
        warnings.filterwarnings("ignore", message=".*render modes.*")  # no spec: not made by gym.make
        check_env(env)
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    sb3_check_env(env, warn=False)


def test_spaces_starts_and_shapes(data):
    env = ModelEnv(FakeDynamics(), TASK, data, num_envs=5, horizon=3)
    assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert env.single_observation_space == gym.spaces.Box(-np.inf, np.inf, (11,), np.float32)
    assert env.single_action_space == gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    assert env.observation_space.shape == (5, 11) and env.action_space.shape == (5, 3)
    obs, info = env.reset(seed=1)
    assert obs.dtype == np.float32 and obs in env.observation_space and info == {}
    assert all((data.observations == row).all(axis=1).any() for row in obs)
    episode = ModelEnv(FakeDynamics(), TASK, data, num_envs=50, starts="episode")
    firsts = data.observations[data.episode_starts]
    assert all((firsts == row).all(axis=1).any() for row in episode.reset(seed=0)[0])
    obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert obs.shape == (5, 11) and reward.dtype == np.float64
    assert terminated.dtype == np.bool_ and truncated.shape == (5,)


def one_state_dataset():
    """Every start is one state with height 1.0, so that episodes are deterministic."""
    data = synthetic_transitions(n=50)
    data.observations[:] = 0.0
    data.observations[:, 0] = 1.0
    return data


def test_same_step_autoreset_is_gymnasiums(data):
    """Step for step the same as gymnasium's SyncVectorEnv (SameStep) over one-env views.

    Sub-env 0 pushes the height down (terminates at its 2nd step, by the model's rule), sub-env 1
    pushes it up (truncated at the horizon); each then starts again from the one dataset state.
    """
    fake = FakeDynamics(noise=0.0)
    down = -np.sign(fake.weight[:, 0].numpy()).astype(np.float32)
    actions = np.stack([down, -down])
    kwargs = dict(horizon=3, termination="model")
    env = ModelEnv(FakeDynamics(noise=0.0), TASK, one_state_dataset(), num_envs=2, **kwargs)
    reference = SyncVectorEnv(
        [lambda: ModelEnv.single(FakeDynamics(noise=0.0), TASK, one_state_dataset(), **kwargs)] * 2,
        autoreset_mode=AutoresetMode.SAME_STEP,
    )
    for a, b in zip(env.reset(seed=0), reference.reset(seed=0), strict=True):
        np.testing.assert_equal(a, b)
    ended = np.zeros(2, dtype=int)
    for _ in range(7):
        ours, theirs = env.step(actions), reference.step(actions)
        for a, b in zip(ours[:4], theirs[:4], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6)
        info, expected = ours[4], theirs[4]
        assert sorted(info) == sorted(expected)
        for key in info:
            if key in ("final_obs", "final_info"):
                continue
            np.testing.assert_allclose(info[key], expected[key], rtol=1e-6)
        if "final_obs" in info:
            for got, want in zip(info["final_obs"], expected["final_obs"], strict=True):
                assert (got is None) == (want is None) and (got is None or np.allclose(got, want))
            assert sorted(info["final_info"]) == sorted(expected["final_info"])
        done = ours[2] | ours[3]
        assert np.all(ours[0][done] == one_state_dataset().observations[0])  # the new start state
        ended += done
    assert ended[0] >= 3 and ended[1] == 2  # both ways of ending were exercised


def test_termination_and_truncation_follow_the_task_rule_and_the_horizon(data):
    env = ModelEnv(FakeDynamics(noise=0.05), TASK, data, num_envs=16, horizon=4)
    obs, _ = env.reset(seed=3)
    rng = np.random.default_rng(0)
    elapsed = np.zeros(16, dtype=int)
    counts = {"terminated": 0, "truncated": 0}
    for _ in range(12):
        obs, _, terminated, truncated, infos = env.step(rng.uniform(-1, 1, (16, 3)).astype(np.float32))
        elapsed += 1
        reached = last_states(obs, terminated, truncated, infos)
        np.testing.assert_array_equal(terminated, hopper_termination(torch.as_tensor(reached)).numpy())
        np.testing.assert_array_equal(truncated, (elapsed >= 4) & ~terminated)
        elapsed[terminated | truncated] = 0
        counts["terminated"] += terminated.sum()
        counts["truncated"] += truncated.sum()
    assert counts["terminated"] > 0 and counts["truncated"] > 0


def test_the_simulator_ends_episodes_by_the_real_rule(data):
    from empo.envs.simulator import SimulatorDynamics

    sim = SimulatorDynamics(TASK)
    by_rule = ModelEnv(sim, TASK, data, num_envs=4, horizon=50, seed=0)
    by_env = ModelEnv(sim, TASK, data, num_envs=4, horizon=50, termination="model", seed=0)
    by_rule.reset(), by_env.reset()
    rng = np.random.default_rng(1)
    terminations = 0
    for _ in range(15):
        act = (rng.uniform(-0.3, 0.3, (4, 3)) - 0.5).astype(np.float32)  # hopper falls
        obs, reward, terminated, truncated, infos = by_rule.step(act)
        reached = last_states(obs, terminated, truncated, infos)
        np.testing.assert_array_equal(terminated, hopper_termination(torch.as_tensor(reached)).numpy())
        other = by_env.step(act)
        np.testing.assert_array_equal(terminated, other[2])  # the env's own signal agrees
        np.testing.assert_allclose(reward, other[1], atol=1e-6)
        terminations += terminated.sum()
    assert terminations > 0


@pytest.mark.parametrize("kind", ["fake", "ftm", "etm"])
def test_the_same_seed_gives_the_same_trajectories(data, kind):
    def make():
        if kind == "fake":
            return FakeDynamics(noise=0.05)
        return build_model(kind, 11, 3, "hopper", load_model_config(kind, "smoke")).eval()

    def trajectory(env, seed):
        steps = [env.reset(seed=seed)[0]]
        for t in range(6):
            act = np.full((8, 3), np.sin(t), dtype=np.float32)
            obs, reward, terminated, truncated, infos = env.step(act)
            steps += [obs, reward, terminated, truncated, merged(infos, "penalty")]
        return steps

    model = make()
    env = ModelEnv(model, TASK, data, num_envs=8, horizon=3)
    first, again = trajectory(env, 7), trajectory(env, 7)
    other = trajectory(ModelEnv(model, TASK, data, num_envs=8, horizon=3), 7)
    for a, b, c in zip(first, again, other, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    different = trajectory(env, 8)
    assert not all(np.array_equal(a, b) for a, b in zip(first, different, strict=True))


def test_the_penalty_is_subtracted_when_asked_and_reported(data):
    act = np.random.default_rng(0).uniform(-1, 1, (32, 3)).astype(np.float32)
    plain = ModelEnv(FakeDynamics(), TASK, data, num_envs=32, horizon=2)
    penalised = ModelEnv(FakeDynamics(), TASK, data, num_envs=32, horizon=2, penalty_coef=0.5)
    plain.reset(seed=0), penalised.reset(seed=0)
    for _ in range(3):
        _, reward, _, _, infos = plain.step(act)
        _, reward_p, _, _, infos_p = penalised.step(act)
        raw, penalty = merged(infos, "raw_reward"), merged(infos, "penalty")
        np.testing.assert_allclose(penalty, np.abs(act).sum(axis=1), rtol=1e-5)  # FakeDynamics' penalty
        np.testing.assert_allclose(reward, raw)
        np.testing.assert_allclose(merged(infos_p, "raw_reward"), raw)
        np.testing.assert_allclose(reward_p, raw - 0.5 * penalty, rtol=1e-5)


def test_without_autoreset_ended_envs_wait_for_a_masked_reset(data):
    env = ModelEnv(FakeDynamics(), TASK, data, num_envs=3, horizon=1, autoreset_mode="Disabled")
    assert env.metadata["autoreset_mode"] == AutoresetMode.DISABLED
    start, _ = env.reset(seed=0)
    obs, _, terminated, truncated, infos = env.step(np.zeros((3, 3), np.float32))
    assert (terminated | truncated).all() and infos["_raw_reward"].all() and "final_obs" not in infos
    with pytest.raises(EmpoError, match="reset_mask"):
        env.step(np.zeros((3, 3), np.float32))
    mask = np.array([True, False, False])
    again, _ = env.reset(options={"reset_mask": mask})
    np.testing.assert_array_equal(again[1:], obs[1:])  # the others keep their state
    with pytest.raises(EmpoError, match=r"\[1, 2\]"):
        env.step(np.zeros((3, 3), np.float32))


def test_the_sb3_adapter_follows_sb3s_conventions(data):
    from empo.integrations.sb3 import SB3ModelVecEnv

    venv = SB3ModelVecEnv(ModelEnv(FakeDynamics(), TASK, data, num_envs=6, horizon=2, penalty_coef=1.0))
    venv.seed(4)
    obs = venv.reset()
    truncations = 0
    assert obs.shape == (6, 11) and venv.get_attr("horizon") == [2] * 6 and venv.env_is_wrapped(gym.Wrapper) == [False] * 6
    for _ in range(3):
        obs, reward, dones, infos = venv.step(np.zeros((6, 3), np.float32))
        assert reward.dtype == np.float32 and len(infos) == 6
        for i, info in enumerate(infos):
            assert info["raw_reward"] - info["penalty"] == pytest.approx(float(reward[i]), abs=1e-5)
            assert ("terminal_observation" in info) == dones[i]
            if dones[i]:
                assert not np.array_equal(info["terminal_observation"], obs[i])  # obs is the new start
                assert (data.observations == obs[i]).all(axis=1).any()
            truncations += info["TimeLimit.truncated"]
    assert truncations > 0  # the horizon (2) was reached


def test_sb3_sac_trains_on_the_model():
    from stable_baselines3 import SAC

    from empo.integrations.sb3 import SB3ModelVecEnv

    venv = SB3ModelVecEnv(ModelEnv(FakeDynamics(), TASK, synthetic_transitions(), num_envs=4, horizon=10, termination="model"))
    agent = SAC("MlpPolicy", venv, learning_starts=40, batch_size=32, policy_kwargs={"net_arch": [16, 16]}, seed=0, device="cpu")
    before = [p.detach().clone() for p in agent.critic.parameters()]
    agent.learn(300)
    assert agent.num_timesteps >= 300 and agent.replay_buffer.size() * 4 >= 300
    after = list(agent.critic.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))  # it trained
    action, _ = agent.predict(venv.reset(), deterministic=True)
    assert action.shape == (4, 3) and np.abs(action).max() <= 1.0


@pytest.mark.parametrize(
    "change, message",
    [
        ({"horizon": 0}, "horizon must be a positive integer"),
        ({"num_envs": 0}, "num_envs must be a positive integer"),
        ({"penalty_coef": -1.0}, "penalty_coef must be"),
        ({"starts": "middle"}, "starts must be one of"),
        ({"model": FakeDynamics(obs_dim=17, act_dim=6)}, "obs_dim=17, but task hopper-medium needs 11"),
        ({"dataset": synthetic_transitions(n=0)}, "no observations to start from"),
        ({"dataset": synthetic_transitions(obs_dim=17)}, "observations of shape [17]"),
        ({"autoreset_mode": "NextStep"}, "autoreset_mode must be one of"),
    ],
)
def test_a_bad_argument_is_a_one_line_error(change, message):
    kwargs = {"model": FakeDynamics(), "task": TASK, "dataset": synthetic_transitions(n=100)} | change
    with pytest.raises(EmpoError) as err:
        ModelEnv(**kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_sb3_adapter_needs_same_step_autoreset(data):
    from empo.integrations.sb3 import SB3ModelVecEnv

    with pytest.raises(EmpoError, match="SameStep"):
        SB3ModelVecEnv(ModelEnv(FakeDynamics(), TASK, data, autoreset_mode="Disabled"))


def test_the_docs_example_runs(monkeypatch):
    """docs/integrations.md's example, with a fake model and synthetic data in place of the files."""
    import re
    from pathlib import Path

    import empo.data
    import empo.models

    doc = (Path(__file__).resolve().parents[1] / "docs" / "integrations.md").read_text()
    example = re.findall(r"```python\n(.*?)```", doc, flags=re.S)[0]  # the first: stable-baselines3's
    monkeypatch.setattr(empo.data, "load_transitions", lambda name: synthetic_transitions())
    monkeypatch.setattr(empo.models, "load_dynamics", lambda model_dir, task: FakeDynamics())
    namespace: dict = {}
    exec(compile(example, "docs/integrations.md", "exec"), namespace)
    assert namespace["agent"].num_timesteps >= 1_000


def test_step_some_moves_only_the_active_envs_and_keeps_state_on_errors(data):
    env = ModelEnv(FakeDynamics(noise=0.05), TASK, data, num_envs=4, horizon=2, autoreset_mode="Disabled")
    obs, _ = env.reset(seed=0)
    active = np.array([True, False, True, False])
    stepped, *_ = env.step_some(np.zeros((4, 3), np.float32), active)
    again, _ = env.reset(options={"reset_mask": np.zeros(4, bool)})  # no env reset: the current states
    assert np.allclose(again[~active], obs[~active]) and not np.allclose(again[active], obs[active])
    env.step_some(np.zeros((4, 3), np.float32), active)  # the active ones reach the horizon
    assert env.ended.tolist() == [True, False, True, False]
    with pytest.raises(EmpoError, match="actions must have shape"):
        env.step_some(np.zeros((2, 3), np.float32), ~active)
    assert env.ended.tolist() == [True, False, True, False]  # a failed call leaves the end flags as they were
    with pytest.raises(EmpoError, match="bool mask of shape"):
        env.step_some(np.zeros((4, 3), np.float32), np.array([True, False]))
