"""``empo-model train`` / ``eval`` end to end on tiny synthetic data (load_transitions is stubbed)."""

import json

import numpy as np
import pytest

import empo.data
from empo.cli.model import main
from empo.data.transitions import Transitions
from empo.errors import EmpoError


def fake_dataset(task_name, d4rl_path=None, minari_id=None):
    """hopper-sized synthetic data; 'hopper-random' is shifted (out of distribution); others not built."""
    if task_name not in ("hopper-medium", "hopper-random"):
        raise EmpoError(f"no dataset for {task_name}: not built")
    rng = np.random.default_rng(0 if task_name == "hopper-medium" else 1)
    n = 400
    obs = rng.normal(size=(n, 11)).astype(np.float32) * 0.1
    obs[:, 0] += 1.25 if task_name == "hopper-medium" else 1.0
    act = rng.uniform(-1, 1, size=(n, 3)).astype(np.float32)
    nxt = obs + 0.05 * np.tanh(act @ np.ones((3, 11), dtype=np.float32))
    timeouts = np.zeros(n)
    timeouts[39::40] = 1
    return Transitions(obs, act, act.sum(1), nxt, np.zeros(n), timeouts, np.arange(0, n, 40))


@pytest.fixture
def stub_data(monkeypatch):
    monkeypatch.setattr(empo.data, "load_transitions", fake_dataset)


def test_train_then_eval_then_resume(stub_data, tmp_path, capsys):
    out = tmp_path / "ftm"
    assert main(["train", "--task", "hopper-medium", "--model", "ftm", "--preset", "smoke", "--out", str(out),
                 "--device", "cpu", "--no-progress", "--set", "ftm.max_epochs=1"]) == 0
    for name in ("model.pt", "model.json", "config.yaml", "checkpoint.pt", "train_log.csv", "run.json"):
        assert (out / name).is_file(), name
    assert "max_epochs: 1" in (out / "config.yaml").read_text()
    capsys.readouterr()
    assert main(["eval", "--model-dir", str(out), "--json", "--device", "cpu", "--horizons", "1", "5"]) == 0
    report = json.loads(capsys.readouterr().out)
    splits = {(r["dataset"], r["split"], r["horizon"]) for r in report["rows"]}
    assert ("hopper-medium", "holdout", 1) in splits and ("hopper-random", "ood", 5) in splits
    assert any("hopper-expert" in note for note in report["notes"])  # not built: skipped, said so
    assert (out / "transition_error.csv").read_text().startswith("dataset,split,horizon")
    assert main(["train", "--resume", str(out), "--device", "cpu", "--no-progress"]) == 0
    assert main(["train", "--resume", str(out), "--finish", "--device", "cpu", "--no-progress"]) == 0
    assert json.loads((out / "model.json").read_text())["meta"]["stopped_by"] == "hand"


def test_etm_smoke_train(stub_data, tmp_path):
    out = tmp_path / "etm"
    assert main(["train", "--task", "hopper-medium", "--model", "etm", "--preset", "smoke", "--out", str(out),
                 "--device", "cpu", "--no-progress", "--set", "etm.epochs=1"]) == 0
    rows = (out / "train_log.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,loss,holdout_next_obs_mse") and len(rows) == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--task", "hopper-medium", "--model", "etm", "--preset", "smoke", "--set", "etm.negatives=3"], "negatives"),
        (["train", "--task", "hoper-medium", "--model", "etm"], "hoper-medium"),
        (["train", "--model", "etm"], "--task"),
        (["train", "--task", "hopper-medium", "--model", "etm", "--finish"], "--finish"),
        (["eval", "--model-dir", "/nonexistent/dir"], "no trained model"),
    ],
)
def test_bad_input_is_a_one_line_error_with_status_2(stub_data, tmp_path, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and err.count("\n") == 1


def test_help_mentions_presets(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "quick" in capsys.readouterr().out


def test_an_interrupted_fit_says_how_to_resume(stub_data, tmp_path, monkeypatch, capsys):
    import empo.models

    def interrupted(transitions, task, config, out, **kwargs):
        out.mkdir(parents=True, exist_ok=True)
        (out / "checkpoint.pt").write_bytes(b"epoch 1")
        raise KeyboardInterrupt

    monkeypatch.setattr(empo.models, "train_dynamics", interrupted)
    out = tmp_path / "etm"
    assert main(["train", "--task", "hopper-medium", "--model", "etm", "--preset", "smoke", "--run-dir", str(out)]) == 130
    err = capsys.readouterr().err
    assert f"continue with: empo-model train --resume {out}" in err and f"--resume {out} --finish" in err


def test_sigterm_is_an_interruption_that_says_how_to_resume(stub_data, tmp_path, monkeypatch, capsys):
    """A scheduler's SIGTERM ends a command as Ctrl-C does (the resume hint, status 143), and the
    process's own SIGTERM handler is put back afterwards."""
    import os
    import signal
    import time

    import empo.models

    def terminated(transitions, task, config, out, **kwargs):
        out.mkdir(parents=True, exist_ok=True)
        (out / "checkpoint.pt").write_bytes(b"epoch 1")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the signal arrives within this
        raise AssertionError("SIGTERM did not interrupt the command")

    monkeypatch.setattr(empo.models, "train_dynamics", terminated)
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "etm"
    assert main(["train", "--task", "hopper-medium", "--model", "etm", "--preset", "smoke", "--run-dir", str(out)]) == 143
    err = capsys.readouterr().err
    assert f"continue with: empo-model train --resume {out}" in err and "interrupted (SIGTERM)" in err
    assert signal.getsignal(signal.SIGTERM) is before
