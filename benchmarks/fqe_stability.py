"""Does FQE settle? Fits FQE on a task's shipped policy suite under a few settings and prints, per
setting, the OPE metrics against the true values, the drift of each policy's estimate over the
last quarter of the updates (docs/evaluation.md, "Has FQE converged?") and the final Huber loss.

    python benchmarks/fqe_stability.py --task walker2d-medium --steps 40000 --variants plain layernorm

Variants: ``plain`` (Q without normalisation, empo-ope's FQE before 2026-12-07), ``layernorm``
(LayerNorm after each hidden layer of Q, empo-ope's FQE since), ``plain-lr1e-4`` and
``layernorm-lr1e-4`` (Adam's learning rate 1e-4 instead of 3e-4), ``layernorm-tau0.02`` and
``layernorm-tau0.05`` (the target network follows Q at 0.02 or 0.05 an update instead of 0.005:
with gamma 0.995 a value needs about a thousand backups, and a target that moves faster makes them
in fewer updates), ``layernorm-tau0.05-horizon`` (and the values fitted in units of
max|r| / (1 - gamma), so that they lie in about [-1, 1] and the Huber loss acts as a squared error)
and ``layernorm-tau0.05-lr1e-3``. ``--policies`` fits a subset of the suite, for a quick look at a
setting.
Writes a markdown table (``--out``, default benchmarks/results/fqe-stability-<task>-cpu.md) and the
curves next to it as JSON. True values come from the suite's cache (the same as empo-ope's).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from empo.data.tasks import get_task
from empo.evaluation.ope import FQE, GAMMA, load_policies, ope_metrics, true_values_cached
from empo.evaluation.ope_run import fqe_drift, last_quarter_move
from empo.pipeline import prepare_dataset
from empo.utils import git_commit

VARIANTS = {
    "plain": {"layer_norm": False},
    "layernorm": {"layer_norm": True},
    "plain-lr1e-4": {"layer_norm": False, "lr": 1e-4},
    "layernorm-lr1e-4": {"layer_norm": True, "lr": 1e-4},
    "layernorm-tau0.02": {"layer_norm": True, "tau": 0.02},
    "layernorm-tau0.05": {"layer_norm": True, "tau": 0.05},
    "layernorm-tau0.05-horizon": {"layer_norm": True, "tau": 0.05, "horizon_units": True},
    "layernorm-tau0.05-lr1e-3": {"layer_norm": True, "tau": 0.05, "lr": 1e-3},
}


def drift_over_true_range(curves: dict[str, dict[str, list[float]]], true: np.ndarray) -> dict[str, float]:
    """empo-ope's drift of each policy's estimate over the last quarter of the updates, in units of the
    true values' range (not the estimates' spread, which one diverging fit inflates)."""
    moved = np.asarray(list(fqe_drift(curves, spread=float(true.max() - true.min()))["last_quarter_over_spread"].values()))
    return {"median": float(np.median(moved)), "max": float(np.max(moved)), "above_0.1": int(np.sum(moved > 0.1))}


def settling(curves: dict[str, dict[str, list[float]]], true: np.ndarray, names: list[str]) -> dict[str, float]:
    """Whether the estimates still climb, for the policies worth at least a quarter of the best's
    true value: the median of each one's move over the last quarter of the updates relative to its
    final estimate (a slow steady climb reads small on the true range but not here), and the median
    of final estimate / true value."""
    keep = [i for i, name in enumerate(names) if true[i] >= 0.25 * true.max()]
    relative, ratio = [], []
    for i in keep:
        final = curves[names[i]]["value"][-1]
        relative.append(last_quarter_move(curves[names[i]]) / max(abs(final), 1e-9))
        ratio.append(final / true[i])
    return {"relative_move": float(np.median(relative)), "over_true": float(np.median(ratio))}


def recorded_curves(folder: Path, names: list[str]) -> dict[str, dict[str, list[float]]]:
    path = folder / "fqe_curve.csv"
    if not path.is_file():
        raise SystemExit(
            f"--baseline-dir {folder}: no fqe_curve.csv there (an empo-ope folder run with --estimators ... fqe)"
        )
    curves: dict[str, dict[str, list[float]]] = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            curve = curves.setdefault(row["policy"], {"updates": [], "loss": [], "value": []})
            for key in curve:
                curve[key].append(float(row[key]))
    missing = sorted(set(names) - set(curves))
    if missing:
        raise SystemExit(f"{path}: no curve for the suite's policies {', '.join(missing)}")
    return {name: curves[name] for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="walker2d-medium")
    parser.add_argument("--steps", type=int, default=40_000)
    parser.add_argument("--variants", nargs="+", default=["layernorm"], choices=sorted(VARIANTS))
    parser.add_argument("--policies", nargs="+", default=None, metavar="NAME", help="fit only these policies of the suite")
    parser.add_argument("--episodes", type=int, default=10, help="true-value episodes (the suite caches 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--baseline-dir",
        type=Path,
        default=None,
        help="an empo-ope output folder of this task with FQE (fqe_curve.csv): its fits join the table "
        "as 'plain (recorded)' instead of being refitted (folders written before 2026-12-07 hold FQE without LayerNorm)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = get_task(args.task)
    policies = load_policies(["suite"], task)
    if args.policies:
        unknown = sorted(set(args.policies) - {p.name for p in policies})
        if unknown:
            raise SystemExit(f"--policies: {', '.join(unknown)} not in the {task.env} suite ({', '.join(p.name for p in policies)})")
        policies = [p for p in policies if p.name in args.policies]
    dataset = prepare_dataset(task.name, log=print, progress=False)
    true, _, cached = true_values_cached(policies, task, args.episodes, GAMMA, args.seed)
    print(f"{len(policies)} policies, true values: {cached} cached")

    rows, curves = [], {}
    if args.baseline_dir is not None:
        recorded = recorded_curves(args.baseline_dir, [p.name for p in policies])
        values = np.array([recorded[p.name]["value"][-1] for p in policies])
        loss = [curve["loss"][-1] for curve in recorded.values()]
        curves["plain (recorded)"] = recorded
        rows.append(
            (
                "plain (recorded)",
                ope_metrics(true, values),
                drift_over_true_range(recorded, true),
                settling(recorded, true, [p.name for p in policies]),
                float(np.median(loss)),
                float(np.max(loss)),
                float("nan"),
            )
        )
    for variant in args.variants:
        fqe = FQE(dataset, task, steps=args.steps, seed=args.seed, device="cpu", **VARIANTS[variant])
        started = time.perf_counter()
        values = fqe.estimate(policies)
        seconds = time.perf_counter() - started
        metrics = ope_metrics(true, values)
        drift = drift_over_true_range(fqe.curves, true)
        settled = settling(fqe.curves, true, [p.name for p in policies])
        final_loss = [curve["loss"][-1] for curve in fqe.curves.values()]
        curves[variant] = fqe.curves
        rows.append((variant, metrics, drift, settled, float(np.median(final_loss)), float(np.max(final_loss)), seconds))
        print(
            f"{variant}: spearman {metrics['spearman']:.2f} regret@1 {metrics['regret@1']:.3f} "
            f"drift max {drift['max']:.2f} still moving {settled['relative_move']:.2f} estimate/true {settled['over_true']:.2f} median loss {np.median(final_loss):.3f} ({seconds:.0f} s)"
        )

    commit = git_commit()
    out = args.out or Path(f"benchmarks/results/fqe-stability-{args.task}-cpu.md")
    lines = [
        f"# FQE stability on {args.task}",
        "",
        f"`python benchmarks/fqe_stability.py --task {args.task} --steps {args.steps} --variants {' '.join(args.variants)}"
        + (f" --policies {' '.join(args.policies)}" if args.policies else "") + "`",
        f"(commit {commit}, {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
        f"{args.threads} torch thread(s); {len(policies)} suite policies, gamma {GAMMA})."
        + (
            f" The row 'plain (recorded)' is the FQE (without LayerNorm) of {args.baseline_dir} (same seed and settings), not refitted."
            if args.baseline_dir
            else ""
        ),
        "",
        "Drift: how far each policy's estimate moved over the last quarter of the updates, in units of the",
        "true values' range (0 = settled). Still moving: for the policies worth at least a quarter of the",
        "best's true value, the median move over the last quarter relative to the final estimate (a slow",
        "steady climb shows here). Estimate / true: their median ratio of final estimate to true value.",
        "Loss: the mean Huber loss of the last 1,000 updates.",
        "",
        "| variant | Spearman | rank correlation | abs. error | regret@1 | drift (median / max) | policies drifting > 0.1 "
        "| still moving | estimate / true | loss (median / max) | time |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, m, d, settled, loss_median, loss_max, seconds in rows:
        lines.append(
            f"| {variant} | {m['spearman']:.2f} | {m['pearson']:.2f} | {m['abs_error']:.2f} | {m['regret@1']:.3f} | "
            f"{d['median']:.2f} / {d['max']:.2f} | {d['above_0.1']} | {settled['relative_move']:.2f} | "
            f"{settled['over_true']:.2f} | {loss_median:.3f} / {loss_max:.3f} | "
            + ("(recorded) |" if np.isnan(seconds) else f"{seconds / 60:.0f} min |")
        )
    lines += [
        "",
        "Final estimates against the true values:",
        "",
        "| policy | true | " + " | ".join(v for v, *_ in rows) + " |",
        "|---|---|" + "---|" * len(rows),
    ]
    for i, policy in enumerate(policies):
        lines.append(
            f"| {policy.name} | {true[i]:.1f} | "
            + " | ".join(f"{curves[v][policy.name]['value'][-1]:.1f}" for v, *_ in rows)
            + " |"
        )
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(
        json.dumps({"true": dict(zip([p.name for p in policies], true.tolist(), strict=True)), "curves": curves})
    )
    print(f"wrote {out}")
    if args.baseline_dir is not None:
        print(f"plain (recorded): from {args.baseline_dir}")


if __name__ == "__main__":
    main()
