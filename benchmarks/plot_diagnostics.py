"""A run's diagnostics against its score, epoch by epoch: one PNG per run folder.

Question: when a run's score falls, did the policy exploit the model (model return far above
the real return), did Q overestimate (Q of the start states above the real discounted return),
or did the penalty change? Panels: normalised score; model vs real return over the diagnostics'
horizon; Q of the start states vs the real discounted return (and the bound); the penalty's share
of the raw reward and its size in units of the data's (docs/training.md, "Diagnostics").

    python benchmarks/plot_diagnostics.py RUN_DIR [RUN_DIR ...] --out-dir benchmarks/results/learn-pilots-cpu
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def column(rows: list[dict], name: str) -> list[float]:
    return [float(r[name]) if r.get(name) not in (None, "") else float("nan") for r in rows]


def plot(run_dir: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with (run_dir / "progress.csv").open() as f:
        rows = list(csv.DictReader(f))
    if not rows or "diag_model_return" not in rows[0]:
        raise SystemExit(f"{run_dir}: progress.csv has no diagnostics (a run from before 2026-12-06?)")
    epochs = column(rows, "epoch")
    fig, axes = plt.subplots(4, 1, figsize=(8, 10), sharex=True)
    axes[0].plot(epochs, column(rows, "normalized_score"), color="black")
    axes[0].set_ylabel("normalised score")
    axes[1].plot(epochs, column(rows, "diag_model_return"), label="model return")
    axes[1].plot(epochs, column(rows, "diag_real_return"), label="real return")
    axes[1].set_ylabel("return over the horizon")
    axes[2].plot(epochs, column(rows, "diag_q_start"), label="Q of the start states")
    axes[2].plot(epochs, column(rows, "diag_real_discounted_return"), label="real discounted return")
    axes[2].plot(epochs, column(rows, "diag_q_bound"), label="bound", linestyle="--", color="grey")
    axes[2].set_ylabel("value")
    axes[3].plot(epochs, column(rows, "diag_penalty_to_reward"), label="penalty / raw reward")
    axes[3].plot(epochs, column(rows, "diag_penalty_vs_data"), label="rollout penalty / data's")
    axes[3].set_ylabel("penalty")
    axes[3].set_xlabel("epoch (1000 SAC updates)")
    for ax in axes[1:]:
        ax.legend(fontsize=8)
    axes[0].set_title(run_dir.name)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for run_dir in args.runs:
        out = args.out_dir / f"diagnostics-{run_dir.name}.png"
        plot(run_dir, out)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
