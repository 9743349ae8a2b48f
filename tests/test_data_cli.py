"""``empo-data`` as a user runs it: exit codes and one-line errors, no tracebacks."""

import json

import numpy as np

from empo.cli.data import main
from tests.test_data_sources import write_d4rl


def test_info_json_on_a_d4rl_file(tmp_path, capsys):
    write_d4rl(tmp_path / "h.hdf5")
    assert main(["info", "hopper-medium", "--d4rl-path", str(tmp_path / "h.hdf5"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # --task is the same task (the spelling of empo-train and empo-model)
    assert main(["info", "--task", "hopper-medium", "--d4rl-path", str(tmp_path / "h.hdf5"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == out
    assert set(out) >= {"transitions", "episodes", "terminals", "timeouts", "mean_return", "normalized_score", "source"}
    assert out["transitions"] == 9 and out["episodes"] == 3
    assert np.isclose(out["normalized_score"], 100 * (15 + 20.272305) / (3234.3 + 20.272305))


def test_info_checksum_tells_two_builds_apart(tmp_path, capsys):
    def checksum(name, **override):
        write_d4rl(tmp_path / name, **override)
        assert main(["info", "hopper-medium", "--d4rl-path", str(tmp_path / name), "--json"]) == 0
        return json.loads(capsys.readouterr().out)["checksum"]

    same = checksum("a.hdf5")
    assert len(same) == 16 and int(same, 16) >= 0
    assert checksum("b.hdf5") == same  # the same steps in another file
    rewards = np.arange(10, dtype=np.float32)
    rewards[3] += 1e-3
    assert checksum("c.hdf5", rewards=rewards) != same  # one reward differs
    assert main(["info", "hopper-medium", "--d4rl-path", str(tmp_path / "a.hdf5")]) == 0
    assert f"checksum          {same}" in capsys.readouterr().out


def test_build_list_and_info(capsys):
    assert main(["build", "halfcheetah-random", "--size", "2400", "--envs", "2", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "halfcheetah-random" in listing and "built" in listing
    assert "hopper-medium " in listing
    assert main(["info", "halfcheetah-random"]) == 0
    text = capsys.readouterr().out
    # two envs: each runs one full 1000-step episode (time limit), then one cut at 200 steps
    assert "transitions       2396" in text and "episodes          4" in text and "timeouts          4" in text


def _one_line_error(capsys, argv, expect):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert expect in err, err


def test_errors_are_one_line(tmp_path, capsys):
    _one_line_error(capsys, ["info", "hopper-medum"], "unknown task 'hopper-medum'")
    _one_line_error(capsys, ["info", "hopper-medium", "--d4rl-path", str(tmp_path / "x.hdf5")], "D4RL file not found")
    _one_line_error(capsys, ["info", "hopper-medium", "--minari-id", "a/b-v0"], "'a/b-v0' is not on disk")
    _one_line_error(capsys, ["info", "hopper-medium"], "empo-data build hopper-medium")
    _one_line_error(capsys, ["info"], "give the task")
    _one_line_error(capsys, ["info", "hopper-medium", "--task", "hopper-random"], "two different tasks")
    _one_line_error(capsys, ["build", "hopper-random", "--size", "0"], "--size must be positive")
    _one_line_error(capsys, ["train-behaviour", "hopper-random"], "no behaviour policy to train")
    write_d4rl(tmp_path / "w.hdf5", obs_dim=17, act_dim=6)
    _one_line_error(capsys, ["info", "hopper-medium", "--d4rl-path", str(tmp_path / "w.hdf5")], "expects 11")


def test_train_behaviour_passes_progress_and_checkpoint_options(tmp_path, monkeypatch, capsys):
    import empo.data.behaviour as behaviour

    seen = []

    def fake_train(env_name, out, **kwargs):
        seen.append((env_name, kwargs["progress"], kwargs["until"], kwargs["checkpoint_every"]))
        return {"reached": {"medium": {"train_steps": 10, "stochastic_return": 1.0}}}

    monkeypatch.setattr(behaviour, "train_behaviour", fake_train)
    argv = ["train-behaviour", "hopper-medium", "--out", str(tmp_path / "b"), "--max-steps", "10000"]
    assert main(argv) == 0
    assert main([*argv, "--no-progress", "--checkpoint-every", "2000"]) == 0
    assert seen == [("hopper", True, "medium", 50_000), ("hopper", False, "medium", 2000)]
    assert "hopper-medium: step 10" in capsys.readouterr().out
