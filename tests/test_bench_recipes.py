"""benchmarks/archive/bench_etm_recipes.py's bookkeeping: a recorded fit continues to new marks, and a
folder fit with other settings than the recipe's is refused instead of reported under its name."""

import argparse
import json
import sys
from pathlib import Path

import pytest

from empo.data.tasks import get_task
from tests.test_models import synthetic_transitions

ROOT = Path(__file__).resolve().parents[1]

TINY = {"hidden_size": 16, "hidden_layers": 1, "batch_size": 32, "steps_per_epoch": 2, "num_negatives": 2,
        "holdout_eval_size": 32, "train_langevin": {"steps": 2}, "rollout_langevin": {"steps": 2}, "eval_langevin": {"steps": 2}}


@pytest.fixture
def recipes(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks" / "archive"))
    sys.modules.pop("bench_etm_recipes", None)
    import bench_etm_recipes

    monkeypatch.setitem(bench_etm_recipes.RECIPES, "tiny", ("a tiny test recipe", TINY))
    return bench_etm_recipes


def run(recipes, tmp_path, budget_s, marks_s):
    args = argparse.Namespace(task="hopper-medium", work=tmp_path, budget_min=budget_s / 60, marks=[m / 60 for m in marks_s],
                              horizon=2, samples=50, starts=5, seed=0)
    return recipes.run_recipe("tiny", args, get_task("hopper-medium"), synthetic_transitions(), {})


def test_a_recorded_fit_continues_to_new_marks_and_an_edited_recipe_is_refused(recipes, tmp_path, monkeypatch):
    state = run(recipes, tmp_path, 0.05, [0.05])
    assert state["done"] and [p["mark_s"] for p in state["points"]] == [0.05]
    epochs_before = state["epoch"]
    # the same marks again: reused, nothing refit
    assert run(recipes, tmp_path, 0.05, [0.05])["epoch"] == epochs_before
    # a larger budget goes on from the checkpoint: the old point kept, a new one later in the fit
    state = run(recipes, tmp_path, 3.0, [0.05, 3.0])
    assert [p["mark_s"] for p in state["points"]] == [0.05, 3.0] and state["epoch"] > epochs_before
    assert json.loads((tmp_path / "hopper-medium" / "tiny" / "curve.json").read_text())["epoch"] == state["epoch"]
    # the recipe's settings changed since the fit: refused, naming the setting
    monkeypatch.setitem(recipes.RECIPES, "tiny", ("a tiny test recipe", {**TINY, "num_negatives": 3}))
    with pytest.raises(SystemExit, match="num_negatives"):
        run(recipes, tmp_path, 9.0, [9.0])


def test_a_finished_fit_is_rescored_at_other_step_sizes(recipes, tmp_path):
    state = run(recipes, tmp_path, 0.05, [0.05])
    args = argparse.Namespace(task="hopper-medium", work=tmp_path, horizon=2, samples=50, starts=5, seed=0,
                              eval_steps=[0, 2], eval_step_sizes=[0.01, 0.1])
    recipes.score_eval_steps("tiny", args, synthetic_transitions(), {}, state)
    scored = state["by_eval_steps"]
    # no step from a fixed start predicts nothing; each step size is its own sampler, so its own error
    assert set(scored) == {"2@0.01", "2@0.1"} and scored["2@0.01"]["holdout"] != scored["2@0.1"]["holdout"]
    assert sorted(["2", "2@0.1", "2@0.01", "0"], key=recipes.parse_eval_key) == ["0", "2@0.01", "2@0.1", "2"]
    # kept in curve.json, so a rerun does not score them again
    assert json.loads((tmp_path / "hopper-medium" / "tiny" / "curve.json").read_text())["by_eval_steps"] == scored


def test_the_sampler_benchmark_sets_every_start_itself():
    # a model whose own evaluation sampler starts from its heads (quick-warm, quick-accurate) was
    # measured from them under the name "zeros" before the start was set explicitly
    from benchmarks.archive.bench_sampler_steps import sampler_for
    from empo.models import LangevinConfig

    base = LangevinConfig(steps=10, noise=0.5, init="mean_head", chains=2, step_size_start=0.01, step_size_end=1e-5)
    starts = {start: sampler_for(base, 5, start) for start in ("zeros", "ftm-warm", "chains-4", "head-warm")}
    assert {start: (s.init, s.chains) for start, s in starts.items()} == {
        "zeros": ("zeros", 1), "ftm-warm": ("zeros", 1), "chains-4": ("uniform", 4), "head-warm": ("mean_head", 1)}
    assert all(s.steps == 5 and s.noise == 0.0 and s.step_size_start == 0.01 for s in starts.values())
