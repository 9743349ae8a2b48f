"""tianshou (2.x): its vector-env API over ModelEnv, and its SAC as the agent of EMPO's loop."""

import json

import numpy as np
import pytest
import torch
from tianshou.data import Batch, Collector, VectorReplayBuffer
from tianshou.utils.torch_utils import policy_within_training_step

import empo.cli.train as train_cli
from empo.agents.sac import SACConfig
from empo.data.tasks import get_task
from empo.envs.model_env import ModelEnv
from empo.errors import EmpoError
from empo.integrations.tianshou import TianshouModelVectorEnv
from empo.integrations.tianshou_agent import MixedBatchBuffer, check_state, make_sac
from empo.loop.config import resolve_config
from empo.loop.trainer import Trainer
from empo.models.termination import hopper_termination
from empo.runs import export_policy, load_run
from tests.test_loop import NON_TIMING, read_rows, synthetic_dataset  # noqa: F401  (a fixture)
from tests.test_loop_support import FakeDynamics, synthetic_transitions
from tests.test_model_env import one_state_dataset

TASK = get_task("hopper-medium")
SMALL = SACConfig(hidden_sizes=[16, 16])


def venv_of(model=None, dataset=None, num_envs=4, **kwargs):
    env = ModelEnv(model or FakeDynamics(), TASK, dataset or synthetic_transitions(), num_envs=num_envs,
                   autoreset_mode="Disabled", **kwargs)
    return TianshouModelVectorEnv(env)


def one_line_error(call, *args, match):
    with pytest.raises(EmpoError, match=match) as err:
        call(*args)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------ the vector env
def test_reset_and_step_speak_tianshous_api():
    # one healthy start state and zero actions: no env ends in these steps, whatever the seed
    venv = venv_of(FakeDynamics(noise=0.0), one_state_dataset(), num_envs=4, horizon=5, penalty_coef=1.0)
    assert len(venv) == venv.env_num == 4 and not venv.is_async
    assert venv.action_space == [venv.env.single_action_space] * 4  # tianshou reads one space per env
    assert venv.get_env_attr("horizon", [1, 3]) == [5, 5]
    venv.set_env_attr("penalty_coef", 0.5)
    assert venv.env.penalty_coef == 0.5
    obs, infos = venv.reset()
    assert obs.shape == (4, 11) and obs.dtype == np.float32
    assert infos.dtype == object and infos.shape == (4,) and all(info == {} for info in infos)
    obs, rew, terminated, truncated, infos = venv.step(np.zeros((4, 3), np.float32))
    assert obs.shape == (4, 11) and rew.shape == (4,) and terminated.dtype == np.bool_ and truncated.shape == (4,)
    assert [info["env_id"] for info in infos] == [0, 1, 2, 3]
    for info, r in zip(infos, rew, strict=True):
        assert info["raw_reward"] - 0.5 * info["penalty"] == pytest.approx(float(r), abs=1e-5)
    # the results of some envs, in the order asked (a torch tensor of actions is taken too)
    obs, rew, *_, infos = venv.step(torch.zeros(2, 3), id=[3, 1])
    assert obs.shape == (2, 11) and [info["env_id"] for info in infos] == [3, 1]
    venv.close()
    one_line_error(venv.reset, match="closed")


def test_termination_truncation_and_the_reset_of_given_envs():
    """Env 0 pushes the height down (terminates at its 2nd step, by the model's rule), envs 1 and 2
    push it up (truncated at the horizon, 3); every start is the one dataset state."""
    fake = FakeDynamics(noise=0.0)
    down = -np.sign(fake.weight[:, 0].numpy()).astype(np.float32)
    venv = venv_of(FakeDynamics(noise=0.0), one_state_dataset(), num_envs=3, horizon=3, termination="model")
    start, _ = venv.reset(seed=0)
    actions = np.stack([down, -down, -down])
    _, _, terminated, truncated, _ = venv.step(actions)
    assert not (terminated | truncated).any()
    obs, _, terminated, truncated, _ = venv.step(actions)
    assert terminated.tolist() == [True, False, False] and not truncated.any()
    assert obs[0, 0] < 0.7  # the state it ended in, not a new start (the collector stores it as obs_next)
    one_line_error(venv.step, actions, match=r"envs \[0\] have ended; reset\(env_id\)")
    # the others go on without env 0 and reach the horizon
    _, _, terminated, truncated, _ = venv.step(actions[1:], [1, 2])
    assert terminated.tolist() == [False, False] and truncated.tolist() == [True, True]
    again, infos = venv.reset(env_id=[2, 0])
    assert again.shape == (2, 11) and len(infos) == 2
    np.testing.assert_array_equal(again, start[[2, 0]])
    one_line_error(venv.step, actions[1:2], [1], match=r"envs \[1\] have ended")
    # a step of env 0 alone leaves env 2 as it was: its state and its step count
    moved, *_ = venv.step(actions[:1], [0])
    assert moved[0, 0] < start[0, 0]
    obs, _, terminated, truncated, _ = venv.step(actions[2:], [2])
    np.testing.assert_allclose(obs[0], start[2] + 0.1 * actions[2] @ fake.weight.numpy(), rtol=1e-6)
    assert not terminated[0] and not truncated[0]  # its first step of three
    venv.reset(env_id=1)
    venv.step(actions, None)  # all three again


def test_seeding_reproduces_the_trajectories():
    def trajectory(venv, seed, how):
        if how == "seed":
            assert venv.seed(seed) == [[seed]] * 4
            steps = [venv.reset()[0]]
        else:
            steps = [venv.reset(seed=seed)[0]]
        for t in range(8):
            obs, rew, terminated, truncated, _ = venv.step(np.full((4, 3), np.sin(t), np.float32))
            steps += [obs, rew, terminated, truncated]
            done = np.flatnonzero(terminated | truncated)
            if done.size:
                steps.append(venv.reset(env_id=done)[0])
        return steps

    def same(a, b):
        return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))

    model = FakeDynamics(noise=0.05)
    venv = venv_of(model, horizon=3)
    for how in ("seed", "reset"):
        first = trajectory(venv, 7, how)
        assert same(first, trajectory(venv, 7, how))
        assert same(first, trajectory(venv_of(model, horizon=3), 7, how))
        assert not same(first, trajectory(venv, 8, how))


def test_bad_inputs_are_one_line_errors():
    venv = venv_of(num_envs=4)
    venv.reset()
    one_line_error(venv.step, np.zeros((4, 2), np.float32), match=r"actions must have shape \(4, 3\) for 4 env ids, got \(4, 2\)")
    one_line_error(venv.step, np.zeros((3, 3), np.float32), match=r"shape \(4, 3\)")
    one_line_error(venv.step, np.zeros((2, 3), np.float32), [0, 4], match=r"env ids must be in \[0, 4\)")
    one_line_error(venv.step, np.zeros((2, 3), np.float32), [1, 1], match="must not repeat")
    one_line_error(venv.step, None, match="needs actions")
    with pytest.raises(EmpoError, match="takes env_id, seed and options, not render_mode"):
        venv.reset(render_mode="human")
    one_line_error(TianshouModelVectorEnv, venv, match="expected an empo ModelEnv, got TianshouModelVectorEnv")
    same_step = ModelEnv(FakeDynamics(), TASK, synthetic_transitions(), num_envs=2)
    one_line_error(TianshouModelVectorEnv, same_step, match="autoreset_mode Disabled .*got SameStep")


def test_tianshous_collector_and_sac_run_on_the_model():
    venv = venv_of(FakeDynamics(noise=0.05), num_envs=4, horizon=10)
    sac, _ = make_sac(11, 3, SMALL, seed=0)
    buffer = VectorReplayBuffer(2000, len(venv))
    collector = Collector(sac, venv, buffer)
    collector.reset(gym_reset_kwargs={"seed": 0})
    torch.manual_seed(0)  # the policy samples from torch's global generator
    with policy_within_training_step(sac.policy):  # stochastic actions, as tianshou's trainer collects
        stats = collector.collect(n_step=300)
        assert stats.n_collected_steps == 300 and stats.n_collected_episodes > 0 and len(buffer) == 300
        # episodes: fewer than envs at the end, so the collector steps only some envs
        stats = collector.collect(n_episode=6)
        assert stats.n_collected_episodes == 6 and np.all(stats.lens <= 10)
    starts = synthetic_transitions().observations
    ends = {"terminated": 0, "truncated": 0}
    for part in buffer.buffers:  # one sub-buffer per env, in step order
        data = part[np.arange(len(part))]
        done = data.terminated | data.truncated
        np.testing.assert_array_equal(data.terminated, hopper_termination(torch.as_tensor(data.obs_next)).numpy())
        following = data.obs[1:]
        np.testing.assert_array_equal(following[~done[:-1]], data.obs_next[:-1][~done[:-1]])  # obs_next is the next obs
        assert all((starts == row).all(axis=1).any() for row in following[done[:-1]])  # new starts
        assert not (data.terminated & data.truncated).any() and np.all(np.abs(data.act) <= 1.0)
        ends["terminated"] += int(data.terminated.sum())
        ends["truncated"] += int(data.truncated.sum())
    assert ends["terminated"] > 0 and ends["truncated"] > 0  # both ways of ending were collected
    with policy_within_training_step(sac.policy):
        update = sac.update(buffer, 64)
    assert all(np.isfinite(v) for v in (update.critic1_loss, update.critic2_loss, update.actor_loss, update.alpha))


# ----------------------------------------------------------------------- SAC as the loop's agent
def test_the_mixed_batch_buffer_feeds_tianshous_critic_target():
    """tianshou's own target, r + gamma * (1 - terminal) * (min Q'(s', a') - alpha log pi(a'|s')),
    from a batch that the buffer serves; the terminal flag cuts the bootstrap."""
    sac, _ = make_sac(11, 3, SMALL, seed=0)
    gen = torch.Generator().manual_seed(0)
    data = {
        "observations": torch.randn(8, 11, generator=gen), "actions": torch.rand(8, 3, generator=gen) * 2 - 1,
        "rewards": torch.randn(8, generator=gen), "next_observations": torch.randn(8, 11, generator=gen),
        "terminals": torch.tensor([0.0, 1.0] * 4),
    }
    buffer = MixedBatchBuffer(lambda n: {key: value[:n] for key, value in data.items()}, 8)
    batch, indices = buffer.sample(8)
    assert isinstance(batch.obs, torch.Tensor) and batch.rew.dtype == np.float64 and len(buffer) == 8
    assert buffer.unfinished_index().size == 0 and batch.done.tolist() == [False, True] * 4
    with pytest.raises(EmpoError, match="filled by the EMPO loop"):
        buffer.add(batch)
    with policy_within_training_step(sac.policy):
        torch.manual_seed(1)
        returns = sac._preprocess_batch(batch, buffer, indices).returns.flatten()
        torch.manual_seed(1)  # the same draw of a' ~ pi(.|s')
        next_act = sac.policy(Batch(obs=data["next_observations"], info=[None] * 8))
        with torch.no_grad():
            next_q = torch.min(sac.critic_old(data["next_observations"], next_act.act),
                               sac.critic2_old(data["next_observations"], next_act.act))
            soft = (next_q - sac.alpha.value * next_act.log_prob).flatten()
    expected = data["rewards"] + 0.99 * (1.0 - data["terminals"]) * soft
    torch.testing.assert_close(returns, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_tianshou_sac_as_the_loop_agent(tmp_path, synthetic_dataset, capsys):  # noqa: F811
    """tianshou's SAC learns from the loop's mixed batches: run folder, summary, policy and exact resume."""
    common = ["--task", "hopper-medium", "--algo", "mopo", "--preset", "smoke", "--seed", "3", "--set", "agent=tianshou-sac",
              "--no-progress"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train_cli.main([*common, "--run-dir", str(straight)]) == 0
    summary = json.loads((straight / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["agent"] == "tianshou-sac" and summary["updates"] == 80
    rows = read_rows(straight)
    for name in ("critic_loss", "actor_loss", "alpha_loss", "alpha"):
        assert all(np.isfinite(float(row[name])) for row in rows), name
    assert all(row["q1_mean"] == "nan" for row in rows)  # tianshou does not report it: logged as not measured
    run = load_run(straight)
    obs = np.random.default_rng(0).normal(size=(5, 11)).astype(np.float32)
    actions = run.act(obs)
    assert actions.shape == (5, 3) and np.all(np.abs(actions) <= 1.0)
    # the policy is tianshou's deterministic evaluation action, in plain torch modules (TorchScript takes it)
    state = torch.load(straight / "checkpoint.pt", weights_only=False)
    sac, _ = make_sac(11, 3, run.config.sac)
    sac.load_state_dict(dict(state["agent"]["parameters"]))
    with torch.no_grad():
        tianshou_action = sac.policy(Batch(obs=torch.as_tensor(obs), info={})).act.numpy()
    np.testing.assert_allclose(actions, tianshou_action, rtol=1e-6, atol=1e-6)
    scripted = torch.jit.load(str(export_policy(run, tmp_path / "policy.pt", "torchscript")))
    with torch.no_grad():
        np.testing.assert_allclose(scripted(torch.as_tensor(obs)).numpy(), actions, rtol=1e-6, atol=1e-6)
    # exact resume
    assert train_cli.main([*common, "--run-dir", str(split), "--stop-after", "2"]) == 0
    assert json.loads((split / "summary.json").read_text())["status"] == "running"
    assert train_cli.main(["--resume", str(split), "--no-progress"]) == 0
    resumed = read_rows(split)
    assert len(resumed) == len(rows) == 4
    for row_a, row_b in zip(rows, resumed, strict=True):
        assert {k: row_a[k] for k in NON_TIMING} == {k: row_b[k] for k in NON_TIMING}
    state_b = torch.load(split / "checkpoint.pt", weights_only=False)
    for key, value in state["agent"]["parameters"].items():
        if key != "_optimizers":
            assert torch.equal(value, state_b["agent"]["parameters"][key]), key
    assert state["agent"]["alpha_optim"]["state"][0]["step"] == state_b["agent"]["alpha_optim"]["state"][0]["step"] == 80


def test_tianshou_sac_runs_empo_with_the_penalty_at_rollout(tmp_path, synthetic_dataset):  # noqa: F811
    # EMPO's penalty decay asks the agent's critics for Q at every rollout step (q_value)
    run_dir = tmp_path / "run"
    argv = ["--task", "hopper-medium", "--algo", "empo", "--preset", "smoke", "--run-dir", str(run_dir), "--no-progress",
            "--set", "agent=tianshou-sac", "--set", "empo.penalty_at=rollout", "--set", "empo.alpha_max=null",
            "--set", "training.epochs=2"]
    assert train_cli.main(argv) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["agent"] == "tianshou-sac"
    assert all(np.isfinite(float(row["critic_loss"])) for row in read_rows(run_dir))


def test_the_agent_draws_mixed_batches_and_refuses_foreign_states(tmp_path):
    config = resolve_config("hopper-medium", "mopo", "smoke", overrides={"agent": "tianshou-sac"})
    trainer = Trainer(config, synthetic_transitions().qlearning().to_tensors(), FakeDynamics(), tmp_path, progress=False)
    trainer.do_rollout()
    agent = trainer.agent
    batch, _ = agent.buffer.sample(200)
    real = int(200 * config.training.real_ratio)
    real_obs = trainer.real_buffer.storage["observations"][: len(trainer.real_buffer)]
    in_real = [(real_obs == row).all(dim=1).any().item() for row in batch.obs]
    assert all(in_real[:real]) and not all(in_real) and batch.act.shape == (200, 3)
    obs = real_obs[:6]
    assert agent.act(obs).shape == (6, 3) and agent.q_value(obs, agent.act(obs, deterministic=True)).shape == (6,)
    gen_a, gen_b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(agent.act(obs, generator=gen_a), agent.act(obs, generator=gen_b))
    assert agent.metric_names == ("critic_loss", "actor_loss", "alpha_loss", "alpha")
    state = agent.state_dict()
    with pytest.raises(EmpoError, match="not tianshou's SAC"):
        agent.load_state_dict({**state, "framework": "stable-baselines3"})
    wider = resolve_config("hopper-medium", "mopo", "smoke", overrides={"agent": "tianshou-sac", "sac": {"hidden_sizes": [32, 32]}})
    check_state(config, TASK, state)
    with pytest.raises(RuntimeError, match="size mismatch"):
        check_state(wider, TASK, state)
    with pytest.raises(EmpoError, match="cannot run runtime.sync_debug=true"):  # refused when the config is resolved
        resolve_config("hopper-medium", "mopo", "smoke", overrides={"agent": "tianshou-sac", "runtime": {"sync_debug": True}})
