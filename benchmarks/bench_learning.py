"""Learning benchmark: final and best D4RL-normalised scores of EMPO and MOPO over seeds.

Runs (or resumes, or just reads) one ``empo-train`` run per algorithm and seed in
``--runs-dir/<task>-<algo>-<preset>-s<seed>``, then writes a markdown report: per run the final,
best and last-10-mean score, epochs, wall time and median epoch time; per algorithm mean +- std
over seeds (docs/method.md, "Offline RL score": final and best differ a lot, so both are given, named).

    python benchmarks/bench_learning.py --task hopper-medium --preset quick --algos empo mopo \\
        --seeds 0 1 --runs-dir ~/.empo/runs [--summarize-only] [--out FILE] [--threads 1]

Runs go one after another through the real CLI; an interrupted benchmark continues where it
stopped (each run resumes from its checkpoint).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

from empo.utils import device_name, git_commit


def run_dir_for(runs_dir: Path, task: str, algo: str, preset: str, seed: int) -> Path:
    return runs_dir / f"{task}-{algo}-{preset}-s{seed}"


def launch(run_dir: Path, task: str, algo: str, preset: str, seed: int, threads: int, device: str) -> None:
    """Start the run, or resume it when it has a checkpoint; a finished run is left alone."""
    summary_path = run_dir / "summary.json"
    if summary_path.is_file() and json.loads(summary_path.read_text()).get("status") == "finished":
        print(f"{run_dir}: finished already")
        return
    common = ["--threads", str(threads), "--device", device, "--no-progress"]
    if (run_dir / "checkpoint.pt").is_file():
        cmd = ["empo-train", "--resume", str(run_dir), *common]
    else:
        cmd = ["empo-train", "--task", task, "--algo", algo, "--preset", preset, "--seed", str(seed),
               "--run-dir", str(run_dir), *common]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def read_run(run_dir: Path) -> dict[str, Any] | None:
    summary_path, progress_path = run_dir / "summary.json", run_dir / "progress.csv"
    if not summary_path.is_file() or not progress_path.is_file():
        return None
    summary = json.loads(summary_path.read_text())
    with progress_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    run_json = run_dir / "run.json"
    info = json.loads(run_json.read_text()) if run_json.is_file() else {}
    scores = [float(r["normalized_score"]) for r in rows]
    return {
        "summary": summary,
        "scores": scores,
        "epoch_s": statistics.median(float(r["time_epoch"]) for r in rows) if rows else float("nan"),
        "rollout_s": statistics.median(float(r["time_rollout"]) for r in rows) if rows else float("nan"),
        "command": info.get("command", "?"),
        "commit": info.get("git_commit", "?"),
        "dataset": info.get("dataset_source", "?"),
    }


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} +- {statistics.stdev(values):.1f}"


def report(args: argparse.Namespace, runs: dict[tuple[str, int], dict[str, Any] | None]) -> str:
    lines = [
        f"# Learning: {args.preset} preset on {args.task}, {' and '.join(args.algos)}",
        "",
        f"- date: {date.today().isoformat()}; report written at commit {git_commit()}",
        f"- device: {device_name()}",
        f"- command: `python benchmarks/bench_learning.py --task {args.task} --preset {args.preset} "
        f"--algos {' '.join(args.algos)} --seeds {' '.join(map(str, args.seeds))} --runs-dir RUNS`",
        "- scores: D4RL-normalised return of the deterministic policy, evaluation episodes as in the preset; "
        "final = last epoch, best = best epoch (optimistic), last-10 = mean of the last 10 epochs",
        "",
        "| algo | seed | status | epochs | final | best | last-10 mean | wall time min | epoch s (median) | rollout s (median) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    per_algo: dict[str, dict[str, list[float]]] = {}
    details = []
    for (algo, seed), run in runs.items():
        if run is None:
            lines.append(f"| {algo} | {seed} | not run | | | | | | | |")
            continue
        s = run["summary"]
        fmt = lambda x: "-" if x is None else f"{x:.1f}"  # noqa: E731
        lines.append(
            f"| {algo} | {seed} | {s['status']} | {s['epochs']}/{s['epochs_planned']} | {fmt(s['final_normalized_score'])} | "
            f"{fmt(s['best_normalized_score'])} | {fmt(s['last10_mean_normalized_score'])} | {s['wall_time_s'] / 60:.1f} | "
            f"{run['epoch_s']:.1f} | {run['rollout_s']:.1f} |"
        )
        if s["status"] == "finished":
            bucket = per_algo.setdefault(algo, {"final": [], "best": [], "last10": []})
            bucket["final"].append(s["final_normalized_score"])
            bucket["best"].append(s["best_normalized_score"])
            bucket["last10"].append(s["last10_mean_normalized_score"])
        curve = ", ".join(f"{run['scores'][i]:.1f}" for i in range(9, len(run["scores"]), 10))
        details.append(f"- {algo} seed {seed}: score every 10th epoch: {curve}; commit {run['commit']}; "
                       f"dataset {run['dataset']}; `{run['command']}`")
    lines += ["", "Over the finished seeds (mean +- std):", "", "| algo | seeds | final | best | last-10 mean |", "|---|---|---|---|---|"]
    for algo, bucket in per_algo.items():
        lines.append(f"| {algo} | {len(bucket['final'])} | {mean_std(bucket['final'])} | {mean_std(bucket['best'])} | "
                     f"{mean_std(bucket['last10'])} |")
    lines += ["", "Runs:", "", *details, ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="hopper-medium")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--algos", nargs="+", default=["empo", "mopo"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/bench-learning"))
    parser.add_argument("--summarize-only", action="store_true", help="only read the runs already in --runs-dir")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, help="write the markdown report here (default: print only)")
    args = parser.parse_args()
    runs_dir = args.runs_dir.expanduser()
    runs: dict[tuple[str, int], dict[str, Any] | None] = {}
    for algo in args.algos:
        for seed in args.seeds:
            run_dir = run_dir_for(runs_dir, args.task, algo, args.preset, seed)
            if not args.summarize_only:
                launch(run_dir, args.task, algo, args.preset, seed, args.threads, args.device)
            runs[(algo, seed)] = read_run(run_dir)
    text = report(args, runs)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
