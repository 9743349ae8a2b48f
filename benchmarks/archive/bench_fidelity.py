"""The ETM's fidelity settings, measured: loss reduction (training) x inference sampler settings.

For each trained ETM folder given (e.g. one fit with ``etm.loss_reduction=mean`` and one with
``sum``) and each inference setting (the legacy one: gradient clamp 10 and t / steps step sizes;
the authors': clamp 0.5 and step sizes that reach their end; each change alone), measure on the
task's holdout and on the env's other built levels (out of distribution): one-step and open-loop
h-step next-state MSE (raw units), and on the holdout the slope of the model's predicted state
change on the true change per velocity dimension (1 = right, < 1 = shrunk toward zero, the
symptom of benchmarks/results/empo-quick-divergence-cpu.md). Fit time comes from each folder's
train_log.csv.

    python benchmarks/archive/bench_fidelity.py --task hopper-medium \\
        --model mean=DIR_A --model sum=DIR_B [--samples 2000] [--starts 300] [--out FILE]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

from empo.data import get_task, load_transitions
from empo.data.tasks import LEVELS
from empo.errors import EmpoError
from empo.evaluation.transition_error import multi_step_error, one_step_error
from empo.models import load_dynamics
from empo.models.langevin import step_sizes
from empo.utils import device_name, git_commit, named_path

# inference settings: (label, gradient clamp, step sizes reach their end)
INFERENCE = (
    ("legacy (clamp 10, t/steps)", 10.0, False),
    ("clamp 0.5 only", 0.5, False),
    ("schedule only", 10.0, True),
    ("authors (clamp 0.5, t/(steps-1))", 0.5, True),
)


def with_inference(model, clamp: float, reaches_end: bool) -> None:
    etm = model.config.etm
    for name in ("rollout_langevin", "eval_langevin"):
        setattr(etm, name, dataclasses.replace(getattr(etm, name), grad_clip=clamp, step_size_reaches_end=reaches_end))


def velocity_slopes(model, data, rows: np.ndarray, obs_dim: int) -> np.ndarray:
    """Per state dimension: least-squares slope of the predicted change on the true change."""
    q = data.qlearning()
    obs = torch.as_tensor(q.observations[rows], device=model.device)
    act = torch.as_tensor(q.actions[rows], device=model.device)
    with torch.no_grad():
        next_obs, _ = model.predict(obs, act)
    pred = (next_obs - obs).cpu().numpy()
    true = q.next_observations[rows] - q.observations[rows]
    ct = true - true.mean(0)
    return (ct * (pred - pred.mean(0))).sum(0) / np.maximum((ct**2).sum(0), 1e-12)


def fit_minutes(model_dir: Path) -> float:
    with (model_dir / "train_log.csv").open() as f:
        return sum(float(r["epoch_s"]) for r in csv.DictReader(f)) / 60


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="hopper-medium")
    parser.add_argument("--model", action="append", required=True, type=named_path("LABEL=DIR"), metavar="LABEL=DIR", help="an ETM folder (repeatable)")
    parser.add_argument("--ftm", type=Path, help="an FTM folder to put beside them (its own predict)")
    parser.add_argument("--samples", type=int, default=2000, help="one-step rows per dataset")
    parser.add_argument("--starts", type=int, default=300, help="open-loop start states per dataset")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = get_task(args.task)
    env = task.name.split("-")[0]
    data = load_transitions(task.name)
    others = {}
    for level in LEVELS:
        name = f"{env}-{level}"
        if name == task.name:
            continue
        try:
            others[name] = load_transitions(name)
        except EmpoError:
            pass
    vel = list(range(5, 11)) if env == "hopper" else list(range(8, 17))  # the joint and body velocities
    models = list(args.model)

    def measure(model) -> dict[str, float]:
        hold = model.holdout_index.cpu().numpy()
        rows = hold[: args.samples]
        out = {"holdout": one_step_error(model, data, rows)["next_obs_mse"]}
        multi = multi_step_error(model, data, (1, 5), args.starts)
        out["in h1"], out["in h5"] = multi[1]["next_obs_mse"], multi[5]["next_obs_mse"]
        for name, other in others.items():
            level = name.split("-", 1)[1]
            out[f"{level} 1-step"] = one_step_error(model, other, None, args.samples)["next_obs_mse"]
            out[f"{level} h5"] = multi_step_error(model, other, (5,), args.starts)[5]["next_obs_mse"]
        slopes = velocity_slopes(model, data, rows, task.obs_dim)
        out["slope mean (velocities)"] = float(np.mean(slopes[vel]))
        out["slope min (velocities)"] = float(np.min(slopes[vel]))
        if env == "hopper":
            for d in (5, 6, 10):
                out[f"slope ds{d}"] = float(slopes[d])
        return out

    results: list[tuple[str, str, float | None, dict[str, float]]] = []
    started = time.time()
    for label, path in models:
        for inf_label, clamp, reaches in INFERENCE:
            model = load_dynamics(path, task)
            with_inference(model, clamp, reaches)
            t0 = time.time()
            figures = measure(model)
            print(f"{label} / {inf_label}: {figures} ({time.time() - t0:.0f} s)", flush=True)
            results.append((label, inf_label, fit_minutes(path), figures))
    if args.ftm is not None:
        model = load_dynamics(args.ftm, task)
        figures = measure(model)
        print(f"ftm: {figures}", flush=True)
        results.append(("FTM", "mean of elites", fit_minutes(args.ftm), figures))

    keys = list(results[0][3])
    sched_old = step_sizes(dataclasses.replace(load_dynamics(models[0][1], task).config.etm.rollout_langevin, step_size_reaches_end=False))
    sched_new = step_sizes(dataclasses.replace(load_dynamics(models[0][1], task).config.etm.rollout_langevin, step_size_reaches_end=True))
    lines = [
        f"# ETM fidelity settings on {task.name}: loss reduction x inference sampler",
        "",
        f"- command: `python {' '.join(sys.argv)}`",
        f"- device: {device_name()}, torch threads {args.threads}; date {time.strftime('%Y-%m-%d')}; commit {git_commit()}",
        f"- models: {', '.join(f'{label} = {path}' for label, path in models)}" + (f"; FTM = {args.ftm}" if args.ftm else ""),
        f"- next-state MSE in raw units; one-step on {args.samples} rows (holdout for {task.name}), open-loop on "
        f"{args.starts} starts along real episodes with the dataset's actions; ETM predicts with its evaluation "
        "sampler (100 noiseless steps from 0, median over members)",
        f"- slopes on the holdout rows: velocity dimensions {vel}",
        f"- rollout step sizes (30 steps): sum {sum(sched_old):.4f} (t/steps, last {sched_old[-1]:.2e}) vs "
        f"{sum(sched_new):.4f} (t/(steps-1), last {sched_new[-1]:.2e})",
        f"- total time {time.time() - started:.0f} s",
        "",
        "| model | inference | fit min | " + " | ".join(keys) + " |",
        "|---|---|---|" + "---|" * len(keys),
    ]
    for label, inf_label, minutes, figures in results:
        lines.append(
            f"| {label} | {inf_label} | {minutes:.1f} | " + " | ".join(f"{figures[k]:.4g}" for k in keys) + " |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
