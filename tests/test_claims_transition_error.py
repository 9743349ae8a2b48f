"""Per-row transition errors, the paired bootstrap, and benchmarks/claims_transition_error.py on two
tiny fitted models (one ETM, one FTM) and synthetic data (the dataset loader is stubbed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import empo.data
from empo.data.tasks import get_task
from empo.errors import EmpoError
from empo.evaluation.transition_error import (
    episode_window_starts,
    multi_step_error,
    one_step_error,
    one_step_rows,
    open_loop_starts,
    paired_bootstrap,
    per_row_errors,
)
from empo.models import load_model_config, train_dynamics
from tests.test_models import synthetic_transitions

ROOT = Path(__file__).resolve().parents[1]


class Drift:
    """A stand-in model: next state = state + a fixed linear map of (state, action), reward = a linear map."""

    device = torch.device("cpu")

    def __init__(self, obs_dim: int = 11, act_dim: int = 3, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(obs_dim + act_dim, obs_dim + 1, generator=g) * 0.05

    def predict(self, obs, act, generator=None):
        y = torch.cat([obs, act], dim=-1) @ self.w
        return obs + y[:, :-1], y[:, -1]


class Still:
    """Predicts no change and zero reward: its errors can be written down from the data alone."""

    device = torch.device("cpu")

    def predict(self, obs, act, generator=None):
        return obs.clone(), torch.zeros(obs.shape[0])


# (a) the per-row errors and the means that one_step_error / multi_step_error report


def test_one_step_and_multi_step_errors_are_the_means_of_the_per_row_errors():
    data, model = synthetic_transitions(n=600, seed=3), Drift()
    for index, samples in ((None, None), (None, 200), (np.arange(0, 300, 3), None), (np.arange(0, 300, 3), 40)):
        rows = one_step_rows(data, index, samples, seed=5)
        per_row = per_row_errors(model, data, rows)[1]
        assert np.array_equal(per_row.rows, rows) and per_row.next_obs_se.shape == rows.shape
        report = one_step_error(model, data, index, samples, seed=5)
        assert report == {"next_obs_mse": float(np.mean(per_row.next_obs_se)), "reward_mse": float(np.mean(per_row.reward_se)),
                          "n": rows.size}
    starts = open_loop_starts(data, 10, 120, seed=2)
    assert starts.size == 120 and np.isin(starts, episode_window_starts(data, 10)).all()
    per_row = per_row_errors(model, data, starts, (1, 5, 10))
    report = multi_step_error(model, data, (1, 5, 10), max_starts=120, seed=2)
    assert set(report) == {1, 5, 10}
    for h in (1, 5, 10):
        assert report[h] == {"next_obs_mse": float(np.mean(per_row[h].next_obs_se)), "reward_mse": float(np.mean(per_row[h].reward_se)),
                             "n": 120}
    # open-loop errors grow along the horizon for a model that drifts
    assert per_row[1].next_obs_se.mean() < per_row[5].next_obs_se.mean() < per_row[10].next_obs_se.mean()


def test_per_row_errors_match_the_errors_written_down_by_hand():
    data = synthetic_transitions(n=600, seed=1)
    q = data.qlearning()
    rows = one_step_rows(data, None, 100, seed=0)
    one = per_row_errors(Still(), data, rows)[1]
    by_hand = ((q.next_observations[rows].astype(np.float64) - q.observations[rows]) ** 2).mean(axis=1)
    assert np.allclose(one.next_obs_se, by_hand, rtol=1e-5) and np.allclose(one.reward_se, q.rewards[rows].astype(np.float64) ** 2)
    # open loop: a model that never moves stays at the start state; compared with the real state h steps on
    starts = open_loop_starts(data, 4, 50, seed=0)
    loop = per_row_errors(Still(), data, starts, (4,))[4]
    by_hand = ((data.next_observations[starts + 3].astype(np.float64) - data.observations[starts]) ** 2).mean(axis=1)
    assert np.allclose(loop.next_obs_se, by_hand, rtol=1e-5) and np.allclose(loop.reward_se, data.rewards[starts + 3] ** 2)
    # the old means over all (row, dimension) cells agree to float32 rounding
    flat = float(np.mean((q.next_observations[rows] - q.observations[rows]) ** 2))
    assert one_step_error(Still(), data, rows)["next_obs_mse"] == pytest.approx(flat, rel=1e-6)


def test_per_row_errors_refuse_start_rows_that_cross_an_episode_end_and_handle_no_rows():
    data = synthetic_transitions(n=600, seed=0, episode_len=50)
    with pytest.raises(ValueError, match="not valid"):
        per_row_errors(Still(), data, np.array([45]), (10,))  # steps 45..54 run into the next episode
    empty = per_row_errors(Still(), data, np.zeros(0, np.int64), (1, 5))
    assert empty[5].means()["n"] == 0 and np.isnan(empty[5].means()["next_obs_mse"])
    assert multi_step_error(Still(), synthetic_transitions(n=600, episode_len=3), (5,))[5]["n"] == 0  # no episode that long


# (b) the paired bootstrap


def test_paired_bootstrap_of_identical_errors_gives_a_ratio_of_exactly_one():
    a = np.random.default_rng(0).exponential(size=500)
    result = paired_bootstrap(a, a.copy(), resamples=300, seed=1)
    assert result["ratio"] == {"mean": 1.0, "low": 1.0, "high": 1.0}
    assert result["a"] == result["b"]


def test_paired_bootstrap_of_doubled_errors_gives_a_ratio_of_one_half():
    a = np.random.default_rng(0).exponential(size=500)
    result = paired_bootstrap(a, 2 * a, resamples=300, seed=1)
    assert result["ratio"]["mean"] == 0.5
    assert result["ratio"]["low"] <= 0.5 <= result["ratio"]["high"]
    assert result["b"]["mean"] == pytest.approx(2 * result["a"]["mean"])
    # the same seed and rows: the same answer; another seed: other resamples
    assert paired_bootstrap(a, 2 * a, resamples=300, seed=1) == result
    assert paired_bootstrap(a, 2 * a, resamples=300, seed=2)["a"] != result["a"]


def test_the_interval_of_the_mean_holds_the_mean_and_narrows_with_more_rows():
    rng = np.random.default_rng(3)
    widths = []
    for n in (50, 500, 5000):
        a, b = rng.exponential(size=n), rng.exponential(scale=2.0, size=n)
        result = paired_bootstrap(a, b, resamples=400, seed=0)
        for key in ("a", "b", "ratio"):
            assert result[key]["low"] <= result[key]["mean"] <= result[key]["high"]
        assert result["a"]["mean"] == pytest.approx(a.mean()) and result["ratio"]["mean"] == pytest.approx(a.mean() / b.mean())
        widths.append(result["a"]["high"] - result["a"]["low"])
    assert widths[0] > widths[1] > widths[2]
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap(np.ones(3), np.ones(4))


def test_pairing_makes_the_ratio_interval_narrower_than_the_rows_spread_suggests():
    # rows of very different difficulty, the same for both models: the ratio is 0.8 on every row
    hardness = np.random.default_rng(0).lognormal(sigma=1.5, size=400)
    result = paired_bootstrap(0.8 * hardness, hardness, resamples=300, seed=0)
    assert result["ratio"]["high"] - result["ratio"]["low"] < 1e-9
    assert (result["a"]["high"] - result["a"]["low"]) / result["a"]["mean"] > 0.1


# (c), (d) the benchmark


def dataset(task_name: str, d4rl_path=None, minari_id=None):
    """The data the models were fit on for hopper-medium, other (shifted) data for hopper-random; nothing else is built."""
    if task_name == "hopper-medium":
        return synthetic_transitions(n=600, seed=0)
    if task_name == "hopper-random":
        data = synthetic_transitions(n=400, seed=7, episode_len=40)
        data.observations[:, 1:] += 0.3
        data.next_observations[:, 1:] += 0.3
        return data
    raise EmpoError(f"no dataset for {task_name}: not built (run `empo-data build {task_name}`)")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> dict[str, Path]:
    """One smoke ETM (seed 0) and one smoke FTM (seed 1: another holdout split), one epoch each."""
    task, data = get_task("hopper-medium"), dataset("hopper-medium")
    root = tmp_path_factory.mktemp("models")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_dynamics(data, task, load_model_config("etm", "smoke", {"etm": {"epochs": 1}}), root / "etm", progress=False, seed=0)
        train_dynamics(data, task, load_model_config("ftm", "smoke", {"ftm": {"max_epochs": 1}}), root / "ftm", progress=False, seed=1)
    finally:
        torch.set_num_threads(before)
    return {"etm": root / "etm", "ftm": root / "ftm"}


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.setattr(empo.data, "load_transitions", dataset)
    sys.modules.pop("claims_transition_error", None)
    import claims_transition_error

    return claims_transition_error


def test_the_benchmark_writes_paired_intervals_for_every_model_dataset_and_horizon(bench, fitted, tmp_path):
    out = tmp_path / "claims.md"
    argv = ["--task", "hopper-medium", "--models", f"etm={fitted['etm']}", f"ftm={fitted['ftm']}", "--ood", "hopper-random",
            "--horizons", "1", "5", "--samples", "40", "--starts", "15", "--resamples", "100", "--out", str(out)]
    assert bench.main(argv) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["reference"] == "ftm" and report["claim"] == {"etm": "etm", "reference": "ftm"}
    cells = {(r["model"], r["dataset"], r["split"], r["horizon"]): r for r in report["rows"]}
    assert set(cells) == {(model, dataset, split, h) for model in ("etm", "ftm")
                          for dataset, split, h in (("hopper-medium", "holdout", 1), ("hopper-medium", "in-dist", 5),
                                                    ("hopper-random", "ood", 1), ("hopper-random", "ood", 5))}
    # the seeds differ, so the holdouts do: the one-step rows are those held out by both models (fewer than --samples here)
    assert any("holdout rows differ" in note for note in report["notes"])
    assert 0 < cells["etm", "hopper-medium", "holdout", 1]["n"] < 40
    assert cells["etm", "hopper-random", "ood", 1]["n"] == 40 and cells["etm", "hopper-random", "ood", 5]["n"] == 15
    for key, row in cells.items():
        assert row["n"] == cells[("ftm", *key[1:])]["n"]  # both models on the same rows
        for figure in ("next_obs_mse", "reward_mse", "ratio_next_obs", "ratio_reward"):
            assert row[figure]["low"] <= row[figure]["mean"] <= row[figure]["high"], (key, figure)
        if key[0] == "ftm":  # the reference against itself
            assert row["ratio_next_obs"] == {"mean": 1.0, "low": 1.0, "high": 1.0}
    assert report["models"]["etm"]["kind"] == "etm" and report["models"]["etm"]["meta"]["stopped_by"] == "epochs"
    text = out.read_text()
    assert text.startswith("# Transition error with paired bootstrap intervals, hopper-medium")
    assert "- command: `python benchmarks/claims_transition_error.py --task hopper-medium" in text and "commit" in text
    assert "| etm | hopper-medium | holdout | 1 |" in text and "| ftm | hopper-random | ood | 5 |" in text
    assert "stopped_by epochs, fit_updates 5" in text and "## The claim: `etm`" in text


def test_a_missing_ood_dataset_stops_before_any_model_is_loaded(bench, fitted, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "load_dynamics", lambda *a, **k: pytest.fail("a model was loaded"))
    out = tmp_path / "claims.md"
    argv = ["--models", f"etm={fitted['etm']}", f"ftm={fitted['ftm']}", "--ood", "hopper-random", "hopper-expert", "--out", str(out)]
    assert bench.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --ood hopper-expert:") and "`empo-data build hopper-expert`" in err and err.count("\n") == 1
    assert not out.exists()


def test_the_benchmark_needs_a_reference(bench, fitted, capsys):
    assert bench.main(["--models", f"a={fitted['etm']}", f"b={fitted['etm']}"]) == 2
    assert "--reference" in capsys.readouterr().err
    assert bench.main(["--models", f"a={fitted['etm']}", f"b={fitted['etm']}", "--reference", "c"]) == 2
    assert "not among --models" in capsys.readouterr().err


def test_a_model_without_holdout_rows_gets_a_seeded_sample_said_so(bench):
    class Held:
        def __init__(self, index):
            self.holdout_index, self.meta = torch.as_tensor(index, dtype=torch.long), {"task": "hopper-medium"}

    data, notes = dataset("hopper-medium"), []
    rows, split = bench.in_distribution_rows({"a": Held([1, 2, 3]), "b": Held([])}, data, "hopper-medium", 50, 0, notes)
    assert split == "in-dist" and rows.size == 50 and "`b` saved no holdout rows" in notes[0]
    rows, split = bench.in_distribution_rows({"a": Held([1, 2, 3, 9]), "b": Held([2, 3, 9, 11])}, data, "hopper-medium", 50, 0, [])
    assert split == "holdout" and rows.tolist() == [2, 3, 9]
