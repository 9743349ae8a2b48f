"""Fault injection, the small version (issue 18): an agent run killed with SIGKILL at random moments
after its first checkpoint resumes to the uninterrupted result, no file it leaves reads as valid
when it is not, and a full disk ends in one line with the last checkpoint intact.

The many-kills version, over a dataset build, a model fit and an agent run, is benchmarks/faults.py
(results in benchmarks/results/reliability-cpu.md). Each command here is a fresh process (torch's
import is most of its time): about 30-50 s in all on a shared 2-core CPU.
"""

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def faults():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    sys.modules.pop("faults", None)
    try:
        import faults
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return faults


@pytest.fixture(scope="module")
def work(faults, tmp_path_factory):
    """The data, the FTM and the uninterrupted reference run, shared by the tests (made on first use)."""
    folder = tmp_path_factory.mktemp("faults")
    faults.write_d4rl(folder / "hopper.hdf5")
    return folder


@pytest.mark.slow
def test_killed_agent_runs_resume_to_the_uninterrupted_result(faults, work):
    result = faults.phase_agent(work, kills=2, rng=random.Random(3), log=lambda message: None)
    assert result.problems == []
    assert result.started == 2 and result.killed >= 1, result
    assert result.corrupt == 0
    assert result.recovered == result.reproduced == result.started


def _can_mount(path: Path) -> str:
    if os.geteuid() != 0:
        return "not root: mounting a tmpfs needs root"
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        return f"mount -t tmpfs is not allowed here: {done.stderr.strip()}"
    subprocess.run(["umount", str(path)], capture_output=True)
    return ""


@pytest.mark.slow
def test_a_full_disk_ends_in_one_line_and_keeps_the_last_checkpoint(faults, work, tmp_path):
    reason = _can_mount(tmp_path / "probe")
    if reason:
        pytest.skip(reason)
    cases, reason = faults.full_disk(work, log=lambda message: None, factors=(1.2,))
    assert reason == "" and len(cases) == 1
    case = cases[0]
    assert case.returncode == 2 and case.one_line, case
    assert case.error_line.endswith("No space left on device") and "checkpoint.pt" in case.error_line, case
    assert case.checkpoint_epoch is not None and case.checkpoint_epoch >= 1 and case.intact, case
    assert case.partial_left == 0 and case.resumed == "reproduced", case


SWEEP = ["--tasks", "hopper-random", "--algos", "mopo", "--presets", "smoke", "--seeds", "0", "1",
         "--set", "training.epochs=30", "--set", "training.final_eval_episodes=0", "--no-progress"]


def _non_timing_rows(run_dir: Path) -> list[dict]:
    import csv

    with (run_dir / "progress.csv").open(newline="") as f:
        return [{k: v for k, v in row.items() if not k.startswith("time_") and k != "wall_time"} for row in csv.DictReader(f)]


@pytest.mark.slow
def test_a_sweep_killed_mid_run_resumes_to_the_uninterrupted_results(tmp_path):
    """kill -9 a sweep after its first run's first checkpoint; the same command again finishes both
    runs, and their epochs equal those of a sweep that was never killed."""
    import json
    import signal
    import time

    from empo.data import get_task
    from empo.data.build import build_dataset

    build_dataset(get_task("hopper-random"), size=1500, progress=False, log=lambda m: None)
    command = [sys.executable, "-m", "empo.cli.sweep", *SWEEP]
    reference = tmp_path / "reference"
    subprocess.run([*command, "--out", str(reference)], check=True, capture_output=True, timeout=600)

    killed = tmp_path / "killed"
    proc = subprocess.Popen([*command, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    first = killed / "hopper-random-mopo-smoke-s0" / "checkpoint.pt"
    deadline = time.monotonic() + 300
    while not first.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the sweep ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    summary = killed / "hopper-random-mopo-smoke-s0" / "summary.json"
    assert not summary.is_file() or json.loads(summary.read_text())["status"] != "finished"

    subprocess.run([*command, "--out", str(killed)], check=True, capture_output=True, timeout=600)
    runs = json.loads((killed / "sweep.json").read_text())["runs"]
    assert [r["status"] for r in runs] == ["finished", "finished"]
    for run in runs:
        assert _non_timing_rows(killed / run["run_id"]) == _non_timing_rows(reference / run["run_id"]), run["run_id"]
