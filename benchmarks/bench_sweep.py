"""Wall time of one smoke grid run three ways: one after another, a local pool of 2, Ray with 2 CPUs.

The grid: 3 tasks x 2 algorithms x 2 seeds on the smoke preset (12 runs, each fitting its own
smoke model: seeds differ). Each way gets its own model cache (``EMPO_HOME``), so every way fits
the same models. Uses the library (``empo.sweep.run_sweep``).

    python benchmarks/bench_sweep.py [--tasks hopper-medium halfcheetah-medium hopper-random] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from empo.sweep import SweepSpec, run_sweep
from empo.utils import device_name, git_commit


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["hopper-medium", "halfcheetah-medium", "hopper-random"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    ways = [("one after another", "local", 1), ("local pool, 2 workers", "local", 2), ("Ray, 2 CPUs", "ray", 2)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, engine, workers in ways:
            os.environ["EMPO_HOME"] = str(Path(tmp) / f"home-{engine}-{workers}")
            spec = SweepSpec(tasks=args.tasks, algos=["empo", "mopo"], seeds=[0, 1], presets=["smoke"], engine=engine,
                             workers=workers, threads_per_run=1, device="cpu")
            started = time.perf_counter()
            index = run_sweep(spec, Path(tmp) / f"sweep-{engine}-{workers}", progress=False, log=lambda m: None)
            seconds = time.perf_counter() - started
            done = sum(r["status"] == "finished" for r in index["runs"])
            rows.append((label, seconds, done, len(index["runs"])))
            print(f"{label}: {seconds:.1f} s, {done}/{len(index['runs'])} finished", flush=True)
    base = rows[0][1]
    lines = [
        "# Sweep engines: one smoke grid three ways",
        "",
        f"- command: `python benchmarks/bench_sweep.py --tasks {' '.join(args.tasks)}`",
        f"- device: {device_name('cpu')}, {os.cpu_count()} logical CPUs, 1 torch thread per run; date {time.strftime('%Y-%m-%d %H:%M')}; commit {git_commit()}",
        f"- grid: {len(args.tasks)} tasks x empo, mopo x seeds 0, 1 on the smoke preset (each run fits its own smoke model)",
        "",
        "| way | seconds | x one after another | runs finished |",
        "|---|---|---|---|",
        *[f"| {label} | {seconds:.1f} | {base / seconds:.2f} | {done}/{total} |" for label, seconds, done, total in rows],
        "",
    ]
    if args.out:
        args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
