"""Does the ETM err less than the FTM off the data? (issue 35's first claim.) Next-state and reward
error of fitted models on the task's holdout and on other datasets of the env, each model scored on
the SAME rows, with percentile bootstrap intervals of every mean and of each model's ratio to a
reference FTM (rows resampled in pairs, so that what is hard for both models cancels in the ratio).

    python benchmarks/claims_transition_error.py --task hopper-medium \\
        --models etm=~/.empo/models/hopper-medium-etm-... ftm=~/.empo/fidelity/hopper-medium/ftm-quick-s0 \\
        --ood hopper-random hopper-medium-expert hopper-expert [--horizons 1 5] [--samples 2000] [--starts 500] \\
        [--resamples 1000] [--seed 0] [--threads 1] [--out FILE.md]

Horizon 1 is one step on --samples rows per dataset (on the task: the models' holdout rows); a
horizon h > 1 is open loop along real episodes from --starts start states per dataset (the data's
actions fed to the model from a real state; the state after h steps is scored). The ratio columns
are each model's mean error over the reference's (--reference NAME, default the first FTM among
--models); below 1 the model errs less. --out FILE.md also writes FILE.json with every figure.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

import empo.data
from empo.cli.common import cli_entry
from empo.data import Transitions, get_task
from empo.errors import EmpoError
from empo.evaluation.transition_error import (
    RowErrors,
    one_step_rows,
    open_loop_starts,
    paired_bootstrap,
    per_row_errors,
)
from empo.models import DynamicsModel, load_dynamics
from empo.models.dynamics import read_model_meta
from empo.utils import atomic_write_text, device_name, git_commit, named_path

SCRIPT = "benchmarks/claims_transition_error.py"
LEVEL = 0.95
FIT_META = ("stopped_by", "fit_updates", "fit_minutes")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="hopper-medium", help="the dataset the models were fit on")
    parser.add_argument("--models", type=named_path("NAME=MODEL_DIR"), nargs="+", required=True, metavar="NAME=DIR",
                        help="two or more model folders (empo-model train); the first ETM against the reference FTM is the claim")
    parser.add_argument("--reference", metavar="NAME",
                        help="the model every ratio column divides by (each model against this FTM); default: the first ftm among --models")
    parser.add_argument("--ood", nargs="*", default=[], metavar="TASK", help="other datasets of the env (each must be built)")
    parser.add_argument("--horizons", type=int, nargs="+", default=[1, 5], help="1: one step; h > 1: open loop along episodes")
    parser.add_argument("--samples", type=int, default=2000, help="one-step rows per dataset")
    parser.add_argument("--starts", type=int, default=500, help="open-loop start states per dataset")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="seeds the rows and the bootstrap")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, metavar="FILE.md", help="write the markdown here and every figure to FILE.json")
    return parser


def check_args(args: argparse.Namespace) -> None:
    if len(args.models) < 2:
        raise EmpoError("--models: give two or more NAME=DIR (models to compare)")
    names = [name for name, _ in args.models]
    if len(set(names)) != len(names):
        raise EmpoError(f"--models: each NAME once, got {' '.join(names)}")
    for flag in ("samples", "starts", "resamples", "threads"):
        if getattr(args, flag) < 1:
            raise EmpoError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if min(args.horizons) < 1:
        raise EmpoError(f"--horizons must be positive, got {args.horizons}")
    args.horizons = sorted(set(args.horizons))


def pick_reference(args: argparse.Namespace, kinds: dict[str, str]) -> str:
    """--reference, else the first FTM among --models."""
    if args.reference is not None:
        if args.reference not in kinds:
            raise EmpoError(f"--reference {args.reference}: not among --models ({', '.join(kinds)})")
        return args.reference
    ftms = [name for name, kind in kinds.items() if kind == "ftm"]
    if not ftms:
        raise EmpoError("--models: no ftm model to compare against; add one or name the reference with --reference NAME")
    return ftms[0]


def load_datasets(task_name: str, ood: list[str]) -> dict[str, Transitions]:
    """Every dataset, before any model is scored: one that is missing stops the script naming its build command."""
    task = get_task(task_name)
    data: dict[str, Transitions] = {}
    for flag, name in [("--task", task.name)] + [("--ood", name) for name in ood]:
        other = get_task(name)
        if (other.obs_dim, other.act_dim) != (task.obs_dim, task.act_dim):
            raise EmpoError(f"{flag} {name}: its observation and action sizes differ from {task.name}'s")
        if other.name in data:
            continue
        try:
            # through the module, so that a test can stand in for the loader
            data[other.name] = empo.data.load_transitions(other.name)
        except EmpoError as exc:
            raise EmpoError(f"{flag} {other.name}: no dataset to load; build it with `empo-data build {other.name}` "
                            f"(nothing was scored): {exc}") from None
    return data


def in_distribution_rows(
    models: dict[str, DynamicsModel], transitions: Transitions, task_name: str, samples: int, seed: int, notes: list[str]
) -> tuple[np.ndarray, str]:
    """One-step rows of the task's data for every model: their shared holdout rows (split "holdout"),
    else a seeded sample of all rows (split "in-dist", training rows of some model among them)."""
    n_rows = len(transitions.qlearning())
    holdouts: dict[str, np.ndarray] = {}
    unusable: list[str] = []
    for name, model in models.items():
        index = model.holdout_index.cpu().numpy()
        fit_task, n_saved = model.meta.get("task"), model.meta.get("n_transitions")
        if index.size == 0:
            unusable.append(f"`{name}` saved no holdout rows")
        elif fit_task is not None and fit_task != task_name:
            unusable.append(f"`{name}` was fit on {fit_task}, not {task_name}")
        elif (n_saved is not None and int(n_saved) != n_rows) or int(index.max()) >= n_rows:
            unusable.append(f"`{name}` was fit on {n_saved} transitions, the dataset has {n_rows}")
        else:
            holdouts[name] = np.sort(index)
    if unusable:
        notes.append(f"{task_name}: {'; '.join(unusable)}: the one-step rows are a seeded sample of all {n_rows} rows "
                     "(split in-dist), not a holdout")
        return one_step_rows(transitions, None, samples, seed), "in-dist"
    shared = next(iter(holdouts.values()))
    if all(np.array_equal(shared, index) for index in holdouts.values()):
        notes.append(f"{task_name}: every model holds out the same {shared.size} rows (same split seed)")
    else:
        for index in holdouts.values():
            shared = np.intersect1d(shared, index)
        sizes = ", ".join(f"`{name}` {index.size}" for name, index in holdouts.items())
        notes.append(f"{task_name}: the models' holdout rows differ ({sizes}); the one-step rows are drawn from the "
                     f"{shared.size} rows held out by every model")
        if shared.size == 0:
            notes.append(f"{task_name}: no row is held out by every model; a seeded sample of all rows is scored instead (split in-dist)")
            return one_step_rows(transitions, None, samples, seed), "in-dist"
    return one_step_rows(transitions, shared, samples, seed), "holdout"


def score(
    models: dict[str, DynamicsModel],
    data: dict[str, Transitions],
    plan: dict[str, dict[str, Any]],
    horizons: list[int],
) -> tuple[dict[str, dict[str, dict[int, RowErrors]]], dict[str, dict[str, float]]]:
    """errors[model][dataset][h] on the planned rows (the same for every model), and seconds per (model, dataset)."""
    errors: dict[str, dict[str, dict[int, RowErrors]]] = {name: {} for name in models}
    seconds: dict[str, dict[str, float]] = {name: {} for name in models}
    loop = [h for h in horizons if h > 1]
    pairs = [(name, dataset) for name in models for dataset in data]
    with tqdm(pairs, desc="scoring", unit="model x dataset") as bar:
        for name, dataset in bar:
            bar.set_postfix_str(f"{name} on {dataset}")
            started = time.perf_counter()
            cell: dict[int, RowErrors] = {}
            if 1 in horizons:
                cell.update(per_row_errors(models[name], data[dataset], plan[dataset]["rows"]))
            if loop:
                cell.update(per_row_errors(models[name], data[dataset], plan[dataset]["starts"], loop))
            errors[name][dataset] = cell
            seconds[name][dataset] = time.perf_counter() - started
            summary = "  ".join(f"h={h} {cell[h].means()['next_obs_mse']:.4g}" for h in horizons)
            tqdm.write(f"{name:>16} {dataset:>24}: next-state MSE {summary}  ({seconds[name][dataset]:.0f} s)")
    return errors, seconds


def table_rows(
    errors: dict[str, dict[str, dict[int, RowErrors]]],
    plan: dict[str, dict[str, Any]],
    horizons: list[int],
    reference: str,
    resamples: int,
    seed: int,
) -> list[dict[str, Any]]:
    """One row per (dataset, horizon, model): mean errors and ratios to ``reference`` with paired intervals."""
    rows = []
    for dataset, info in plan.items():
        for h in horizons:
            base = errors[reference][dataset][h]
            for name in errors:
                mine = errors[name][dataset][h]
                if not np.array_equal(mine.rows, base.rows):  # the pairing is the point: never compare different rows
                    raise AssertionError(f"{name} and {reference} were scored on different rows of {dataset}")
                state = paired_bootstrap(mine.next_obs_se, base.next_obs_se, resamples, seed, LEVEL)
                reward = paired_bootstrap(mine.reward_se, base.reward_se, resamples, seed, LEVEL)
                rows.append({
                    "model": name, "dataset": dataset, "split": info["split"] if h == 1 else info["loop_split"], "horizon": h,
                    "mode": "one-step" if h == 1 else "open-loop", "n": int(mine.rows.size),
                    "next_obs_mse": state["a"], "reward_mse": reward["a"],
                    "ratio_next_obs": state["ratio"], "ratio_reward": reward["ratio"],
                })
    return rows


def interval(figure: dict[str, float], digits: str = ".4g") -> str:
    if not np.isfinite(figure["mean"]):
        return "-"
    if not (np.isfinite(figure["low"]) and np.isfinite(figure["high"])):
        return f"{figure['mean']:{digits}}"
    return f"{figure['mean']:{digits}} [{figure['low']:{digits}}, {figure['high']:{digits}}]"


def verdict(ratio: dict[str, float]) -> str:
    if not (np.isfinite(ratio["low"]) and np.isfinite(ratio["high"])):
        return "-"
    if ratio["high"] < 1:
        return "lower"
    if ratio["low"] > 1:
        return "higher"
    return "no difference at 95%"


def fit_line(name: str, info: dict[str, Any]) -> str:
    meta = info["meta"]
    fit = ", ".join(f"{key} {meta[key]}" for key in FIT_META if key in meta) or "fit meta not recorded"
    return (f"  - `{name}` ({info['kind']}, preset {info['preset']}, fit on {meta.get('task', '?')}, seed {meta.get('seed', '?')}): "
            f"`{info['dir']}`; {fit}")


def markdown(report: dict[str, Any]) -> str:
    settings, reference = report["settings"], report["reference"]
    task_rows = "rows held out by every model" if report["task_split"] == "holdout" else "a seeded sample of all rows, see the notes"
    lines = [
        f"# Transition error with paired bootstrap intervals, {report['task']}",
        "",
        f"- command: `{report['command']}`",
        f"- date {report['date']}, commit {report['commit']}, device {report['device']}, {settings['threads']} thread(s); "
        f"scoring took {report['wall_s']:.0f} s",
        f"- rows: horizon 1 is one step on {settings['samples']} seeded rows per dataset (on {report['task']}: "
        f"{task_rows}); h > 1 is open loop from {settings['starts']} seeded episode start states per dataset "
        "(the data's actions fed to the model from a real state; the state reached after h steps and the h-th reward "
        "are scored; split in-dist: episodes of the training data). Every model is scored on the same rows; "
        "predictions are the models' deterministic `predict` (ETM: noiseless Langevin chains)",
        f"- MSE: squared error of the next state (mean over state dimensions) and of the reward, raw units, mean over rows; "
        f"[95% CI]: percentile bootstrap over rows, {settings['resamples']} resamples, seed {settings['seed']}; ratio: the "
        f"model's mean over `{reference}`'s on the same resampled rows (below 1: errs less than `{reference}`)",
        "- models:",
        *[fit_line(name, info) for name, info in report["models"].items()],
    ]
    lines += [f"- note: {note}" for note in report["notes"]]
    lines += [
        "",
        f"| model | dataset | split | horizon | next-state MSE [95% CI] | reward MSE [95% CI] | ratio to `{reference}` (next state) [CI] | "
        "ratio (reward) [CI] | n |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        lines.append(f"| {row['model']} | {row['dataset']} | {row['split']} | {row['horizon']} | {interval(row['next_obs_mse'])} | "
                     f"{interval(row['reward_mse'])} | {interval(row['ratio_next_obs'], '.3f')} | "
                     f"{interval(row['ratio_reward'], '.3f')} | {row['n']} |")
    claim = report.get("claim")
    if claim is not None:
        lines += [
            "",
            f"## The claim: `{claim['etm']}` (the first ETM) against `{reference}`",
            "",
            "Lower / higher: the ratio's 95% interval lies wholly below / above 1.",
            "",
            "| dataset | split | horizon | next-state ratio [CI] | next state | reward ratio [CI] | reward |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in report["rows"]:
            if row["model"] == claim["etm"]:
                state, reward = row["ratio_next_obs"], row["ratio_reward"]
                lines.append(f"| {row['dataset']} | {row['split']} | {row['horizon']} | {interval(state, '.3f')} | {verdict(state)} | "
                             f"{interval(reward, '.3f')} | {verdict(reward)} |")
    return "\n".join(lines) + "\n"


@cli_entry
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    check_args(args)
    task = get_task(args.task)
    # cheap checks first: model folders (model.json), then every dataset, before any model is scored
    metas = {name: read_model_meta(model_dir) for name, model_dir in args.models}
    kinds = {name: str(meta["kind"]) for name, meta in metas.items()}
    reference = pick_reference(args, kinds)
    data = load_datasets(task.name, args.ood)
    torch.set_num_threads(args.threads)
    models = {name: load_dynamics(model_dir, task, device=args.device) for name, model_dir in args.models}

    notes: list[str] = []
    plan: dict[str, dict[str, Any]] = {}
    loop = [h for h in args.horizons if h > 1]
    for dataset, transitions in data.items():
        if dataset == task.name:
            rows, split = in_distribution_rows(models, transitions, task.name, args.samples, args.seed, notes)
            loop_split = "in-dist"
        else:
            rows, split, loop_split = one_step_rows(transitions, None, args.samples, args.seed), "ood", "ood"
        starts = open_loop_starts(transitions, max(loop), args.starts, args.seed) if loop else np.zeros(0, np.int64)
        if loop and starts.size < args.starts:
            notes.append(f"{dataset}: {starts.size} episode windows of {max(loop)} steps, fewer than --starts {args.starts}")
        plan[dataset] = {"rows": rows, "starts": starts, "split": split, "loop_split": loop_split}

    started = time.perf_counter()
    errors, seconds = score(models, data, plan, args.horizons)
    rows = table_rows(errors, plan, args.horizons, reference, args.resamples, args.seed)
    first_etm = next((name for name, kind in kinds.items() if kind == "etm"), None)
    report = {
        "command": f"python {SCRIPT} {shlex.join(argv)}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "device": device_name(args.device),
        "task": task.name,
        "reference": reference,
        "task_split": plan[task.name]["split"],
        "claim": {"etm": first_etm, "reference": reference} if first_etm is not None and first_etm != reference else None,
        "settings": {key: getattr(args, key) for key in ("horizons", "samples", "starts", "resamples", "seed", "threads", "ood")}
        | {"level": LEVEL},
        "models": {
            name: {"dir": str(model_dir), "kind": kinds[name], "preset": models[name].config.preset, "meta": models[name].meta}
            for name, model_dir in args.models
        },
        "notes": notes,
        "wall_s": time.perf_counter() - started,
        "seconds": seconds,
        "rows": rows,
    }
    text = markdown(report)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, text)
        json_path = args.out.with_suffix(".json")
        atomic_write_text(json_path, json.dumps(report, indent=2, default=str) + "\n")
        print(f"wrote {args.out} and {json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
