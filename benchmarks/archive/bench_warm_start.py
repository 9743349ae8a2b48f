"""EMPO's quick preset with the mean-head warm-start rollout sampler: does the cheaper sampler cost learning?

Takes an ETM fit with ``etm.mean_head: true`` (e.g. ``empo-model train --task hopper-medium --model
etm --preset quick --set etm.mean_head=true``), writes a copy whose rollout sampler starts from
the mean head and runs ``--steps`` Langevin steps (the rest of the model's rollout sampler kept),
and trains EMPO on the quick preset with it for each seed. The runs are normal run folders under
``--work``; a rerun resumes unfinished ones (a session that ends loses at most an epoch) and
reuses finished ones. The table puts each run next to the figures given with ``--reference``.

    python benchmarks/archive/bench_warm_start.py --model-dir ~/.empo/fidelity/hopper-medium/etm-quick-head-s0 \\
        [--task hopper-medium] [--steps 5] [--seeds 0 1] [--set empo.penalty_coef=10 --tag=-coef10] [--work DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import time
from pathlib import Path

import numpy as np

from empo import pipeline
from empo.config import load_json_object
from empo.data.tasks import get_task
from empo.loop.config import resolve_config
from empo.models import load_dynamics
from empo.models.config import parse_overrides
from empo.utils import device_name, git_commit


def warm_model(model_dir: Path, task_name: str, steps: int, out: Path, step_size: float | None = None) -> Path:
    """A copy of the ETM in ``model_dir`` whose rollout sampler starts from its mean head (``steps`` 0:
    ``model_dir`` itself, the preset's own zero-start sampler, for the side-by-side baseline), with
    ``step_size`` as the first step size of its schedule when given."""
    if steps == 0:
        return model_dir
    if (out / "model.json").is_file():
        derived = load_dynamics(out)
        derived_from = derived.meta.get("derived_from")
        if derived_from is None or Path(derived_from).resolve() != model_dir.resolve():
            raise SystemExit(f"{out} was derived from {derived_from}, not {model_dir}: give another --work")
        saved = derived.config.etm.rollout_langevin
        if step_size is not None and saved.step_size_start != step_size:
            raise SystemExit(f"{out}'s rollout sampler starts at step size {saved.step_size_start:g}, not {step_size:g}: give another --work")
        return out
    model = load_dynamics(model_dir, get_task(task_name))
    if getattr(model, "mean_head", None) is None:
        raise SystemExit(f"{model_dir}: this ETM has no mean head (fit it with --set etm.mean_head=true)")
    etm = model.config.etm
    changes: dict = {"init": "mean_head", "steps": steps}
    if step_size is not None:
        changes["step_size_start"] = step_size
    etm.rollout_langevin = dataclasses.replace(etm.rollout_langevin, **changes)
    sampler = f"mean_head + {steps} steps" + (f", first step size {step_size:g}" if step_size is not None else "")
    model.meta = {**model.meta, "derived_from": str(model_dir), "rollout_sampler": sampler}
    model.save(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True, help="an ETM fit with etm.mean_head: true")
    parser.add_argument("--task", default="hopper-medium")
    parser.add_argument("--steps", type=int, default=5, help="Langevin steps after the warm start; 0: the model's own sampler")
    parser.add_argument("--step-size", type=float, help="first step size of the rollout sampler's schedule (default: the model's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--work", type=Path, default=Path("runs/bench-warm-start"))
    parser.add_argument("--reference", default="", help="a markdown line: the recorded scores to compare with")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a training-config override for every run, as empo-train's (e.g. empo.penalty_coef=10)")
    parser.add_argument("--tag", default="", help="appended to the run folders' names (runs with other --set values)")
    parser.add_argument("--no-train", action="store_true", help="train nothing: report the runs as far as they got")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: two runs side by side on 2 cores "
                        "with torch's default 2 threads each ran 8-13x slower per epoch)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.set)
    suffix = f"-ss{args.step_size:g}" if args.step_size is not None else ""
    model_dir = warm_model(args.model_dir, args.task, args.steps, args.work / f"etm-warm{args.steps}{suffix}", args.step_size)
    rows = []
    for seed in args.seeds:
        config = resolve_config(args.task, "empo", "quick", seed, overrides)
        run_dir = args.work / f"{args.task}-empo-quick-warm{args.steps}{suffix}{args.tag}-s{seed}"
        recorded_model = load_json_object(run_dir / "run.json", "run record", missing_ok=True).get("model_dir")
        if recorded_model is not None and Path(recorded_model).resolve() != Path(model_dir).resolve():
            # e.g. the --steps 0 baseline of another --model-dir: its runs would be reported under this one
            raise SystemExit(f"{run_dir} holds a run on the model {recorded_model}, not {model_dir}; give another --work or --tag")
        if args.no_train:
            if not (run_dir / "summary.json").is_file():
                print(f"seed {seed}: no run in {run_dir}", flush=True)
                continue
            pipeline.check_same_config(config, run_dir)  # made with other --set values: not reported as this one
            summary = load_json_object(run_dir / "summary.json", "run summary")
        else:  # a run there made with other --set values fails, naming them (give those their own --tag)
            summary, _ = pipeline.run_or_resume(config, run_dir, device="cpu", progress=False, model_dir=model_dir)
        progress = list(csv.DictReader((run_dir / "progress.csv").open(newline="")))
        rows.append((seed, summary, {
            "rollout_s": float(np.mean([float(r["time_rollout"]) for r in progress])),
            "penalty": float(np.mean([float(r["rollout_penalty_mean"]) for r in progress])),
            "q_last": float(progress[-1]["q1_mean"]),
        }))
        print(seed, {k: summary.get(k) for k in ("status", "epochs", "final_normalized_score", "last10_mean_normalized_score")},
              flush=True)
    lines = [
        f"# EMPO, quick preset, {args.task}: the mean-head warm-start rollout sampler ({args.steps} steps)",
        "",
        f"- Command: `python benchmarks/archive/bench_warm_start.py --model-dir {args.model_dir} --task {args.task} --steps {args.steps} "
        f"--seeds {' '.join(map(str, args.seeds))}" + (f" --step-size {args.step_size:g}" if args.step_size is not None else "") + "".join(f" --set {a}" for a in args.set) + (f" --tag={args.tag}" if args.tag else "") + "`",
        f"- Device: {device_name('cpu')}; date {time.strftime('%Y-%m-%d')}; commit {git_commit()}",
        f"- Model: {args.model_dir} (an ETM fit with a mean head), its rollout sampler replaced by: start at the mean "
        f"head's prediction, {args.steps} Langevin steps (noise and gradient clamp as the quick preset's"
        + (f"; first step size {args.step_size:g}" if args.step_size is not None else "") + ")."
        if args.steps else f"- Model: {args.model_dir}, its own rollout sampler (the baseline).",
        "",
        "| seed | status | epochs | last epoch | last-10 | best | final 50-episode eval | rollout penalty (mean) | Q at the last epoch | rollout s/epoch |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def fmt(value) -> str:
        return "-" if value is None else f"{value:.1f}"

    for seed, s, seen in rows:
        lines.append(f"| {seed} | {s['status']} | {s['epochs']} | {fmt(s['final_normalized_score'])} | "
                     f"{fmt(s['last10_mean_normalized_score'])} | {fmt(s['best_normalized_score'])} | "
                     f"{fmt(s.get('final_eval_normalized_score'))} | {seen['penalty']:.3f} | {seen['q_last']:.0f} | {seen['rollout_s']:.2f} |")
    if args.reference:
        lines += ["", f"Recorded for comparison: {args.reference}"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
