"""A policy whose actions turn NaN stops an evaluation with one line naming the policy, episode and step.

Both ways a policy meets the real env are checked: ``PolicyEvaluator`` (empo-eval, the training
loop's evaluation) and ``real_episodes`` (empo-ope's true values); and both commands end with
exit status 2 and one ``error:`` line, writing nothing.
"""

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

import empo.cli.evaluate as eval_cli
import empo.cli.ope as ope_cli
from empo.data import get_task
from empo.data.envs import make_env
from empo.evaluation.ope import OPEPolicy, real_episodes
from empo.evaluation.policy_eval import NonFiniteActionError, PolicyEvaluator, check_actions, evaluate_policy

HOPPER = get_task("hopper-medium")
NAN_STEP = 4  # hopper stands for more than 4 steps under zero actions, so every episode reaches it


def nan_from_step(step: int, rows: tuple[int, ...] | None = None):
    """A policy of zero actions that gives NaN from its ``step``-th call on (counted from 0), in
    ``rows`` of the batch (all when None)."""
    calls = {"n": 0}

    def policy(obs: torch.Tensor) -> torch.Tensor:
        action = torch.zeros(obs.shape[0], HOPPER.act_dim)
        if calls["n"] >= step:
            action[list(rows) if rows is not None else slice(None), 1] = float("nan")
        calls["n"] += 1
        return action

    return policy


def test_the_evaluator_names_the_policy_episode_and_step():
    evaluator = PolicyEvaluator(HOPPER, episodes=3)
    try:
        with pytest.raises(NonFiniteActionError) as err:
            evaluator.evaluate(nan_from_step(NAN_STEP, rows=(1, 2)), seed=7, name="runs/bad (epoch 3)")
    finally:
        evaluator.close()
    assert (err.value.policy, err.value.episode, err.value.step, err.value.seed) == (
        "runs/bad (epoch 3)",
        1,
        NAN_STEP,
        8,
    )
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("policy runs/bad (epoch 3) gave a non-finite action [0, nan, 0]")
    assert f"in episode 1 (seed 8) of Hopper-v5 at step {NAN_STEP} (steps counted from 0)" in message


def test_evaluate_policy_passes_the_name_and_finite_policies_still_run():
    with pytest.raises(NonFiniteActionError, match="policy my-policy gave .* at step 0 "):
        evaluate_policy(nan_from_step(0), HOPPER, episodes=1, name="my-policy")
    result = evaluate_policy(lambda obs: torch.zeros(obs.shape[0], 3), HOPPER, episodes=1)
    assert np.isfinite(result.mean_return)


def test_check_actions_finds_the_first_bad_row_and_inf():
    check_actions(np.zeros((2, 3)), "p", 0)  # finite: nothing
    actions = np.zeros((3, 3))
    actions[2, 0] = np.inf
    with pytest.raises(
        NonFiniteActionError, match="policy p gave a non-finite action \\[inf, 0, 0\\] in episode 5 at step 9"
    ):
        check_actions(actions, "p", 9, episodes=np.array([1, 3, 5]))


def test_opes_real_episodes_stop_at_the_first_nan():
    policy = OPEPolicy("bad", nan_from_step(NAN_STEP, rows=(0,)), "exported policy bad.pt2")
    envs = [make_env(HOPPER.gym_id) for _ in range(2)]
    try:
        with pytest.raises(NonFiniteActionError) as err:
            real_episodes(policy, envs, seed=3)
    finally:
        for env in envs:
            env.close()
    assert (err.value.episode, err.value.step, err.value.seed) == (0, NAN_STEP, 3)
    assert str(err.value).startswith("policy bad (exported policy bad.pt2) gave a non-finite action")


class NanAfterCalls(nn.Module):
    """Zero actions, NaN once it has been called more than ``calls_before_nan`` times: a policy
    file whose actions go bad part way through an episode."""

    def __init__(self, calls_before_nan: int) -> None:
        super().__init__()
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))
        self.limit = calls_before_nan

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        self.calls.add_(1)
        action = torch.zeros(obs.shape[0], 3)
        if bool(self.calls > self.limit):
            action = action + float("nan")
        return action


# TorchScript, not torch.export: a counter that changes the output is data-dependent control flow
TORCHSCRIPT = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")


def nan_policy_file(folder: Path) -> Path:
    # each command calls the policy once to check its shapes before the episodes: then step k is call k + 2
    path = folder / "nan-policy.ts"
    torch.jit.save(torch.jit.script(NanAfterCalls(NAN_STEP + 1)), str(path))
    return path


@TORCHSCRIPT
def test_empo_eval_exits_2_with_one_line(tmp_path, capsys):
    path = nan_policy_file(tmp_path)
    assert eval_cli.main([str(path), "--task", "hopper-medium", "--episodes", "2"]) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in captured.err
    assert lines[0].startswith(f"error: policy {path} gave a non-finite action [nan, nan, nan] in episode 0 (seed 0)")
    assert f"at step {NAN_STEP} " in lines[0]
    assert "return" not in captured.out  # no figures printed


@TORCHSCRIPT
def test_empo_ope_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    folder = Path(os.environ["D4RL_DATASET_DIR"])  # a tiny dataset where empo-ope looks for hopper-medium's
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    with h5py.File(folder / HOPPER.d4rl_filename, "w") as f:
        f.create_dataset("observations", data=rng.normal(size=(50, 11)).astype(np.float32))
        f.create_dataset("actions", data=rng.uniform(-1, 1, size=(50, 3)).astype(np.float32))
        f.create_dataset("rewards", data=np.ones(50, np.float32))
        f.create_dataset("terminals", data=np.zeros(50, bool))
        f.create_dataset("timeouts", data=np.arange(50) % 25 == 24)
    path = nan_policy_file(tmp_path)
    out = tmp_path / "ope"
    argv = [
        "--task",
        "hopper-medium",
        "--policies",
        "random",
        str(path),
        "--estimators",
        "ftm",
        "--episodes",
        "2",
        "--out",
        str(out),
    ]
    assert ope_cli.main([*argv, "--no-progress", "--seed", "5"]) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in captured.err
    assert lines[0].startswith(f"error: policy nan-policy (exported policy {path}) gave a non-finite action")
    assert f"in episode 0 (seed 5) of Hopper-v5 at step {NAN_STEP} " in lines[0]
    assert not out.exists()
