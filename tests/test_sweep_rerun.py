"""empo-sweep without --out: the same grid finds its folder (and resumes it), another grid gets
another; and the sweep folder as a TensorBoard dashboard (the layout's charts match the runs' tags)."""

import json
import re

import pytest

from empo.cli.sweep import main as sweep_main
from empo.data import get_task
from empo.data.build import build_dataset
from empo.evaluation.dashboard import DASHBOARD_SUFFIX, dashboard_layout, score_tag, write_dashboard
from empo.sweep import SPEC_YAML, SweepSpec, default_sweep_dir, find_sweep_dir, grid_hash

SMOKE = [
    "--tasks",
    "hopper-random",
    "--algos",
    "mopo",
    "--presets",
    "smoke",
    "--set",
    "training.epochs=2",
    "--no-progress",
]


@pytest.fixture
def tiny_dataset():
    build_dataset(get_task("hopper-random"), size=1500, progress=False, log=lambda m: None)


def test_the_default_folder_is_named_after_the_grid(tmp_path):
    spec = SweepSpec(tasks=["hopper-medium", "walker2d-medium"], seeds=[0, 1], presets=["quick"])
    assert re.fullmatch(r"runs/sweep-quick-[0-9a-f]{8}", default_sweep_dir(spec).as_posix())
    # the same runs in another order, or run another way, are the same grid
    same = SweepSpec(
        tasks=["walker2d-medium", "hopper-medium"],
        seeds=[1, 0],
        presets=["quick"],
        workers=4,
        device="cuda",
        overrides={"runtime": {"tf32": False}},
    )
    assert default_sweep_dir(same) == default_sweep_dir(spec)
    # other runs are not
    for other in (
        SweepSpec(tasks=["hopper-medium"], seeds=[0, 1], presets=["quick"]),
        SweepSpec(tasks=["hopper-medium", "walker2d-medium"], seeds=[0, 1, 2], presets=["quick"]),
        SweepSpec(tasks=["hopper-medium", "walker2d-medium"], seeds=[0, 1], presets=["quick"], algos=["empo"]),
        SweepSpec(
            tasks=["hopper-medium", "walker2d-medium"],
            seeds=[0, 1],
            presets=["quick"],
            overrides={"training": {"epochs": 3}},
        ),
    ):
        assert grid_hash(other) != grid_hash(spec)
    assert default_sweep_dir(SweepSpec(tasks=["hopper-medium"], presets=["quick", "smoke"]), tmp_path).name.startswith(
        "sweep-quick+smoke-"
    )
    # a sweep started before folders were named after their grid (sweep-<time>) is found by its saved spec
    from empo.config import save_yaml

    old = tmp_path / "sweep-20261201-101010"
    old.mkdir()
    save_yaml(spec, old / SPEC_YAML)
    (tmp_path / "sweep-20261202-101010").mkdir()  # no spec: not a sweep of this grid
    (tmp_path / "sweep-broken").mkdir()
    (tmp_path / "sweep-broken" / SPEC_YAML).write_text("tasks: [hopper-medium]\nworkerz: 2\n")
    assert find_sweep_dir(same, tmp_path) == old
    assert find_sweep_dir(SweepSpec(tasks=["hopper-medium"]), tmp_path) == default_sweep_dir(
        SweepSpec(tasks=["hopper-medium"]), tmp_path
    )


def test_the_same_sweep_twice_without_out_resumes_one_folder(tmp_path, tiny_dataset, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert sweep_main([*SMOKE, "--seeds", "0", "1"]) == 0
    said = capsys.readouterr().out
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 1 and re.fullmatch(r"sweep-smoke-[0-9a-f]{8}", folders[0].name)
    assert f"starting a new sweep in runs/{folders[0].name}: 2 runs" in said
    summaries = {p: p.stat().st_mtime_ns for p in folders[0].glob("*/summary.json")}
    assert len(summaries) == 2
    # the same command (the seeds in another order, more workers): the same folder, nothing run again
    assert sweep_main([*SMOKE, "--seeds", "1", "0", "--workers", "2"]) == 0
    said = capsys.readouterr().out
    assert sorted((tmp_path / "runs").iterdir()) == folders
    assert f"resuming the sweep in runs/{folders[0].name}: 2 finished runs skipped, 0 of 2 to run" in said
    assert {p: p.stat().st_mtime_ns for p in folders[0].glob("*/summary.json")} == summaries
    runs = json.loads((folders[0] / "sweep.json").read_text())["runs"]
    assert [r["status"] for r in runs] == ["skipped (finished before)"] * 2
    # another grid: another folder
    assert sweep_main([*SMOKE, "--seeds", "2"]) == 0
    assert len(list((tmp_path / "runs").iterdir())) == 2
    assert "starting a new sweep in runs/sweep-smoke-" in capsys.readouterr().out
    # --out still picks the folder
    assert sweep_main([*SMOKE, "--seeds", "2", "--out", str(tmp_path / "mine")]) == 0
    assert (tmp_path / "mine" / "hopper-random-mopo-smoke-s2" / "summary.json").is_file()
    assert len(list((tmp_path / "runs").iterdir())) == 2


def test_the_layout_has_a_chart_per_task_and_algorithm_matching_the_runs_tags(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2

    groups = {(t, a, "quick") for t in ("hopper-medium", "walker2d-medium") for a in ("empo", "mopo+sb3-sac")}
    first = write_dashboard(tmp_path, groups)
    path = write_dashboard(tmp_path, groups)  # written again: replaces the first
    assert path.name.endswith(DASHBOARD_SUFFIX) and not first.exists()
    assert list(tmp_path.glob("events.out.tfevents.*")) == [path]
    events = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    events.Reload()
    tensor = events.Tensors("custom_scalars__config__")[-1].tensor_proto
    layout = layout_pb2.Layout.FromString(tensor.string_val[0])
    assert layout == dashboard_layout(groups)
    charts = {c.title: c.multiline.tag[0] for cat in layout.category for c in cat.chart}
    assert sorted(charts) == [
        "hopper-medium empo",
        "hopper-medium mopo+sb3-sac",
        "walker2d-medium empo",
        "walker2d-medium mopo+sb3-sac",
    ]
    # each chart's regex matches exactly its own runs' score tags (tensorboard matches from the start)
    tags = [
        score_tag(t, a, "quick", agent)
        for t in ("hopper-medium", "walker2d-medium")
        for a, agent in (("empo", "sac"), ("mopo", "sb3-sac"), ("mopo", "sac"))
    ]
    for title, regex in charts.items():
        matched = [tag for tag in tags if re.match(regex, tag)]
        assert matched == [f"score/{title.replace(' ', '/')}/quick"], (title, matched)
    assert not any(re.match(regex, "eval/normalized_score") for regex in charts.values())
    # with several presets, a chart per preset: a smoke run is not a seed of the quick runs
    layout = dashboard_layout({("hopper-medium", "empo", "quick"), ("hopper-medium", "empo", "smoke")})
    charts = {c.title: c.multiline.tag[0] for cat in layout.category for c in cat.chart}
    assert sorted(charts) == ["hopper-medium empo (quick)", "hopper-medium empo (smoke)"]
    assert [
        t
        for t in ("score/hopper-medium/empo/quick", "score/hopper-medium/empo/smoke")
        if re.match(charts["hopper-medium empo (smoke)"], t)
    ] == ["score/hopper-medium/empo/smoke"]


def test_a_sweep_folder_is_a_dashboard_of_its_runs(tmp_path, tiny_dataset):
    """A real smoke sweep: the layout in the folder, each run's score under the tag its chart
    matches, and the finished runs' hparams with their final scores."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
    from tensorboard.plugins.custom_scalar import layout_pb2

    out = tmp_path / "sweep"
    assert sweep_main([*SMOKE, "--seeds", "0", "1", "--out", str(out)]) == 0
    runs = EventMultiplexer().AddRunsFromDirectory(str(out))
    runs.Reload()
    layout = layout_pb2.Layout.FromString(runs.Tensors(".", "custom_scalars__config__")[-1].tensor_proto.string_val[0])
    (chart,) = [c for cat in layout.category for c in cat.chart]
    regex = chart.multiline.tag[0]
    for seed in (0, 1):
        run = f"hopper-random-mopo-smoke-s{seed}/tb"
        tags = runs.GetAccumulator(run).Tags()
        grouped = [tag for tag in tags["scalars"] if re.match(regex, tag)]
        assert grouped == ["score/hopper-random/mopo/smoke"], tags["scalars"]
        assert len(runs.Scalars(run, grouped[0])) == 2  # an epoch each
        # hparams: the session's start and the final scores as its metrics
        assert "_hparams_/session_start_info" in runs.PluginRunToTagToContent("hparams")[run]
        summary = json.loads((out / f"hopper-random-mopo-smoke-s{seed}" / "summary.json").read_text())
        final = runs.Scalars(run, "hparams/final_eval_normalized_score")[-1].value
        assert final == pytest.approx(summary["final_eval_normalized_score"], rel=1e-5)
