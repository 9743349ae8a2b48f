"""Shipped OPE policy suites: graded choice, the suite folder and index, cached true values."""

import json

import numpy as np
import pytest
import torch

from empo.data.tasks import get_task
from empo.errors import EmpoError
from empo.evaluation import ope, suites


def test_graded_spreads_the_choice_over_returns():
    returns = [0.0, 1.0, 2.0, 2.1, 2.2, 9.0, 10.0]
    assert suites.graded(returns, 3) == [0, 5, 6] or suites.graded(returns, 3) == [0, 4, 6]
    assert suites.graded(returns, 2) == [0, 6]
    assert suites.graded(returns, 10) == [0, 1, 2, 3, 4, 5, 6]  # fewer than asked: all, by return


def make_snapshots(folder, returns):
    shipped = torch.load(suites.suites_root().parent / "halfcheetah-medium.pt", weights_only=True)
    for i, value in enumerate(returns):
        meta = {**shipped["meta"], "level": "suite", "train_steps": (i + 1) * 1000, "stochastic_return": value}
        torch.save({"state_dict": shipped["state_dict"], "meta": meta}, folder / f"halfcheetah-step{(i + 1) * 1000:07d}.pt")


def test_build_read_and_use_a_suite(tmp_path, monkeypatch):
    source = tmp_path / "run" / "suite"
    source.mkdir(parents=True)
    make_snapshots(source, [100.0, 5000.0, 2500.0, 2600.0])
    root = tmp_path / "suites"
    index = suites.build_suite("halfcheetah", [tmp_path / "run"], count=3, episodes=2, out_root=root, progress=False,
                               log=lambda *_: None)
    names = [p["name"] for p in index["policies"]]
    assert names[0] == "random" and len(names) == 4  # random + 3 graded snapshots, lowest to highest return
    assert [p["training_return"] for p in index["policies"][1:]] in ([100.0, 2500.0, 5000.0], [100.0, 2600.0, 5000.0])
    saved = json.loads((root / "halfcheetah-index.json").read_text())
    assert saved["true_values"]["episodes"] == 2 and all(np.isfinite(p["true_value"]) for p in saved["policies"])
    assert not list(root.glob(".*staging")) and len(list(root.glob("halfcheetah-step*.pt"))) == 3
    # `--policies suite` reads it, and OPE takes the cached values instead of running the episodes again
    monkeypatch.setattr(suites, "suites_root", lambda: root)
    task = get_task("halfcheetah-medium")
    policies = ope.load_policies(["suite"], task)
    assert [p.name for p in policies] == names

    def no_episodes(*args, **kwargs):
        raise AssertionError("cached true values were recomputed")

    monkeypatch.setattr(ope, "true_values", no_episodes)
    values, errors, cached = ope.true_values_cached(policies, task, episodes=2)
    assert cached == 4 and values.tolist() == [p["true_value"] for p in saved["policies"]]
    with pytest.raises(AssertionError, match="recomputed"):  # other settings: computed again
        ope.true_values_cached(policies, task, episodes=3)


def test_a_missing_suite_says_how_to_build_one(tmp_path):
    with pytest.raises(EmpoError, match=r"no policy suite for walker2d .*empo-data suite walker2d --from DIR"):
        suites.read_suite("walker2d", root=tmp_path)
    with pytest.raises(EmpoError, match="a suite needs at least 2"):
        suites.build_suite("hopper", [tmp_path], out_root=tmp_path / "out", progress=False)


@pytest.mark.parametrize("env, spread", [("halfcheetah", 1000), ("hopper", 400), ("walker2d", 500)])
def test_a_shipped_suite(env, spread):
    index = suites.read_suite(env)
    policies = index["policies"]
    assert len(policies) >= 10 and index["true_values"]["gamma"] == 0.995
    for entry in policies[1:]:
        assert (suites.suites_root() / entry["file"]).is_file()
    true = [p["true_value"] for p in policies]
    assert true[0] == min(true) and max(true) - min(true) > spread  # graded: random lowest, a wide spread


def test_two_runs_and_a_repeated_step_make_distinct_files(tmp_path):
    for seed in (0, 1):
        folder = tmp_path / f"run{seed}" / "suite"
        folder.mkdir(parents=True)
        make_snapshots(folder, [100.0 + 1000 * seed, 1500.0 + 1000 * seed])
        blob = torch.load(folder / "halfcheetah-step0002000.pt", weights_only=True)
        blob["meta"]["seed"] = seed
        torch.save(blob, folder.parent / "halfcheetah-best.pt")  # the same step as a snapshot: one actor
        for file in folder.glob("*.pt"):
            b = torch.load(file, weights_only=True)
            b["meta"]["seed"] = seed
            torch.save(b, file)
    root = tmp_path / "suites"
    index = suites.build_suite("halfcheetah", [tmp_path / "run0", tmp_path / "run1"], count=10, episodes=1, out_root=root,
                               progress=False, log=lambda *_: None)
    files = [p["file"] for p in index["policies"][1:]]
    assert len(files) == 4 == len(set(files)) and all("-s0-" in f or "-s1-" in f for f in files)
    assert sorted(p.name for p in root.glob("halfcheetah-*.pt")) == sorted(files)


def test_random_actions_restart_for_every_use():
    task = get_task("hopper-medium")
    (policy,) = ope.load_policies(["random"], task)
    obs = torch.zeros(4, task.obs_dim)
    ope.restart([policy])
    first = policy.act(obs)
    assert not torch.equal(policy.act(obs), first)  # a stream of draws
    ope.restart([policy])
    assert torch.equal(policy.act(obs), first)
