"""The simulator stand-in (model_kind=simulator): it must reproduce the real env's own steps."""

import json

import numpy as np
import pytest
import torch

import empo.cli.train as train_cli
from empo import pipeline
from empo.data.envs import make_env
from empo.data.tasks import get_task
from empo.envs.simulator import SimulatorDynamics
from tests.test_loop_support import synthetic_transitions


@pytest.mark.parametrize("task_name", ["hopper-medium", "halfcheetah-medium"])
def test_simulator_steps_match_the_env(task_name):
    task = get_task(task_name)
    sim = SimulatorDynamics(task)
    env = make_env(task.gym_id)
    obs, _ = env.reset(seed=5)
    rng = np.random.default_rng(0)
    terminations = 0
    for _ in range(120):
        # a biased, small action makes hopper fall (exercising termination) while keeping its
        # velocities inside the [-10, 10] clip of its observation
        act = (rng.uniform(-0.3, 0.3, size=task.act_dim) - 0.5).astype(np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(act)
        result = sim.step(torch.as_tensor(obs[None]), torch.as_tensor(act[None]))
        np.testing.assert_allclose(result.next_obs[0].numpy(), next_obs, atol=1e-4)
        assert result.reward[0].item() == pytest.approx(reward, abs=1e-4)
        assert bool(result.terminal[0]) == terminated
        assert result.penalty[0].item() == 0.0
        terminations += int(terminated)
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset(seed=6 + terminations)
    if task_name == "hopper-medium":
        assert terminations > 0  # the termination path was exercised


def test_simulator_keeps_a_batch_apart():
    task = get_task("hopper-medium")
    sim = SimulatorDynamics(task)
    env = make_env(task.gym_id)
    starts = np.stack([env.reset(seed=s)[0] for s in range(4)])
    acts = np.linspace(-0.5, 0.5, 4 * task.act_dim, dtype=np.float32).reshape(4, task.act_dim)
    batch = sim.step(torch.as_tensor(starts), torch.as_tensor(acts))
    for i in range(4):
        single = sim.step(torch.as_tensor(starts[i : i + 1]), torch.as_tensor(acts[i : i + 1]))
        torch.testing.assert_close(batch.next_obs[i], single.next_obs[0])


def test_train_cli_runs_with_the_simulator(tmp_path, monkeypatch, capsys):
    data = synthetic_transitions(n=600)
    monkeypatch.setattr(pipeline, "prepare_dataset", lambda *args, **kwargs: data)
    run_dir = tmp_path / "run"
    argv = ["--task", "hopper-medium", "--algo", "mopo", "--preset", "smoke", "--no-progress",
            "--set", "mopo.model_kind=simulator", "--set", "training.epochs=2", "--run-dir", str(run_dir)]
    assert train_cli.main(argv) == 0
    assert "rollouts step the real Hopper-v5 env" in capsys.readouterr().out
    assert json.loads((run_dir / "run.json").read_text())["model_dir"] is None
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    # a run on the simulator resumes like any other
    assert train_cli.main(["--resume", str(run_dir), "--no-progress"]) == 0
