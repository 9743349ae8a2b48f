"""The EMPO loop with each agent (built-in SAC, stable-baselines3's SAC, tianshou's SAC): speed and scores.

Same task, algorithm, preset, transition model and seed for every agent; the preset's settings
(by default the quick preset, EMPO on hopper-medium), shortened to ``--epochs``. For each agent:
updates/s of the update phase, the rollout and evaluation time per epoch, the final, last-10 and
best normalised scores, and where the update time goes (cProfile of ``--profile-updates`` updates,
the top functions by own time). Runs are normal run folders under ``--work``; a rerun resumes
unfinished ones and reuses finished ones, so an interrupted benchmark loses at most an epoch.

    python benchmarks/bench_agents.py --model-dir ~/.empo/models/hopper-medium-etm-2e651bb026d2-s0 \\
        [--task hopper-medium] [--algo empo] [--preset quick] [--epochs 30] [--seeds 0] \\
        [--agents sac sb3-sac tianshou-sac] [--work DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import io
import pstats
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from empo import pipeline
from empo.config import load_json_object
from empo.data.tasks import get_task
from empo.loop.config import resolve_config
from empo.loop.trainer import Trainer
from empo.models import load_dynamics
from empo.utils import device_name, git_commit


def run_one(config, run_dir: Path, model_dir: Path) -> dict[str, Any]:
    pipeline.run_or_resume(config, run_dir, device="cpu", progress=False, model_dir=model_dir)  # a finished run is reused
    rows = list(csv.DictReader((run_dir / "progress.csv").open(newline="")))
    updates = sum(float(r["time_update"]) for r in rows)
    steps = config.training.steps_per_epoch * len(rows)
    scores = [float(r["normalized_score"]) for r in rows]
    summary = load_json_object(run_dir / "summary.json", "run summary")
    return {
        "final_eval": summary.get("final_eval_normalized_score"),
        "wall_h": float(summary.get("wall_time_s") or 0.0) / 3600,
        "updates_per_s": steps / updates,
        "rollout_s": float(np.mean([float(r["time_rollout"]) for r in rows])),
        "eval_s": float(np.mean([float(r["time_eval"]) for r in rows])),
        "final": scores[-1],
        "last10": float(np.mean(scores[-10:])),
        "best": max(scores),
        "epochs": len(rows),
    }


def profile_updates(config, model_dir: Path, updates: int, work: Path, top: int = 8) -> list[tuple[str, float, float]]:
    """(function, own seconds, share of the total) of ``updates`` updates after one rollout."""
    task = get_task(config.task)
    dataset = pipeline.prepare_dataset(config.task).qlearning().to_tensors()
    model = load_dynamics(model_dir, task)
    trainer = Trainer(config, dataset, model, work / f"profile-{config.agent}", progress=False)
    trainer.do_rollout()
    trainer.agent.train(20)  # warm up (optimiser state, first allocations)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    trainer.agent.train(updates)
    profiler.disable()
    total = time.perf_counter() - start
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    for (filename, line, name), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{Path(filename).name}:{line}({name})" if filename != "~" else name
        rows.append((where, own, own / total))
    rows.sort(key=lambda row: -row[1])
    return [("(all, wall clock with profiling)", total, 1.0), *rows[:top]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True, help="the trained transition model every agent uses")
    parser.add_argument("--task", default="hopper-medium")
    parser.add_argument("--algo", default="empo")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--agents", nargs="+", default=["sac", "sb3-sac", "tianshou-sac"])
    parser.add_argument("--profile-updates", type=int, default=300, help="updates to profile per agent; 0: no profile")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("runs/bench-agents"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.strftime("%Y-%m-%d %H:%M")
    results: dict[tuple[str, int], dict[str, Any]] = {}
    profiles: dict[str, list[tuple[str, float, float]]] = {}
    for agent in args.agents:
        for seed in args.seeds:
            overrides = {"agent": agent, "training": {"epochs": args.epochs}}
            config = resolve_config(args.task, args.algo, args.preset, seed, overrides)
            results[agent, seed] = run_one(config, args.work / f"{agent}-s{seed}", args.model_dir)
            print(agent, seed, results[agent, seed], flush=True)
        config = resolve_config(args.task, args.algo, args.preset, args.seeds[0], {"agent": agent})
        if args.profile_updates:
            profiles[agent] = profile_updates(config, args.model_dir, args.profile_updates, args.work)

    lines = [
        f"# The EMPO loop with each agent: {args.task}, {args.algo}, {args.preset} preset shortened to {args.epochs} epochs",
        "",
        f"- Command: `python benchmarks/bench_agents.py --model-dir {args.model_dir} --task {args.task} --algo {args.algo} "
        f"--preset {args.preset} --epochs {args.epochs} --seeds {' '.join(map(str, args.seeds))} --agents {' '.join(args.agents)}"
        + (f" --profile-updates {args.profile_updates}" if args.profile_updates != 300 else "") + (f" --work {args.work}" if args.work != Path("runs/bench-agents") else "") + "`",
        f"- Device: {device_name('cpu')}, {args.threads} torch thread(s); started {started}; commit {git_commit()}",
        "- Same model, dataset, seed and loop settings for every agent; each row one run (normalised scores from the",
        "  loop's per-epoch evaluation, 5 episodes an epoch in the quick preset).",
        "",
        "| agent | seed | epochs | updates/s | rollout s/epoch | eval s/epoch | last epoch | last-10 | best | final 50-episode eval | wall h |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = {seed: results.get(("sac", seed), {}).get("updates_per_s") for seed in args.seeds}
    for (agent, seed), r in results.items():
        ratio = f" ({r['updates_per_s'] / base[seed]:.2f}x sac)" if base.get(seed) and agent != "sac" else ""
        lines.append(
            f"| {agent} | {seed} | {r['epochs']} | {r['updates_per_s']:.1f}{ratio} | {r['rollout_s']:.2f} | {r['eval_s']:.2f} | "
            f"{r['final']:.1f} | {r['last10']:.1f} | {r['best']:.1f} | "
            f"{'-' if r['final_eval'] is None else format(r['final_eval'], '.1f')} | {r['wall_h']:.2f} |"
        )
    for agent, rows in profiles.items():
        lines += ["", f"Where {args.profile_updates} updates of `{agent}` spend their time (cProfile, own time):", "",
                  "| function | s | share |", "|---|---|---|"]
        lines += [f"| `{name}` | {own:.3f} | {share:.0%} |" for name, own, share in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
