"""Holdout curves of model fits: error against updates and minutes, from fit folders' train_log.csv.

Question: when does a model stop improving, and what does a cap cost? For each fit folder
(``empo-model train`` output) prints and records the holdout next-state and reward MSE per epoch
with the updates and minutes so far, how the fit ended (model.json's ``stopped_by``) and the last
epoch's relative improvement; draws next-state MSE against updates (log scale) to a PNG.

    python benchmarks/fit_curves.py runs/models/hopper-medium/ftm-paper-seed0 ... \\
        --out benchmarks/results/fit-curves-cpu.md
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import subprocess
from datetime import date
from pathlib import Path


def updates_per_epoch(folder: Path) -> int | None:
    """A fit's updates an epoch from its config.yaml and model.json (for logs older than their updates column)."""
    import math

    import yaml

    from empo.models.train import holdout_size

    try:
        config = yaml.safe_load((folder / "config.yaml").read_text())
        n = int(json.loads((folder / "model.json").read_text())["meta"]["n_transitions"])
    except (OSError, KeyError, ValueError):
        return None
    section = config[config["kind"]]
    if section.get("steps_per_epoch"):
        return int(section["steps_per_epoch"])
    held = holdout_size(n, section["holdout_fraction"], section["holdout_min"], section["holdout_max"])
    return math.ceil((n - held) / section["batch_size"])


def read_fit(folder: Path) -> dict:
    log = folder / "train_log.csv"
    if not log.is_file():
        raise SystemExit(f"{folder}: no train_log.csv (not a model fit folder)")
    with log.open() as f:
        rows = list(csv.DictReader(f))
    updates, minutes = 0, 0.0
    per_epoch = updates_per_epoch(folder)
    for row in rows:  # fits logged before the updates / fit_minutes columns existed: count them here
        minutes += float(row["epoch_s"]) / 60.0
        row["fit_minutes"] = float(row.get("fit_minutes") or minutes)
        row["updates"] = int(row.get("updates") or int(row["epoch"]) * (per_epoch or 0))
        updates = row["updates"]
    meta_path = folder / "model.json"
    meta = json.loads(meta_path.read_text()).get("meta", {}) if meta_path.is_file() else {}
    config = (folder / "config.yaml").read_text() if (folder / "config.yaml").is_file() else ""
    return {"folder": folder, "rows": rows, "meta": meta, "updates": updates, "config": config}


def improvement(rows: list[dict]) -> float | None:
    """Relative fall of the next-state MSE over the last epoch (0.015: 1.5% better than the epoch before)."""
    if len(rows) < 2:
        return None
    a, b = float(rows[-2]["holdout_next_obs_mse"]), float(rows[-1]["holdout_next_obs_mse"])
    return (a - b) / a if a > 0 else None


def epoch_noise(rows: list[dict]) -> float | None:
    """How much one epoch's next-state MSE moves from the last's over the fit's second half: the
    standard deviation of log(e_t / e_(t-1)) (0.13: about 13%), trend included, so an upper bound
    on the noise while the curve still falls."""
    import math
    import statistics

    half = [float(r["holdout_next_obs_mse"]) for r in rows[len(rows) // 2:]]
    ratios = [math.log(b / a) for a, b in zip(half[:-1], half[1:], strict=True) if a > 0 and b > 0]
    return statistics.stdev(ratios) if len(ratios) >= 2 else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, help="markdown file to write (a PNG of the same name beside it)")
    parser.add_argument("--title", default="Model fits: holdout curves")
    args = parser.parse_args(argv)
    fits = [read_fit(folder) for folder in args.folders]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [f"# {args.title}", "",
             f"- command: `python benchmarks/fit_curves.py {' '.join(str(f) for f in args.folders)}`",
             f"- date {date.today()}, commit {commit}, {platform.processor() or platform.machine()}, Python {platform.python_version()}", ""]
    for fit in fits:
        meta, rows = fit["meta"], fit["rows"]
        last, noise = improvement(rows), epoch_noise(rows)
        lines += [f"## {fit['folder']}", "",
                  f"- ended by: {meta.get('stopped_by', 'unknown (fit unfinished or older than stopped_by)')}; "
                  f"epochs {len(rows)}; last epoch's next-state MSE improvement "
                  + (f"{100 * last:.1f}%" if last is not None else "n/a")
                  + "; epoch-to-epoch movement over the second half (sd of the log ratio) "
                  + (f"{100 * noise:.1f}%" if noise is not None else "n/a"), "",
                  "| epoch | updates | minutes | holdout next-state MSE | holdout reward MSE |", "|---|---|---|---|---|"]
        lines += [f"| {r['epoch']} | {r['updates']} | {r['fit_minutes']:.1f} | {float(r['holdout_next_obs_mse']):.5g} | "
                  f"{float(r['holdout_reward_mse']):.5g} |" for r in rows]
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, key, label in ((axes[0], "updates", "updates"), (axes[1], "fit_minutes", "minutes of the fit (shared CPU)")):
            for fit in fits:
                rows = fit["rows"]
                ax.plot([r[key] for r in rows], [float(r["holdout_next_obs_mse"]) for r in rows], marker="o", ms=3,
                        label=fit["folder"].name)
            ax.set_xlabel(label)
            ax.set_ylabel("holdout next-state MSE")
            ax.set_yscale("log")
            ax.set_xscale("log" if key == "updates" else "linear")
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.out.with_suffix(".png"), dpi=110)
        print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
