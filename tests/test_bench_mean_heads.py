"""benchmarks/archive/bench_mean_heads.py: each way of training the heads learns, on the split of an ETM
fit of the same seed, and the L2 recipes put the FTM's decay into the loss."""

import sys
from pathlib import Path

import pytest
import torch

from empo.data.tasks import get_task
from tests.test_models import synthetic_transitions

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def heads(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks" / "archive"))
    sys.modules.pop("bench_mean_heads", None)
    import bench_mean_heads

    return bench_mean_heads


@pytest.mark.parametrize("name", ["etm-heads", "silu", "standard", "nll"])
def test_every_kind_of_head_learns_the_toy_dynamics(heads, name):
    task, data = get_task("hopper-medium"), synthetic_transitions()
    recipe = heads.RECIPES[name]
    untrained = heads.train_heads(recipe, task, data, seed=0, members=3, updates=0)
    trained = heads.train_heads(recipe, task, data, seed=0, members=3, updates=150)
    # the split is the ETM's of seed 0: the same rows whatever the recipe
    assert torch.equal(untrained.holdout_index, trained.holdout_index) and trained.holdout_index.numel() == len(data.qlearning()) // 5
    before = heads.score(untrained, data, {}, 2, 200, 10)["holdout"]
    after = heads.score(trained, data, {"toy": data}, 2, 200, 10)
    assert after["holdout"] < 0.5 * before and set(after) == {"holdout", "toy 1", "toy 2"}
    trained.aggregate = "mean"
    assert heads.score(trained, data, {}, 2, 200, 10)["holdout"] != after["holdout"]


def test_the_l2_recipes_add_the_ftms_decay_to_the_loss(heads):
    task, data = get_task("hopper-medium"), synthetic_transitions()
    plain = heads.train_heads(heads.RECIPES["etm-heads"], task, data, seed=0, members=2, updates=0)
    decayed = heads.train_heads(heads.RECIPES["l2x10"], task, data, seed=0, members=2, updates=0)
    decayed.load_state_dict(plain.state_dict())  # same weights and scalers: the losses differ by the decay alone
    plain, decayed = plain.double(), decayed.double()  # the decay is small beside the loss: no float32 rounding
    x = torch.randn(2, 8, task.obs_dim + task.act_dim, dtype=torch.float64)
    y = torch.randn(2, 8, task.obs_dim + 1, dtype=torch.float64)
    linears = [m for m in plain.net if isinstance(m, heads.EnsembleLinear)]
    decay = sum(0.5 * wd * m.weight.square().sum() for wd, m in zip((2.5e-5, 5e-5, 1e-4), linears, strict=True))
    assert torch.allclose(decayed.loss(x, y) - plain.loss(x, y), 10 * decay)


def test_elites_are_the_members_of_lowest_holdout_error(heads, monkeypatch):
    task, data = get_task("hopper-medium"), synthetic_transitions()
    monkeypatch.setitem(heads.RECIPES, "tiny-2of4", heads.HeadRecipe("test", members=4, elites=2, updates=40))
    model = heads.train_heads(heads.RECIPES["tiny-2of4"], task, data, seed=0, members=3, updates=999)
    assert model.members == 4 and model.elites.tolist() == sorted(model.elites.tolist()) and len(model.elites) == 2
    q = data.qlearning()
    rows = model.holdout_index
    x = torch.cat([torch.as_tensor(q.observations), torch.as_tensor(q.actions)], dim=-1)[rows]
    y = torch.cat([torch.as_tensor(q.next_observations - q.observations), torch.as_tensor(q.rewards).unsqueeze(-1)], dim=-1)[rows]
    with torch.no_grad():
        errors = (model.member_deltas(model.input_scaler(x).expand(4, -1, -1)) - y).square().mean(dim=(1, 2))
    assert set(model.elites.tolist()) == set(torch.argsort(errors)[:2].tolist())
    # the prediction is the elites' alone
    obs, act = torch.as_tensor(q.observations[:5]), torch.as_tensor(q.actions[:5])
    model.aggregate = "mean"
    with torch.no_grad():
        expected = model.member_deltas(model.input_scaler(torch.cat([obs, act], -1)).expand(4, -1, -1))[model.elites].mean(0)
    assert torch.allclose(model.predict(obs, act)[0], obs + expected[:, :-1])


def test_a_recorded_fit_counts_as_its_recipe_when_only_new_fields_at_their_defaults_are_missing(heads):
    recipe = heads.RECIPES["etm-heads"]
    recorded = {k: v for k, v in heads.dataclasses.asdict(recipe).items() if k not in ("members", "elites", "updates")}
    assert heads.same_recipe(recorded, recipe)
    assert not heads.same_recipe({**recorded, "hidden": 64}, recipe)
    assert not heads.same_recipe(recorded, heads.RECIPES["etm-heads-2k"])


def test_the_report_sets_each_recipe_beside_the_ftms_of_its_own_seeds(heads, tmp_path):
    def errors(value):
        return {"holdout": value, "toy 1": value, "toy 5": value}

    results = {
        "quick FTM|0": {"errors": {"mean": errors(1.0)}},
        "quick FTM|1": {"errors": {"mean": errors(3.0)}},
        "a|0": {"errors": {"median": errors(0.5), "mean": errors(0.25)}, "cpu_s": 60.0},
        "a|1": {"errors": {"median": errors(1.5), "mean": errors(0.75)}, "cpu_s": 60.0},
        "b|0": {"errors": {"median": errors(2.0), "mean": errors(2.0)}, "cpu_s": 120.0},
    }
    args = heads.argparse.Namespace(task="toy", recipes=["a", "b"], seeds=[0, 1], members=2, updates=10, ood=["toy"],
                                    horizon=5, samples=10, starts=3, threads=1)
    out = tmp_path / "report.md"
    out.write_text("old table\n\n## Notes by hand\nkept\n")
    heads.RECIPES.update(a=heads.HeadRecipe("recipe a"), b=heads.HeadRecipe("recipe b"))
    try:
        heads.write_report(args, results, out)
    finally:
        del heads.RECIPES["a"], heads.RECIPES["b"]
    text = out.read_text()
    assert "| quick FTM (2 seeds) | mean of elites | 2 | 2 | 2 | - |" in text
    assert "| a (seeds 0, 1) | median | 1 (0.50) | 1 (0.50) | 1 (0.50) | 1.0 |" in text
    # b has seed 0 alone: beside the FTM of seed 0, not the mean of both
    assert "| b (seed 0) | median | 2 (2.00) |" in text
    assert "old table" not in text and text.endswith("## Notes by hand\nkept\n")
