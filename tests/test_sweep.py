"""empo-sweep and empo-report: grid and spec validation, the local and Ray engines on smoke runs,
restarts, the model-cache lock, and the report's statistics on hand-computed inputs."""

import json
import subprocess
import sys

import numpy as np
import pytest

from empo.cli.report import main as report_main
from empo.cli.sweep import main as sweep_main
from empo.data import get_task
from empo.data.build import build_dataset
from empo.errors import EmpoError
from empo.evaluation.report import bootstrap_mean_interval, collect_runs, iqm, optimality_gap, summarize
from empo.sweep import INTERRUPTED_LINE, SweepSpec, expand, load_spec

SMOKE = ["--tasks", "hopper-random", "--algos", "mopo", "--presets", "smoke", "--set", "training.epochs=2", "--no-progress"]


@pytest.fixture
def tiny_dataset():
    build_dataset(get_task("hopper-random"), size=1500, progress=False, log=lambda m: None)


def test_grid_and_spec_validation(tmp_path, capsys):
    runs = expand(SweepSpec(tasks=["hopper-medium", "walker2d-medium"], algos=["empo", "mopo"], seeds=[0, 1], presets=["smoke"]))
    assert len(runs) == 8 and runs[0].run_id == "hopper-medium-empo-smoke-s0"
    # seed-major: a sweep stopped early has every task and algorithm at seed 0 first
    assert [r.run_id for r in runs[:4]] == [f"{t}-{a}-smoke-s0" for t in ("hopper-medium", "walker2d-medium") for a in ("empo", "mopo")]
    (tmp_path / "bad.yaml").write_text("tasks: [hopper-medium]\nworkerz: 2\n")
    with pytest.raises(EmpoError, match="unknown key 'workerz'.*did you mean 'workers'"):
        load_spec(tmp_path / "bad.yaml")
    with pytest.raises(EmpoError, match="unknown task 'hopper-medum'"):
        expand(SweepSpec(tasks=["hopper-medum"]))
    with pytest.raises(EmpoError, match="epochz"):
        expand(SweepSpec(tasks=["hopper-medium"], overrides={"model": {"overrides": {"etm": {"epochz": 1}}}}))
    assert sweep_main(["--tasks", "hopper-medium", "--workers", "0", "--out", str(tmp_path / "s")]) == 2
    assert not (tmp_path / "s").exists()
    # a repeated seed would be one run folder written twice
    with pytest.raises(EmpoError, match="seeds lists 0 more than once"):
        load_spec_text(tmp_path, "tasks: [hopper-medium]\nseeds: [0, 1, 0]\n")
    # a misspelt 'tasks' is named, not reported as missing tasks
    (tmp_path / "task.yaml").write_text("task: [hopper-medium]\n")
    assert sweep_main([str(tmp_path / "task.yaml"), "--out", str(tmp_path / "s")]) == 2
    assert "unknown key 'task' (did you mean 'tasks'?)" in capsys.readouterr().err


def load_spec_text(tmp_path, text):
    (tmp_path / "spec.yaml").write_text(text)
    return load_spec(tmp_path / "spec.yaml")


def test_local_sweep_runs_skips_and_resumes(tmp_path, tiny_dataset, capsys):
    from empo.loop.config import resolve_config
    from empo.pipeline import run_or_resume, train_agent

    out = tmp_path / "sweep"
    # seed 1 was interrupted after its first epoch: the sweep continues it
    config = resolve_config("hopper-random", "mopo", "smoke", 1, {"training": {"epochs": 2}})
    train_agent(config, out / "hopper-random-mopo-smoke-s1", device="cpu", progress=False, stop_after=1, log=lambda m: None)
    # a run folder is continued only with the settings it was started with (say, after a preset's YAML changed)
    changed = resolve_config("hopper-random", "mopo", "smoke", 1, {"training": {"epochs": 3}, "runtime": {"tf32": False}})
    with pytest.raises(EmpoError, match=r"other settings \(training.epochs: 2 -> 3\); move the folder away"):
        run_or_resume(changed, out / "hopper-random-mopo-smoke-s1", device="cpu", progress=False)
    assert sweep_main([*SMOKE, "--seeds", "0", "1", "--workers", "2", "--out", str(out)]) == 0
    index = json.loads((out / "sweep.json").read_text())
    assert [r["status"] for r in index["runs"]] == ["finished", "finished"]
    assert all(r["epochs"] == 2 and r["final_normalized_score"] is not None for r in index["runs"])
    resumed = json.loads((out / "hopper-random-mopo-smoke-s1" / "summary.json").read_text())
    assert resumed["epochs"] == 2 and "resuming" in (out / "hopper-random-mopo-smoke-s1" / "log.txt").read_text()
    # the index's "final" is the finished policy's own evaluation, as in the report
    assert index["runs"][1]["final_eval_normalized_score"] == resumed["final_eval_normalized_score"] is not None
    said = capsys.readouterr().out
    for seed in (0, 1):  # each state change of a pooled run is one line: running (a worker started it), then finished
        assert 0 <= said.index(f"hopper-random-mopo-smoke-s{seed}: running") < said.index(f"hopper-random-mopo-smoke-s{seed}: finished")
    # again, from the folder alone and without checkpoints (as committed: benchmarks/sweeps/.gitignore):
    # nothing is run twice
    for run in index["runs"]:
        (out / run["run_id"] / "checkpoint.pt").unlink()
    assert sweep_main(["--out", str(out), "--no-progress"]) == 0
    assert [r["status"] for r in json.loads((out / "sweep.json").read_text())["runs"]] == ["skipped (finished before)"] * 2
    said = capsys.readouterr().out
    assert ": running" not in said  # a sequential sweep announces each run it starts: here none ran
    with pytest.raises(EmpoError, match=r"mopo.penalty_coef: 1.0 -> 3.0"):  # a finished run too
        run_or_resume(resolve_config("hopper-random", "mopo", "smoke", 1, {"training": {"epochs": 2}, "mopo": {"penalty_coef": 3.0}}),
                      out / "hopper-random-mopo-smoke-s1", device="cpu", progress=False)
    # another algorithm's section does not count: this MOPO run never read EMPO's settings
    same = resolve_config("hopper-random", "mopo", "smoke", 1, {"training": {"epochs": 2}, "empo": {"penalty_coef": 9.0}})
    assert run_or_resume(same, out / "hopper-random-mopo-smoke-s1", device="cpu", progress=False)[1] == "finished before"
    episodes = resumed["final_eval"]["episodes"]
    assert f"s1: skipped (finished before) (final {resumed['final_eval_normalized_score']:.1f} ({episodes} episodes), last epoch" in said
    # and the report reads the sweep
    assert report_main([str(out)]) == 0
    assert (out / "report" / "curves-hopper-random.png").is_file() and "| hopper-random | mopo | smoke | 2" in capsys.readouterr().out


def test_a_run_folder_is_checked_against_its_model_settings_too(tmp_path):
    """The model preset's YAML can change under the same preset name: the folder's model_config.yaml
    is compared with the settings the run would now fit (inference samplers applied as the run saved them)."""
    from empo.config import save_yaml, to_dict
    from empo.loop.config import resolve_config
    from empo.models.config import with_samplers
    from empo.pipeline import check_same_config, model_config_for

    samplers = {"etm": {"rollout_langevin": {"steps": 3}}}
    config = resolve_config("hopper-medium", "empo", "smoke", 0, {"model": {"samplers": samplers}})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_yaml(config.to_dict(), run_dir / "config.yaml")
    saved = to_dict(with_samplers(model_config_for(config), samplers))
    saved["ftm"]["batch_size"] += 1  # the other model kind's settings do not count
    save_yaml(saved, run_dir / "model_config.yaml")
    check_same_config(config, run_dir)
    saved["etm"]["epochs"] += 1
    save_yaml(saved, run_dir / "model_config.yaml")
    with pytest.raises(EmpoError, match=r"other settings \(model: etm.epochs: (\d+) -> (\d+)\)"):
        check_same_config(config, run_dir)
    # a model given by folder (--model-dir) brings its own settings: not compared
    (run_dir / "run.json").write_text(json.dumps({"model_dir": "/somewhere/etm"}))
    check_same_config(config, run_dir)


def test_a_failing_run_is_recorded_and_the_others_go_on(tmp_path, tiny_dataset):
    # seed 0's run folder is blocked by a file of that name: that run fails, seed 1 finishes
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "hopper-random-mopo-smoke-s0").write_text("not a folder")
    assert sweep_main([*SMOKE, "--seeds", "0", "1", "--out", str(out)]) == 1
    runs = {r["run_id"]: r for r in json.loads((out / "sweep.json").read_text())["runs"]}
    assert runs["hopper-random-mopo-smoke-s0"]["status"] == "failed" and runs["hopper-random-mopo-smoke-s0"]["error"]
    assert runs["hopper-random-mopo-smoke-s1"]["status"] == "finished"


def test_ray_engine_runs_a_smoke_sweep(tmp_path, tiny_dataset, capsys):
    out = tmp_path / "ray"
    assert sweep_main([*SMOKE, "--seeds", "0", "1", "--engine", "ray", "--workers", "2", "--out", str(out), "--no-progress"]) == 0
    assert [r["status"] for r in json.loads((out / "sweep.json").read_text())["runs"]] == ["finished", "finished"]
    said = capsys.readouterr().out
    for seed in (0, 1):
        assert 0 <= said.index(f"hopper-random-mopo-smoke-s{seed}: running") < said.index(f"hopper-random-mopo-smoke-s{seed}: finished")


LOCK_CHILD = """
import sys
from empo.data import get_task, load_transitions
from empo.models import load_model_config
from empo.pipeline import cached_model
import torch
task = get_task("hopper-random")
said = []
cached_model(load_model_config("ftm", "smoke", {"ftm": {"max_epochs": 3}}), task, load_transitions(task.name), 0,
             torch.device("cpu"), progress=False, log=said.append)
print("|".join(said))
"""


def test_two_processes_never_fit_the_same_model_at_once(tmp_path, tiny_dataset):
    procs = [subprocess.Popen([sys.executable, "-c", LOCK_CHILD], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    trained = [o for o in outputs if "training the ftm model" in o]
    assert len(trained) == 1, outputs  # one fit; the other process loaded what it wrote
    assert sum("using the cached ftm model" in o for o in outputs) == 1


BUILD_CHILD = """
from empo.data import ensure_dataset
said = []
data = ensure_dataset("hopper-random", log=said.append, size=1200, progress=False)
print(len(data), "|".join(said))
"""


def test_two_processes_never_build_the_same_dataset_at_once(tmp_path):
    """A sweep's workers on an unbuilt task: one builds it, the other waits and loads that dataset."""
    procs = [subprocess.Popen([sys.executable, "-c", BUILD_CHILD], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert sum("building it now" in o for o in outputs) == 1, outputs
    assert all(o.startswith("1200 ") for o in outputs), outputs  # both read the one full dataset


def test_report_statistics_on_hand_computed_inputs(tmp_path):
    assert iqm(np.arange(1, 9)) == pytest.approx(4.5)  # the middle four: 3, 4, 5, 6
    assert iqm([0.0, 1.0, 1.0, 100.0]) == pytest.approx(1.0)
    assert optimality_gap([0.5, 1.2, 0.9]) == pytest.approx((0.5 + 0.0 + 0.1) / 3)
    assert bootstrap_mean_interval(np.array([2.0, 2.0, 2.0])) == (2.0, 2.0)
    low, high = bootstrap_mean_interval(np.array([0.0, 10.0]))
    assert 0.0 <= low < 5.0 < high <= 10.0
    # two hand-written runs of one task and algorithm
    for seed, (final, last10, best) in enumerate([(10.0, 12.0, 30.0), (20.0, 16.0, 40.0)]):
        run = tmp_path / f"r{seed}"
        run.mkdir()
        (run / "summary.json").write_text(json.dumps({
            "task": "hopper-medium", "algo": "empo", "preset": "quick", "seed": seed, "status": "finished",
            "final_normalized_score": final, "last10_mean_normalized_score": last10, "best_normalized_score": best,
            "wall_time_s": 3600.0}))
        (run / "progress.csv").write_text("epoch,updates,normalized_score\n1,1000,5.0\n2,2000," + str(final) + "\n")
    from empo.evaluation.report import write_report

    text = write_report(collect_runs([tmp_path]), tmp_path / "report").read_text()
    assert "| hopper-medium | 62.8 +- 38.1 | 84.7 +- 9.3 | 103.6 +- 1.0 |" in text  # published figures, marked as such
    assert "not a like-for-like comparison" in text and (tmp_path / "report" / "curves-hopper-medium.png").is_file()
    rows = summarize(collect_runs([tmp_path]))
    assert len(rows) == 1 and rows[0]["seeds"] == 2
    assert rows[0]["final_normalized_score"]["mean"] == 15.0
    assert rows[0]["final_normalized_score"]["std"] == pytest.approx(np.std([10.0, 20.0], ddof=1))
    assert rows[0]["best_normalized_score"]["mean"] == 35.0 and rows[0]["wall_time_h"] == 1.0
    # a run of another agent is its own row, not a third seed of the built-in SAC's
    other = tmp_path / "r-sb3"
    other.mkdir()
    (other / "summary.json").write_text(json.dumps({
        "task": "hopper-medium", "algo": "empo", "agent": "sb3-sac", "preset": "quick", "seed": 0, "status": "finished",
        "final_normalized_score": 50.0, "last10_mean_normalized_score": 50.0, "best_normalized_score": 50.0, "wall_time_s": 60.0}))
    rows = summarize(collect_runs([tmp_path]))
    assert [(r["algo"], r["seeds"]) for r in rows] == [("empo", 2), ("empo (sb3-sac)", 1)]
    (tmp_path / "a-file").write_text("")
    assert report_main([str(tmp_path / "r0"), "--out", str(tmp_path / "a-file")]) == 2  # a file where the report folder goes
    # a run given again (its sweep folder and itself) counts once, not as another seed
    assert len(collect_runs([tmp_path, tmp_path / "r0"])) == len(collect_runs([tmp_path]))
    # a sweep's runs without results are said, and a sweep with none is not called "no runs"
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "sweep.json").write_text(json.dumps({"runs": [{"run_id": "hopper-medium-mopo-quick-s0", "status": "failed", "error": "boom"}]}))
    with pytest.raises(EmpoError, match="a sweep folder whose 1 runs have no results yet"):
        collect_runs([sweep])
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "summary.json").write_text((tmp_path / "r0" / "summary.json").read_text())
    (tmp_path / "odd" / "progress.csv").write_text("epoch,score\n1,2\n")
    with pytest.raises(EmpoError, match="no column normalized_score, updates"):
        collect_runs([tmp_path / "odd"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmpoError, match="no runs here"):
        collect_runs([tmp_path / "empty"])
    with pytest.raises(EmpoError, match="no such folder"):
        collect_runs([tmp_path / "missing"])


def test_the_report_keeps_runs_of_other_settings_apart(tmp_path, capsys):
    """Seeds are pooled only when the runs differ in nothing else (a sweep moved or pooled from two
    folders after a preset changed, say); the differing settings name each group."""
    from empo.config import save_yaml
    from empo.loop.config import resolve_config

    for seed, coef in [(0, 5.0), (1, 0.5), (2, 0.5)]:
        run = tmp_path / f"walker-s{seed}"
        run.mkdir()
        (run / "summary.json").write_text(json.dumps({
            "task": "walker2d-medium", "algo": "empo", "preset": "quick", "seed": seed, "status": "finished",
            "final_eval_normalized_score": 10.0 * seed, "wall_time_s": 60.0}))
        # another algorithm's section and the runtime differ too: they do not split the runs
        overrides = {"empo": {"penalty_coef": coef}, "mopo": {"penalty_coef": 1.0 + seed}, "runtime": {"tf32": seed == 1}}
        save_yaml(resolve_config("walker2d-medium", "empo", "quick", seed, overrides).to_dict(), run / "config.yaml")
    # an older run's config.yaml lacks keys added since: their defaults fill in, no split for that
    old = resolve_config("walker2d-medium", "empo", "quick", 2, {"empo": {"penalty_coef": 0.5}}).to_dict()
    del old["agent"]
    save_yaml(old, tmp_path / "walker-s2" / "config.yaml")
    rows = summarize(collect_runs([tmp_path]))
    assert [(r["algo"], r["seeds"]) for r in rows] == [("empo [empo.penalty_coef=0.5]", 2), ("empo [empo.penalty_coef=5.0]", 1)]
    assert rows[0]["final_eval_normalized_score"]["mean"] == 15.0
    assert "walker2d-medium empo (quick): its runs differ in empo.penalty_coef; reported apart" in capsys.readouterr().out


def test_ctrl_c_stops_a_sequential_sweep_and_records_the_run(tmp_path, monkeypatch):
    import empo.sweep as sweep

    calls = []

    def interrupted(run, sweep_dir, threads, device):
        calls.append(run.run_id)
        return {"status": "interrupted", "error": "KeyboardInterrupt: ", "seconds": 0.1}

    monkeypatch.setattr(sweep, "run_one", interrupted)
    spec = SweepSpec(tasks=["hopper-random"], algos=["mopo"], seeds=[0, 1], presets=["smoke"])
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(spec, tmp_path / "s", progress=False, log=lambda m: None)
    assert calls == ["hopper-random-mopo-smoke-s0"]  # the second run never started
    runs = json.loads((tmp_path / "s" / "sweep.json").read_text())["runs"]
    assert [r["status"] for r in runs] == ["interrupted", "pending"]


def test_a_signal_to_the_main_process_alone_stops_a_pool_sweep(tmp_path, tiny_dataset):
    """``kill -INT`` (or a scheduler's SIGTERM) reaches the sweep's main process only, not its workers
    as a terminal's Ctrl-C does: the workers must still stop, keep their checkpoints and start nothing
    queued behind them."""
    import contextlib
    import os
    import signal
    import time

    out = tmp_path / "sweep"
    command = [sys.executable, "-m", "empo.cli.sweep", "--tasks", "hopper-random", "--algos", "mopo", "--presets", "smoke",
               "--set", "training.epochs=100000", "--seeds", "0", "1", "2", "--workers", "2", "--no-progress", "--out", str(out)]
    # its own session, so that a failing test can end the workers it leaves behind; SIGINT at its default,
    # since a suite started in the background (`.ci/run &`, nohup) hands its children SIGINT ignored, and
    # Python keeps an inherited SIG_IGN: such a sweep is stopped by SIGTERM, not by `kill -INT`
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        running = [out / f"hopper-random-mopo-smoke-s{seed}" / "checkpoint.pt" for seed in (0, 1)]
        deadline = time.time() + 240
        while not all(path.is_file() for path in running) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert all(path.is_file() for path in running), "the runs never checkpointed"
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=120)[0]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, output
    index = json.loads((out / "sweep.json").read_text())["runs"]
    assert "resumes from its last checkpoint" in index[0]["error"]
    runs = {r["run_id"]: r["status"] for r in index}
    assert runs == {"hopper-random-mopo-smoke-s0": "interrupted", "hopper-random-mopo-smoke-s1": "interrupted",
                    "hopper-random-mopo-smoke-s2": "pending"}, output
    assert not (out / "hopper-random-mopo-smoke-s2").exists()  # queued behind them, never started
    for seed in (0, 1):  # the stop is logged as one line, not as a traceback
        log = (out / f"hopper-random-mopo-smoke-s{seed}" / "log.txt").read_text()
        assert INTERRUPTED_LINE in log and "Traceback" not in log, log


def test_a_run_still_going_is_not_pooled_with_finished_ones(tmp_path):
    """A sweep reported part way: a run at epoch 3 of 120 has a 'final' score that is only its latest
    epoch's; it must not enter the finished runs' statistics or the cross-task IQM."""
    from empo.evaluation.report import aggregate, curve_label, write_report

    for name, status, final, epochs in [("done0", "finished", 10.0, 120), ("done1", "finished", 20.0, 120), ("going", "running", 90.0, 3)]:
        run = tmp_path / name
        run.mkdir()
        (run / "summary.json").write_text(json.dumps({
            "task": "hopper-medium", "algo": "empo", "preset": "quick", "seed": len(list(tmp_path.iterdir())), "status": status,
            "final_normalized_score": final, "last10_mean_normalized_score": final, "best_normalized_score": final,
            "epochs": epochs, "wall_time_s": 3600.0 if status == "finished" else 60.0}))
        (run / "progress.csv").write_text(f"epoch,updates,normalized_score\n1,1000,{final}\n")
    records = collect_runs([tmp_path])
    row = summarize(records)[0]
    assert (row["seeds"], row["finished"], row["unfinished_epochs"]) == (3, 2, [3])
    assert row["final_normalized_score"]["mean"] == 15.0 and row["best_normalized_score"]["mean"] == 15.0
    assert row["wall_time_h"] == 1.0
    assert aggregate(records)["empo (quick)"]["runs"] == 2
    assert "| 3 (2 finished; 1 at epoch 3) |" in write_report(records, tmp_path / "report").read_text()
    assert curve_label("empo (quick)", records) == "empo (quick), 3 seeds (1 unfinished)"
    assert curve_label("empo (quick)", records[:1]) == "empo (quick), 1 seed"


def test_scores_are_described_by_what_they_are():
    from empo.evaluation.report import describe_scores

    summary = {"final_eval_normalized_score": 51.32, "final_eval": {"episodes": 50}, "final_normalized_score": 51.47,
               "last10_mean_normalized_score": 55.68, "best_normalized_score": 95.9}
    assert describe_scores(summary) == "final 51.3 (50 episodes), last epoch 51.5, last-10 55.7, best 95.9"
    # a run that stopped before its final evaluation, or never evaluated, says so instead of a number
    stopped = {**summary, "final_eval_normalized_score": None, "final_eval": None, "best_normalized_score": float("nan")}
    assert describe_scores(stopped) == "final n/a, last epoch 51.5, last-10 55.7, best n/a"


def test_the_report_sets_each_task_beside_its_data(tmp_path):
    """The data's own score (run.json) is the report's "data" column and a line in the curves; runs
    that recorded none do not hide it, and runs on two different datasets get no single number."""
    from empo.evaluation.report import dataset_score, write_report

    for name, task, data in [("a", "hopper-medium", 48.9), ("b", "hopper-medium", None), ("c", "walker2d-medium", 59.8), ("d", "walker2d-medium", 72.0)]:
        run = tmp_path / name
        run.mkdir()
        (run / "summary.json").write_text(json.dumps({
            "task": task, "algo": "empo", "preset": "quick", "seed": ord(name), "status": "finished",
            "final_eval_normalized_score": 30.0, "final_normalized_score": 30.0, "last10_mean_normalized_score": 30.0,
            "best_normalized_score": 30.0, "wall_time_s": 60.0}))
        (run / "progress.csv").write_text("epoch,updates,normalized_score\n1,1000,30.0\n")
        (run / "run.json").write_text(json.dumps({"dataset_source": f"source-{name}", "dataset_normalized_score": data}))
    records = collect_runs([tmp_path])
    assert dataset_score([r for r in records if r.task == "hopper-medium"]) == 48.9
    assert dataset_score([r for r in records if r.task == "walker2d-medium"]) is None
    text = write_report(records, tmp_path / "report").read_text()
    assert "| hopper-medium | empo | quick | 2 (2 finished) | 48.9 | 30.0" in text
    assert "| walker2d-medium | empo | quick | 2 (2 finished) | n/a | 30.0" in text
    summary_csv = (tmp_path / "report" / "summary.csv").read_text().splitlines()
    assert summary_csv[0].split(",")[4] == "dataset_normalized_score" and summary_csv[1].split(",")[4] == "48.9"
