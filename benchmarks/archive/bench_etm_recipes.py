"""Quick-ETM recipes at equal compute: holdout and out-of-distribution error against CPU time.

Each recipe is the quick model preset (configs/models/quick.yaml) plus overrides, chiefly how the
training negatives are drawn (the cost of an ETM update is almost all their Langevin chains). A
recipe's fit runs on one torch thread until its CPU seconds reach ``--budget-min`` (evaluation
excluded; the fit's own per-epoch holdout check counts); at each of ``--marks`` (CPU minutes) it is scored on the task's holdout (one-step) and
on other datasets of the env (one-step and ``--horizon``-step open loop on the dataset's actions),
next to the FTM given with ``--ftm``. Process CPU time, not wall time, is the budget, so that
recipes compare fairly on a shared machine; ``--time-updates`` measures seconds per update of each
recipe at 1 and 2 threads side by side, to turn updates into wall time on an idle machine.
A rerun resumes unfinished fits from their checkpoints and reuses finished ones.

    python benchmarks/archive/bench_etm_recipes.py --task hopper-medium --recipes quick head-neg10 \\
        --ftm ~/.empo/fidelity/hopper-medium/ftm-quick-s0 --ood hopper-random hopper-medium-expert hopper-expert \\
        [--budget-min 30] [--marks 5 10 20 30] [--work DIR] [--out FILE]
    python benchmarks/archive/bench_etm_recipes.py --task hopper-medium --recipes quick head-neg10 --time-updates 20
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from datetime import date
from pathlib import Path
from typing import Any

import torch

from empo.config import from_dict, load_yaml, to_dict
from empo.data import load_transitions
from empo.data.tasks import get_task
from empo.evaluation.transition_error import multi_step_error, one_step_error
from empo.models import DynamicsModel, ModelConfig, load_dynamics, load_model_config, train_dynamics
from empo.utils import atomic_write_text, device_name, git_commit

HEAD_SAMPLERS = {"mean_head": True, "rollout_langevin": {"init": "mean_head", "steps": 10}, "eval_langevin": {"init": "mean_head"}}

# name -> (what it is, etm overrides over the quick preset)
RECIPES: dict[str, tuple[str, dict[str, Any]]] = {
    "quick": ("the quick preset: 8 negatives from uniform starts, 50 Langevin steps; samplers from zero", {}),
    "quick-head": (
        "the quick preset's negatives, plus the mean head; samplers start from the head (rollout 10 steps)",
        HEAD_SAMPLERS,
    ),
    "head-neg10": (
        "negatives start at the mean head's prediction + N(0, 0.25), 10 steps; samplers start from the head",
        {**HEAD_SAMPLERS, "train_langevin": {"init": "mean_head", "init_noise": 0.25, "steps": 10}},
    ),
    "ens-head-neg10": (
        "head-neg10 with one mean head per member (etm.mean_head_ensemble): each member's chains start from its own guess",
        {**HEAD_SAMPLERS, "mean_head_ensemble": True, "train_langevin": {"init": "mean_head", "init_noise": 0.25, "steps": 10}},
    ),
    "ens-head4-neg10": (
        "ens-head-neg10 with 4 head updates per ETM update (etm.mean_head_updates: the heads alone, on fresh minibatches)",
        {**HEAD_SAMPLERS, "mean_head_ensemble": True, "mean_head_updates": 4,
         "train_langevin": {"init": "mean_head", "init_noise": 0.25, "steps": 10}},
    ),
    "ens-head8-neg10": (
        "ens-head-neg10 with 8 head updates per ETM update",
        {**HEAD_SAMPLERS, "mean_head_ensemble": True, "mean_head_updates": 8,
         "train_langevin": {"init": "mean_head", "init_noise": 0.25, "steps": 10}},
    ),
    "ens-bighead-neg10": (
        "ens-head-neg10 with heads of the FTM's size: 4 x 200 per member (etm.mean_head_layers, mean_head_hidden_size)",
        {**HEAD_SAMPLERS, "mean_head_ensemble": True, "mean_head_layers": 4, "mean_head_hidden_size": 200,
         "train_langevin": {"init": "mean_head", "init_noise": 0.25, "steps": 10}},
    ),
    "ens-smallhead-neg10": (
        "ens-head-neg10 with smaller heads: 2 x 64 per member",
        {**HEAD_SAMPLERS, "mean_head_ensemble": True, "mean_head_hidden_size": 64,
         "train_langevin": {"init": "mean_head", "init_noise": 0.25, "steps": 10}},
    ),
    "head-neg10-wide": (
        "head-neg10 with wider starts for the negatives: the head's prediction + N(0, 1)",
        {**HEAD_SAMPLERS, "train_langevin": {"init": "mean_head", "init_noise": 1.0, "steps": 10}},
    ),
    "head-neg5": (
        "negatives start at the mean head's prediction + N(0, 0.25), 5 steps; samplers start from the head",
        {**HEAD_SAMPLERS, "train_langevin": {"init": "mean_head", "init_noise": 0.25, "steps": 5}},
    ),
    "head-neg10-4x200": (
        "head-neg10 with the published network size (4 x 200) for the energies (the head: 2 x 200)",
        {**HEAD_SAMPLERS, "hidden_size": 200, "hidden_layers": 4, "train_langevin": {"init": "mean_head", "init_noise": 0.25, "steps": 10}},
    ),
    "pos-neg10": (
        "negatives start at the true target + N(0, 0.25), 10 steps (contrastive divergence); samplers from the head",
        {**HEAD_SAMPLERS, "train_langevin": {"init": "positive", "init_noise": 0.25, "steps": 10}},
    ),
    "uniform-neg10": (
        "negatives from uniform starts, 10 steps (the quick preset before 2026-11-25); samplers from the head",
        {**HEAD_SAMPLERS, "train_langevin": {"steps": 10}},
    ),
}


def recipe_config(name: str, epochs: int = 100000) -> Any:
    _, overrides = RECIPES[name]
    return load_model_config("etm", "quick", {"etm": {**overrides, "epochs": epochs}})


def score(
    model: DynamicsModel, task_data: Any, ood: dict[str, Any], horizon: int, samples: int, starts: int
) -> dict[str, float]:
    """Holdout one-step next-state MSE, and per OOD dataset one-step and open-loop ``horizon`` MSE."""
    holdout = model.holdout_index.cpu().numpy() if model.holdout_index is not None else None
    out = {"holdout": one_step_error(model, task_data, holdout, max_samples=samples)["next_obs_mse"]}
    for name, data in ood.items():
        out[f"{name} 1"] = one_step_error(model, data, max_samples=samples)["next_obs_mse"]
        out[f"{name} {horizon}"] = multi_step_error(model, data, (horizon,), max_starts=starts)[horizon]["next_obs_mse"]
    return out


def recipe_dir(name: str, args: argparse.Namespace) -> Path:
    """A recipe's fit: ``WORK/TASK/NAME`` for seed 0 (the folders recorded before --seed), ``NAME-sN`` otherwise."""
    return args.work / args.task / (name if args.seed == 0 else f"{name}-s{args.seed}")


def recorded_curve(name: str, args: argparse.Namespace) -> dict[str, Any]:
    path = recipe_dir(name, args) / "curve.json"
    if not path.is_file():
        raise SystemExit(f"--no-fit: {path} does not exist (run the recipe {name!r} first)")
    return json.loads(path.read_text())


def check_recorded_config(name: str, out_dir: Path) -> None:
    """A recipe's folder must hold a fit of the recipe as defined now: an edited recipe would
    otherwise resume (or report) the old fit under the new description."""
    saved_path = out_dir / "config.yaml"
    if not saved_path.is_file():
        return
    saved, wanted = from_dict(ModelConfig, load_yaml(saved_path), where=str(saved_path)), recipe_config(name)
    if saved != wanted:
        saved_etm, wanted_etm = to_dict(saved.etm), to_dict(wanted.etm)
        keys = sorted(k for k in wanted_etm if saved_etm[k] != wanted_etm[k])
        raise SystemExit(f"{saved_path}: the fit there has other settings than the recipe {name!r} now ({', '.join(keys) or 'top-level keys'}); "
                         "give another --work, or remove the folder to refit")


def run_recipe(name: str, args: argparse.Namespace, task: Any, data: Any, ood: dict[str, Any]) -> dict[str, Any]:
    out_dir = recipe_dir(name, args)
    curve_path = out_dir / "curve.json"
    check_recorded_config(name, out_dir)
    state = json.loads(curve_path.read_text()) if curve_path.is_file() else {"points": [], "cpu_s": 0.0, "done": False}
    marks = sorted(m * 60.0 for m in args.marks if m <= args.budget_min) or [args.budget_min * 60.0]
    pending = [m for m in marks if not any(p["mark_s"] == m for p in state["points"])]
    if not pending:
        print(f"{name}: every mark scored before, reusing {curve_path}")
        return state
    if state["done"]:  # a larger --budget-min or new --marks: the fit goes on from its last checkpoint
        late = [m for m in pending if m < state["cpu_s"]]
        if late:  # the fit is past them: they cannot be scored at their time any more
            print(f"{name}: the fit is past the marks {[m / 60 for m in late]} (CPU min); they stay unscored")
            pending = [m for m in pending if m not in late]
            if not pending:
                return state
        print(f"{name}: continuing the recorded fit to the marks {[m / 60 for m in pending]} (CPU min)")
        state.pop("by_eval_steps", None)  # scored on the shorter fit
    base = state["cpu_s"]
    started = time.process_time()
    eval_cpu = 0.0

    def on_epoch(epoch: int, model: DynamicsModel) -> bool:
        nonlocal eval_cpu
        fit_cpu = base + time.process_time() - started - eval_cpu
        state["cpu_s"], state["epoch"] = fit_cpu, epoch
        # recorded before the scoring: this epoch's checkpoint is saved, so a run cut off while scoring
        # resumes after this epoch and must count its CPU time (the mark is then scored an epoch later)
        atomic_write_text(curve_path, json.dumps(state, indent=1))
        updates = epoch * model.config.etm.steps_per_epoch
        while pending and fit_cpu >= pending[0]:
            mark = pending.pop(0)
            t0 = time.process_time()
            errors = score(model, data, ood, args.horizon, args.samples, args.starts)
            eval_cpu += time.process_time() - t0
            point = {"mark_s": mark, "cpu_s": fit_cpu, "epoch": epoch, "updates": updates, **errors}
            state["points"].append(point)
            print(f"{name}: {fit_cpu / 60:.1f} CPU min, {updates} updates: " + ", ".join(f"{k} {v:.4g}" for k, v in errors.items()), flush=True)
        state["done"] = not pending
        atomic_write_text(curve_path, json.dumps(state, indent=1))
        return state["done"]

    out_dir.mkdir(parents=True, exist_ok=True)
    resume = (out_dir / "checkpoint.pt").is_file()
    train_dynamics(data, task, recipe_config(name), out_dir, seed=args.seed, progress=False, resume=resume, on_epoch=on_epoch)
    return state


def eval_key(steps: int, step_size: float | None) -> str:
    """Where a rescoring is kept in curve.json: "10" (the recipe's own step sizes) or "10@0.01"."""
    return str(steps) if step_size is None else f"{steps}@{step_size:g}"


def parse_eval_key(key: str) -> tuple[int, float]:
    steps, _, size = key.partition("@")
    return int(steps), float(size) if size else float("inf")  # the recipe's own step size sorts last


def score_eval_steps(name: str, args: argparse.Namespace, data: Any, ood: dict[str, Any], state: dict[str, Any]) -> None:
    """The finished fit scored with its evaluation sampler cut to each of ``--eval-steps`` steps, and
    with each ``--eval-step-sizes`` first step size (the schedule's start; its end is unchanged)."""
    out_dir = recipe_dir(name, args)
    model = load_dynamics(out_dir)
    sampler = model.config.etm.eval_langevin
    by_steps = state.setdefault("by_eval_steps", {})
    wanted = {"holdout"} | {f"{ood_name} {h}" for ood_name in ood for h in (1, args.horizon)}
    for steps in args.eval_steps:
        for step_size in [None] if steps == 0 or not args.eval_step_sizes else args.eval_step_sizes:
            key = eval_key(steps, step_size)
            if wanted <= set(by_steps.get(key, {})) or (steps == 0 and sampler.init in ("zeros", "uniform")):
                continue  # done before on every dataset asked for; or no steps from a fixed start, which predicts nothing
            changes: dict[str, Any] = {"steps": steps}
            if step_size is not None:
                changes["step_size_start"] = step_size
            model.config.etm.eval_langevin = dataclasses.replace(sampler, **changes)
            by_steps[key] = score(model, data, ood, args.horizon, args.samples, args.starts)
            print(f"{name}, {key} evaluation steps: " + ", ".join(f"{k} {v:.4g}" for k, v in by_steps[key].items()), flush=True)
            atomic_write_text(out_dir / "curve.json", json.dumps(state, indent=1))


def one_update(trainer: Any, timer: Any) -> None:
    """One ETM update on a minibatch drawn as the fit's epochs draw them (the recipes fix steps_per_epoch)."""
    trainer.update(next(trainer.minibatch_indices()), timer)


def time_updates(names: list[str], args: argparse.Namespace, task: Any, data: Any) -> dict[str, dict[int, float]]:
    """Seconds per ETM update of each recipe at 1 and 2 threads, interleaved (ratios side by side)."""
    from empo.models.etm import ETMDynamics, ETMTrainer
    from empo.models.fitting import DeviceTimer
    from empo.models.train import _tensors

    x, y = _tensors(data.qlearning(), torch.device("cpu"))
    x, y = x[:100000], y[:100000]
    results: dict[str, dict[int, float]] = {name: {} for name in names}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for name in names:
            config = recipe_config(name)
            model = ETMDynamics(task.obs_dim, task.act_dim, task.env.termination, config)
            model.fit_scalers(x, y)
            trainer = ETMTrainer(model, x, y, x[:10], y[:10], torch.Generator().manual_seed(0))
            timer = DeviceTimer(torch.device("cpu"))
            for _ in range(3):
                one_update(trainer, timer)
            started = time.perf_counter()
            for _ in range(args.time_updates):
                one_update(trainer, timer)
            results[name][threads] = (time.perf_counter() - started) / args.time_updates
            print(f"{name}: {threads} thread(s): {results[name][threads]:.3f} s/update", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="hopper-medium")
    parser.add_argument("--recipes", nargs="+", default=["quick", "head-neg10"], choices=sorted(RECIPES))
    parser.add_argument("--ftm", type=Path, help="a fitted quick FTM of the task, scored on the same rows")
    parser.add_argument("--ood", nargs="*", default=[], help="other tasks of the env, as out-of-distribution data")
    parser.add_argument("--budget-min", type=float, default=30.0, help="CPU minutes of fit per recipe (one thread)")
    parser.add_argument("--marks", type=float, nargs="+", default=[5, 10, 20, 30], help="CPU minutes at which to score")
    parser.add_argument("--horizon", type=int, default=5)
    parser.add_argument("--samples", type=int, default=1000, help="rows for one-step errors")
    parser.add_argument("--starts", type=int, default=300, help="starts for open-loop errors")
    parser.add_argument("--eval-steps", type=int, nargs="*", default=[], help="also score each finished fit with its evaluation sampler cut to these step counts")
    parser.add_argument("--eval-step-sizes", type=float, nargs="*", default=[],
                        help="with --eval-steps: also rescore with these first step sizes of the evaluation sampler's schedule")
    parser.add_argument("--time-updates", type=int, default=0, help="only time N updates per recipe at 1 and 2 threads")
    parser.add_argument("--seed", type=int, default=0, help="the fits' seed (folders NAME-sN beside seed 0's NAME)")
    parser.add_argument("--work", type=Path, default=Path.home() / ".empo" / "bench-etm-recipes")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--no-fit", action="store_true", help="fit nothing: report the points recorded so far (an unfinished recipe as far as it got)")
    args = parser.parse_args()
    task = get_task(args.task)
    data = load_transitions(args.task)
    if args.time_updates:
        timing = time_updates(args.recipes, args, task, data)
        path = args.work / args.task / "timing.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"date": date.today().isoformat(), "commit": git_commit(), "device": device_name("cpu"), "s_per_update": timing}, indent=1))
        print(f"wrote {path}")
        return 0
    torch.set_num_threads(1)
    ood = {name: load_transitions(name) for name in args.ood}
    if args.no_fit:
        curves = {name: recorded_curve(name, args) for name in args.recipes}
    else:
        curves = {name: run_recipe(name, args, task, data, ood) for name in args.recipes}
    for name, state in curves.items():
        if state["done"] and args.eval_steps:
            score_eval_steps(name, args, data, ood, state)
    ftm_errors = None
    if args.ftm is not None:
        ftm_errors = score(load_dynamics(args.ftm), data, ood, args.horizon, args.samples, args.starts)
        print("ftm: " + ", ".join(f"{k} {v:.4g}" for k, v in ftm_errors.items()))
    if args.out is not None:
        write_report(args, curves, ftm_errors)
    return 0


def cell(errors: dict[str, Any], column: str) -> str:
    """A table cell: the error, or "-" where it was not measured (a dataset added after that point was scored)."""
    return f"{errors[column]:.4g}" if column in errors else "-"


def write_report(args: argparse.Namespace, curves: dict[str, dict[str, Any]], ftm: dict[str, float] | None) -> None:
    columns = ["holdout"] + [f"{name} {h}" for name in args.ood for h in (1, args.horizon)]
    timing_path = args.work / args.task / "timing.json"
    timing = json.loads(timing_path.read_text())["s_per_update"] if timing_path.is_file() else {}
    lines = [
        f"# Quick-ETM recipes at equal CPU time, {args.task}",
        "",
        f"- command: `python benchmarks/archive/bench_etm_recipes.py --task {args.task} --recipes {' '.join(args.recipes)} "
        f"--budget-min {args.budget_min:g} --marks {' '.join(f'{m:g}' for m in args.marks)}"
        + (f" --ood {' '.join(args.ood)}" if args.ood else "") + (f" --ftm {args.ftm}" if args.ftm else "")
        + (f" --seed {args.seed}" if args.seed else "") + "`",
        f"- device: {device_name('cpu')}, one torch thread per fit; date {date.today().isoformat()}; commit {git_commit()}; fit seed {args.seed}",
        f"- next-state MSE in raw units: holdout one-step ({args.samples} rows of the fit's holdout); other datasets: "
        f"one-step ({args.samples} rows) and {args.horizon}-step open loop ({args.starts} starts, the dataset's actions)",
        "- CPU min: the fit's process CPU time (this scoring excluded; the fit's own per-epoch holdout check, holdout_eval_size rows, included), so that recipes compare fairly on a shared machine",
        "",
        "| recipe | CPU min | updates | " + " | ".join(columns) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    for name, state in curves.items():
        for p in state["points"]:
            lines.append(f"| {name} | {p['cpu_s'] / 60:.1f} | {p['updates']} | " + " | ".join(cell(p, c) for c in columns) + " |")
    if ftm is not None:
        lines.append(f"| quick FTM ({args.ftm.name}) | - | - | " + " | ".join(cell(ftm, c) for c in columns) + " |")
    scored = {name: state["by_eval_steps"] for name, state in curves.items() if state.get("by_eval_steps")}
    if scored:
        lines += [
            "",
            "Finished fits scored with their evaluation sampler cut to a number of steps (from the same start), "
            "at the recipe's own first step size or another one (`--eval-step-sizes`):",
            "",
            "| recipe | evaluation steps | first step size | " + " | ".join(columns) + " |",
            "|---|---|---|" + "---|" * len(columns),
        ]
        for name, by_steps in scored.items():
            for key, errors in sorted(by_steps.items(), key=lambda item: parse_eval_key(item[0])):
                steps, _, size = key.partition("@")
                lines.append(f"| {name} | {steps} | {size or 'own'} | " + " | ".join(cell(errors, c) for c in columns) + " |")
    lines += ["", "Recipes:", ""] + [
        f"- `{name}`: {RECIPES[name][0]}" + ("" if state["done"] else f" (stopped before its budget, at {state['cpu_s'] / 60:.1f} CPU min)")
        for name, state in curves.items()
    ]
    if timing:
        lines += ["", "Seconds per update (from --time-updates, side by side):", "", "| recipe | 1 thread | 2 threads |", "|---|---|---|"]
        lines += [f"| {name} | {t.get('1', float('nan')):.3f} | {t.get('2', float('nan')):.3f} |" for name, t in timing.items()]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    raise SystemExit(main())
