"""empo-train's arguments and its one-line errors."""

import pytest

from empo.cli.train import main


def test_help_describes_the_presets(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for word in ("paper", "quick", "smoke", "3000 epochs", "--resume", "--model-dir", "checkpoint.pt"):
        assert word in out


def test_errors_are_one_line_with_status_2(tmp_path, capsys):
    assert main([]) == 2
    assert "--task" in capsys.readouterr().err
    assert main(["--task", "hopper-meduim"]) == 2
    assert "did you mean 'hopper-medium'" in capsys.readouterr().err
    assert main(["--task", "hopper-medium", "--set", "training.epohcs=2"]) == 2
    assert "unknown key 'epohcs'" in capsys.readouterr().err
    assert main(["--resume", str(tmp_path / "nowhere")]) == 2
    assert "no config.yaml" in capsys.readouterr().err
    assert main(["--task", "hopper-medium", "--stop-after", "0"]) == 2


def test_without_a_preset_a_cpu_gets_the_learn_one_and_says_so(capsys):
    import torch

    from empo.pipeline import default_preset

    assert default_preset(torch.device("cpu")) == "learn"
    assert "preset: learn" in capsys.readouterr().out
    assert default_preset(torch.device("cuda")) == "paper"
    assert "preset: paper" in capsys.readouterr().out
    # the CLI resolves it before anything slow: a bad override still fails fast, after the line
    assert main(["--task", "hopper-medium", "--device", "cpu", "--set", "training.epohcs=2"]) == 2
    captured = capsys.readouterr()
    assert "preset: learn" in captured.out and "epohcs" in captured.err
