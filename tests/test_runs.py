"""A run as a Python object: load it, act with its policy, export it, evaluate it by command."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import empo.cli.evaluate as eval_cli
import empo.cli.export as export_cli
import empo.cli.train as train_cli
from empo.errors import EmpoError
from empo.runs import load_run
from tests.test_loop_support import synthetic_transitions


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "mopo-smoke"
    data = synthetic_transitions(n=600)
    original = train_cli.load_dataset
    train_cli.load_dataset = lambda *args, **kwargs: data
    try:
        code = train_cli.main(["--task", "hopper-medium", "--algo", "mopo", "--preset", "smoke", "--no-progress", "--run-dir", str(run_dir)])
    finally:
        train_cli.load_dataset = original
    assert code == 0
    return run_dir


def test_load_run_gives_the_config_summary_progress_and_the_trained_policy(smoke_run):
    run = load_run(smoke_run)
    assert run.config.task == "hopper-medium" and run.config.algo == "mopo" and run.epoch == 4
    assert run.summary["status"] == "finished" and len(run.progress) == 4
    state = torch.load(smoke_run / "checkpoint.pt", weights_only=False)["agent"]["actor"]
    obs = torch.randn(100, 11)
    mean = torch.nn.functional.linear(
        torch.relu(torch.nn.functional.linear(torch.relu(torch.nn.functional.linear(obs, state["trunk.0.weight"], state["trunk.0.bias"])),
                                              state["trunk.2.weight"], state["trunk.2.bias"])),
        state["head.weight"], state["head.bias"],
    )[:, :3]
    assert torch.allclose(run.policy(obs), torch.tanh(mean), atol=1e-6)
    single = run.act(obs[0].numpy())
    assert single.shape == (3,) and np.allclose(single, torch.tanh(mean[0]).numpy(), atol=1e-6)


@pytest.mark.parametrize("fmt", ["torch-export", "torchscript"])
def test_exported_policy_acts_the_same_in_a_process_without_empo(smoke_run, tmp_path, capsys, fmt):
    out = tmp_path / "policy.file"
    assert export_cli.main([str(smoke_run), "--out", str(out), "--format", fmt]) == 0
    assert "wrote" in capsys.readouterr().out
    obs = np.random.default_rng(0).normal(size=(100, 11)).astype(np.float32)
    np.save(tmp_path / "obs.npy", obs)
    script = (
        "import sys, numpy as np, torch\n"
        "policy = torch.export.load(sys.argv[1]).module() if sys.argv[4] == 'torch-export' else torch.jit.load(sys.argv[1])\n"
        "np.save(sys.argv[3], policy(torch.as_tensor(np.load(sys.argv[2]))).detach().numpy())\n"
        "assert not any(name == 'empo' or name.startswith('empo.') for name in sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(out), str(tmp_path / "obs.npy"), str(tmp_path / "act.npy"), fmt], check=True, cwd=tmp_path)
    expected = load_run(smoke_run).act(obs)
    assert np.allclose(np.load(tmp_path / "act.npy"), expected, atol=1e-6)


def test_empo_eval_on_a_run_and_on_an_exported_file(smoke_run, tmp_path, capsys):
    assert eval_cli.main([str(smoke_run), "--episodes", "2", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["task"] == "hopper-medium" and figures["episodes"] == 2 and figures["mean_length"] > 0
    export_cli.main([str(smoke_run), "--out", str(tmp_path / "p.pt")])
    capsys.readouterr()
    assert (smoke_run / "policy.pt2").exists() is False  # --out was given
    assert eval_cli.main([str(tmp_path / "p.pt"), "--task", "hopper-medium", "--episodes", "2", "--json"]) == 0
    from_file = json.loads(capsys.readouterr().out)
    assert from_file["mean_return"] == pytest.approx(figures["mean_return"], rel=1e-5)
    # one-line errors
    assert eval_cli.main([str(tmp_path / "p.pt"), "--episodes", "2"]) == 2
    assert "--task" in capsys.readouterr().err
    assert eval_cli.main([str(tmp_path / "p.pt"), "--task", "halfcheetah-medium"]) == 2
    assert "observations of size 17" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"junk")
    assert eval_cli.main([str(tmp_path / "junk.pt"), "--task", "hopper-medium"]) == 2
    assert "not a policy file" in capsys.readouterr().err
    assert export_cli.main([str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_load_run_errors_name_the_file(tmp_path):
    with pytest.raises(EmpoError, match="no such run folder"):
        load_run(tmp_path / "missing")
    (tmp_path / "config.yaml").write_text("task: hopper-medium\n")
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(EmpoError, match="checkpoint.pt: cannot read"):
        load_run(tmp_path)
