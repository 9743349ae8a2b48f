"""ETM vs FTM transition error on one task, in and out of distribution, through the real commands.

    python benchmarks/bench_transition_error.py --task hopper-medium --preset quick \\
        [--models-dir /tmp/models] [--threads 1] [--out benchmarks/results/transition-error-hopper-medium-cpu.md]

Trains both models with `empo-model train` (skipped when a finished model is already in
--models-dir/<task>-<kind>), evaluates each with `empo-model eval --json` (every other built level of
the env is out of distribution) and writes one markdown table with command, device, date and commit.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from empo.utils import device_name, git_commit


def run(cmd: list[str]) -> tuple[str, float]:
    started = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return done.stdout, time.time() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="hopper-medium")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--models-dir", type=Path, default=Path("runs/models-bench"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or Path(f"benchmarks/results/transition-error-{args.task}-cpu.md")

    results, timings = {}, {}
    for kind in ("ftm", "etm"):
        model_dir = args.models_dir / f"{args.task}-{kind}"
        if (model_dir / "model.json").is_file():
            timings[f"{kind} train"] = "reused"
        else:
            _, seconds = run(["empo-model", "train", "--task", args.task, "--model", kind, "--preset", args.preset,
                              "--threads", str(args.threads), "--out", str(model_dir), "--no-progress"])
            timings[f"{kind} train"] = f"{seconds:.0f} s"
        stdout, seconds = run(["empo-model", "eval", "--model-dir", str(model_dir), "--threads", str(args.threads), "--json"])
        timings[f"{kind} eval"] = f"{seconds:.0f} s"
        results[kind] = json.loads(stdout)
        print(f"{kind}: trained {timings[f'{kind} train']}, evaluated {timings[f'{kind} eval']}")

    lines = [
        f"# Transition error, ETM vs FTM, {args.task} ({args.preset} presets)",
        "",
        f"- command: `python {' '.join(sys.argv)}`",
        f"- device: {device_name()}, torch threads {args.threads}",
        f"- date: {date.today().isoformat()}, commit {git_commit()}",
        f"- times: {', '.join(f'{k} {v}' for k, v in timings.items())}",
        "- MSE in raw units (next state: mean over state dimensions); one-step rows: the model's holdout or up to 10,000",
        "  sampled transitions; open-loop rows: up to 1,000 starts along real episodes fed the dataset's actions;",
        "  ETM predicts with 100 noiseless Langevin steps from 0 (median over members), FTM with the elites' mean.",
        "",
        "| dataset | split | mode | h | ETM next-state | FTM next-state | ETM reward | FTM reward |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for etm, ftm in zip(results["etm"]["rows"], results["ftm"]["rows"], strict=True):
        lines.append(
            f"| {etm['dataset']} | {etm['split']} | {etm['mode']} | {etm['horizon']} | {etm['next_obs_mse']:.3g} | "
            f"{ftm['next_obs_mse']:.3g} | {etm['reward_mse']:.3g} | {ftm['reward_mse']:.3g} |"
        )
    notes = sorted(set(results["etm"]["notes"]) | set(results["ftm"]["notes"]))
    lines += [""] + [f"- note: {n}" for n in notes]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
