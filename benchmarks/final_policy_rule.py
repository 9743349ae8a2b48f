"""What would training.final_policy=best_model_return have chosen? Reads finished run folders
(progress.csv with the per-epoch diagnostics, summary.json) and prints, per run, the epoch whose
policy had the highest penalised model return from a share of the epochs on, that epoch's own
real evaluation (which the choice does not see), and the run's finished policy beside it
(docs/training.md, "The final policy").

    python benchmarks/final_policy_rule.py RUN_DIR [RUN_DIR ...] [--from 0.25] [--key diag_model_penalised_return]

A run made with the rule (summary.json's final_policy) is read as it is: its chosen epoch, its
final evaluation (the chosen policy over 50 episodes) and its last policy's.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path


def choose(rows: list[dict[str, str]], key: str, start: int) -> int | None:
    """1-based epoch of the highest finite ``key`` after epoch ``start`` (the earliest on ties)."""
    best, best_value = None, -math.inf
    for row in rows:
        epoch, value = int(row["epoch"]), float(row.get(key) or "nan")
        if epoch > start and math.isfinite(value) and value > best_value:
            best, best_value = epoch, value
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--from", dest="share", type=float, default=0.25, help="the share of the planned epochs before the window")
    parser.add_argument("--key", default="diag_model_penalised_return")
    args = parser.parse_args()
    print("| run | epochs | finished policy (50 ep.) | last-10 | chosen epoch | its evaluation (5 ep.) | chosen policy (50 ep.) |")
    print("|---|---|---|---|---|---|---|")
    for run in args.runs:
        progress, summary_path = run / "progress.csv", run / "summary.json"
        if not progress.is_file() or not summary_path.is_file():
            print(f"| {run.name} | (no progress.csv or summary.json) | | | | | |")
            continue
        rows = list(csv.DictReader(progress.open()))
        summary = json.loads(summary_path.read_text())
        scores = {int(r["epoch"]): float(r["normalized_score"]) for r in rows}
        last10 = sum(list(scores.values())[-10:]) / min(10, len(scores))
        info = summary.get("final_policy") or {}
        if info.get("rule") == "best_model_return":  # made with the rule: the finished policy is the chosen one
            epoch = info.get("epoch")
            finished = summary.get("last_policy_eval_normalized_score")
            chosen_final = summary.get("final_eval_normalized_score")
        else:
            epoch = choose(rows, args.key, int(args.share * int(summary.get("epochs_planned") or len(rows))))
            finished, chosen_final = summary.get("final_eval_normalized_score"), None

        def fmt(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}"

        print(f"| {run.name} | {len(rows)} | {fmt(finished)} | {last10:.1f} | {epoch or '-'} | "
              f"{fmt(scores.get(epoch)) if epoch else '-'} | {fmt(chosen_final)} |")


if __name__ == "__main__":
    main()
