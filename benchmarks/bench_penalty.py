"""Does a model's uncertainty penalty track its error? Per model and dataset: the mean penalty, the
next-state MSE of one sampled step (``model.step``, as EMPO's rollouts take it) and the Spearman
correlation between each row's penalty and its error (``empo.evaluation.transition_error.
penalty_and_error``), on the task's holdout and on other datasets of the env. The penalty is what
keeps the agent off the model's errors; this compares models by how well it does that.

    python benchmarks/bench_penalty.py --task hopper-medium \\
        --models quick=~/.empo/models/hopper-medium-etm-2e651bb026d2-s0 ftm=~/.empo/fidelity/hopper-medium/ftm-quick-s0 \\
        --ood hopper-random hopper-medium-expert hopper-expert [--samples 2000] [--out FILE]
"""

from __future__ import annotations

import argparse
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from empo.data import load_transitions
from empo.evaluation.transition_error import penalty_and_error
from empo.models import load_dynamics
from empo.utils import atomic_write_text, device_name, git_commit, named_path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="hopper-medium")
    parser.add_argument("--models", type=named_path("NAME=MODEL_DIR"), nargs="+", required=True, metavar="NAME=DIR")
    parser.add_argument("--ood", nargs="*", default=[], help="other datasets of the env")
    parser.add_argument("--samples", type=int, default=2000, help="rows per dataset")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = {args.task: load_transitions(args.task), **{name: load_transitions(name) for name in args.ood}}
    rows = []
    for name, model_dir in args.models:
        model = load_dynamics(model_dir)
        started = time.perf_counter()
        holdout = model.holdout_index.cpu().numpy() if model.holdout_index.numel() else None
        for dataset, transitions in data.items():
            index = holdout if dataset == args.task else None
            result = penalty_and_error(model, transitions, index, max_samples=args.samples)
            label = f"{dataset} (holdout)" if index is not None else dataset
            rows.append((name, label, result))
            print(f"{name:>16} {label:>28}: penalty {result['penalty_mean']:.4g}  sample MSE {result['sample_mse']:.4g}  "
                  f"Spearman {result['spearman']:+.3f}", flush=True)
        print(f"{name}: {time.perf_counter() - started:.0f} s", flush=True)
    if args.out is not None:
        write_report(args, rows)
    return 0


def write_report(args: argparse.Namespace, rows: list[tuple[str, str, dict[str, float]]]) -> None:
    models = ", ".join(f"`{name}`: {path}" for name, path in args.models)
    lines = [
        f"# Uncertainty penalty against error, {args.task}",
        "",
        f"- command: `python benchmarks/bench_penalty.py --task {args.task} --models "
        + " ".join(f"{n}={p}" for n, p in args.models) + f" --ood {' '.join(args.ood)} --samples {args.samples}`",
        f"- date {date.today().isoformat()}, commit {git_commit()}, device {device_name('cpu')}, {args.threads} thread(s)",
        f"- models: {models}",
        f"- per dataset {args.samples} seeded rows; one sampled step per row (`model.step`, the rollout sampler); "
        "penalty: the model's own (ETM: norm of the members' std of next states; FTM: max over elites of the norm of the std); "
        "MSE: the sampled next state against the real one, mean over dimensions; Spearman: penalty against that error, over rows",
        "",
        "| model | dataset | mean penalty | sample MSE | Spearman (penalty, error) | penalty / holdout penalty | RMSE / holdout RMSE |",
        "|---|---|---|---|---|---|---|",
    ]
    base = {name: result for name, label, result in rows if label.endswith("(holdout)")}
    for name, label, result in rows:
        ref = base.get(name)
        ratio_p = result["penalty_mean"] / ref["penalty_mean"] if ref else np.nan
        # the penalty is a norm of standard deviations, a root-mean-square scale: compare it with the RMSE
        ratio_e = np.sqrt(result["sample_mse"] / ref["sample_mse"]) if ref else np.nan
        lines.append(f"| {name} | {label} | {result['penalty_mean']:.4g} | {result['sample_mse']:.4g} | {result['spearman']:+.3f} | "
                     f"{ratio_p:.2f} | {ratio_e:.2f} |")
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    raise SystemExit(main())
