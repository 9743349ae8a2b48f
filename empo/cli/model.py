"""``empo-model``: train a transition model (ETM or FTM) and measure its transition error.

    empo-model train --task hopper-medium --model etm --preset quick
    empo-model train --resume runs/models/hopper-medium/etm-quick-seed0
    empo-model eval --model-dir runs/models/hopper-medium/etm-quick-seed0 --json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from empo.cli.common import (
    ArgumentParser,
    add_device_argument,
    add_seed_argument,
    add_threads_argument,
    cli_entry,
    int_range,
    output_file,
    output_folder,
    positive_int,
    resolve_device,
    seed_everything,
    start_threads,
)
from empo.config import MODEL_PRESETS
from empo.errors import EmpoError
from empo.utils import atomic_write, atomic_write_text

RUN_JSON = "run.json"
ERROR_CSV = "transition_error.csv"
MAX_HORIZON = 10_000
MAX_BATCH = 10_000_000


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="empo-model",
        description="Train transition models (ETM: energy + Langevin sampler; FTM: MOPO's Gaussian ensemble) "
        "and evaluate their transition error. See docs/models.md.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser(
        "train",
        help="fit a model on a task's dataset",
        description="Fit an ETM or FTM ensemble on a task's dataset (D4RL qlearning semantics). Writes "
        "config.yaml, checkpoint.pt (every epoch), train_log.csv, tb/ (TensorBoard) and the final "
        "model (model.pt + model.json) into the output directory.",
        epilog="examples:\n  empo-model train --task hopper-medium --model etm --preset quick\n"
        "  empo-model train --task hopper-medium --model ftm --set ftm.max_epochs=20\n"
        "  empo-model train --resume runs/models/hopper-medium/etm-quick-seed0\n"
        "  empo-model train --resume runs/models/hopper-medium/etm-quick-seed0 --finish   # keep the model as it is",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--task", help="task name, e.g. hopper-medium (read from the run when resuming)")
    train.add_argument("--model", choices=("etm", "ftm"), help="model kind (read from the run when resuming)")
    train.add_argument(
        "--preset",
        choices=MODEL_PRESETS,
        default="paper",
        help="settings: paper (the published settings, docs/method.md; a GPU recipe), quick (ETM about 22 min, FTM about 3 min on 1M transitions, 2-core CPU), "
        "quick-warm (the quick ETM with warm-started chains: more updates at a quarter of the cost each, about 18 min; docs/models.md), "
        "quick-accurate (quick-warm with one mean head per member trained 8x per update; 4,400 updates, about 15 min on an idle "
        "2-core CPU, 8,400 on halfcheetah-medium: about as accurate as the quick FTM or more; docs/models.md), "
        "learn (both kinds fitted until their holdout error stops improving, under a cap: the published FTM capped at 16 passes, "
        "about 45 min of one thread; quick-accurate's ETM capped at 8,800 updates; docs/models.md 'Fits that stop'), "
        "smoke (seconds; checks the plumbing) (default: paper)",
    )
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set etm.epochs=10 --set etm.train_langevin.steps=20 (repeatable)",
    )
    add_seed_argument(train)
    add_device_argument(train)
    train.add_argument(
        "--run-dir", "--out", dest="out", type=Path, help="output directory (default: runs/models/<task>/<model>-<preset>-seed<seed>)"
    )
    train.add_argument("--resume", type=Path, metavar="DIR", help="continue the interrupted run in DIR from its checkpoint")
    train.add_argument(
        "--finish",
        action="store_true",
        help="with --resume: train no further and save the model the checkpoint holds, as the fit would at its end "
        "(the best snapshot, the averaged weights, the elites); for a fit whose holdout error has flattened",
    )
    source = train.add_mutually_exclusive_group()
    source.add_argument("--d4rl-path", type=Path, metavar="FILE", help="read the dataset from this D4RL hdf5 file")
    source.add_argument("--minari-id", metavar="ID", help="read the dataset from this local Minari dataset id")
    add_threads_argument(train)
    train.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=True, help="show a progress bar (default: on)"
    )

    evaluate = sub.add_parser(
        "eval",
        help="transition error of a trained model",
        description='Transition error in raw units (docs/method.md, "Transition error"): one-step MSE of next state and '
        "reward on the model's holdout (in distribution) and on the other built levels of the same env "
        "(out of distribution), and open-loop h-step error along real episodes. Prints a table, writes "
        f"{ERROR_CSV} into the model directory.",
        epilog="example:\n  empo-model eval --model-dir runs/models/hopper-medium/etm-quick-seed0 --task hopper-random",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument("--model-dir", type=Path, required=True, help="directory written by `empo-model train`")
    evaluate.add_argument(
        "--task",
        dest="tasks",
        action="append",
        default=[],
        metavar="TASK",
        help="out-of-distribution dataset to test on (repeatable; default: every built level of the model's env)",
    )
    evaluate.add_argument(
        "--horizons", type=int_range(1, MAX_HORIZON), nargs="+", default=[1, 5, 10], help="open-loop horizons (default: 1 5 10)"
    )
    evaluate.add_argument("--max-samples", type=positive_int, default=10000, help="one-step rows per dataset (default: 10000)")
    evaluate.add_argument("--max-starts", type=positive_int, default=1000, help="open-loop start states per dataset (default: 1000)")
    evaluate.add_argument("--batch-size", type=int_range(1, MAX_BATCH), default=4096, help="prediction batch size (default: 4096)")
    add_seed_argument(evaluate, help="seed of the row subsets")
    source = evaluate.add_mutually_exclusive_group()
    source.add_argument("--d4rl-path", type=Path, metavar="FILE", help="the model's own dataset as a D4RL hdf5 file")
    source.add_argument("--minari-id", metavar="ID", help="the model's own dataset as a local Minari dataset id")
    add_device_argument(evaluate)
    add_threads_argument(evaluate)
    evaluate.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    return parser


def run_train(args: argparse.Namespace) -> int:
    from empo.cli.checks import check_model_checkpoint, check_model_settings, folder_kind, read_model_run
    from empo.data import get_task, load_transitions
    from empo.models import load_model_config, train_dynamics
    from empo.models.config import parse_overrides

    resume = args.resume is not None
    if args.finish and not resume:
        raise EmpoError("--finish ends an interrupted fit: give it with --resume DIR")
    if resume:
        run = read_model_run(args.resume)
        for key, given in (("task", args.task), ("model", args.model)):
            if given is not None and given != run[key]:
                raise EmpoError(f"--resume {args.resume}: the run has --{key} {run[key]}, not {given}")
        if args.out is not None and args.out != args.resume:
            raise EmpoError("give either --run-dir (--out) or --resume, not both")
        task_name, kind, out = run["task"], run["model"], args.resume
        d4rl_path = args.d4rl_path or run.get("d4rl_path")
        minari_id = args.minari_id or run.get("minari_id")
        preset, seed, overrides = run["preset"], int(run["seed"]), run.get("overrides", {})
    else:
        if args.task is None or args.model is None:
            raise EmpoError("train needs --task and --model (or --resume DIR)")
        task_name, kind, preset, seed = args.task, args.model, args.preset, args.seed
        overrides = parse_overrides(args.overrides)
        out = output_folder(args.out or Path("runs") / "models" / task_name / f"{kind}-{preset}-seed{seed}", "--run-dir")
        if folder_kind(out) == "empo-train":
            raise EmpoError(f"--run-dir {out}: a run folder of empo-train is there; give a new folder for the model")
        d4rl_path, minari_id = args.d4rl_path, args.minari_id
    task = get_task(task_name)
    config = load_model_config(kind, preset, overrides, task=task.name)
    check_model_settings(config)
    device = resolve_device(args.device)
    if resume:
        check_model_checkpoint(out, kind, task.obs_dim, task.act_dim, task.env.termination)
    transitions = load_transitions(task.name, d4rl_path=d4rl_path, minari_id=minari_id)
    threads = start_threads(args.threads)
    seed_everything(seed)
    out.mkdir(parents=True, exist_ok=True)
    run = {
        "task": task.name,
        "model": kind,
        "preset": preset,
        "seed": seed,
        "overrides": overrides,
        "d4rl_path": str(d4rl_path) if d4rl_path else None,
        "minari_id": minari_id,
    }
    run_text = json.dumps(run, indent=2)
    if not (resume and (out / RUN_JSON).read_text() == run_text):
        atomic_write_text(out / RUN_JSON, run_text)
    print(
        f"training {kind} ({preset}) on {task.name}: {len(transitions.qlearning()):,} transitions from "
        f"{transitions.source}, device {device}, out {out}"
    )
    try:
        train_dynamics(
            transitions, task, config, out, device=device, seed=seed, progress=args.progress, resume=resume, threads=threads,
            finish=args.finish,
        )
    except KeyboardInterrupt:
        if (out / "checkpoint.pt").is_file():
            print(f"interrupted; continue with: empo-model train --resume {out}\n"
                  f"or keep the model as it is now: empo-model train --resume {out} --finish", file=sys.stderr)
        raise
    print(f"saved {kind} model to {out}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import numpy as np

    from empo.cli.checks import check_model_dir, task_named
    from empo.data import LEVELS, get_task, load_transitions
    from empo.evaluation.transition_error import format_table, transition_error_table
    from empo.models import load_dynamics
    from empo.models.dynamics import read_model_meta

    check_model_dir(args.model_dir)
    meta = read_model_meta(args.model_dir)
    task_name = meta.get("meta", {}).get("task")
    if task_name is None:
        raise EmpoError(f"{args.model_dir / 'model.json'}: does not name the task the model was trained on (meta.task)")
    task = task_named(task_name, f"{args.model_dir / 'model.json'}: meta.task")
    output_file(args.model_dir / ERROR_CSV, "--model-dir")
    device = resolve_device(args.device)
    model = load_dynamics(args.model_dir, task, device=device)
    notes: list[str] = []

    datasets: dict[str, tuple[Any, str, Any]] = {}
    own = load_transitions(task.name, d4rl_path=args.d4rl_path, minari_id=args.minari_id)
    n_saved = model.meta.get("n_transitions")
    holdout = model.holdout_index.cpu().numpy()
    if n_saved is not None and len(own.qlearning()) != int(n_saved):
        notes.append(
            f"{task.name}: the dataset has {len(own.qlearning())} transitions, the model was trained on "
            f"{n_saved}; in-distribution rows are a random subset instead of the holdout"
        )
        holdout = np.arange(len(own.qlearning()))
    datasets[task.name] = (own, "holdout", holdout)
    start_threads(args.threads)

    explicit = bool(args.tasks)
    others = args.tasks or [f"{task.env.name}-{level}" for level in LEVELS if level != task.level]
    for name in others:
        other = get_task(name)
        if (other.obs_dim, other.act_dim) != (task.obs_dim, task.act_dim):
            raise EmpoError(f"--task {name}: its sizes differ from the model's task {task.name}")
        try:
            datasets[other.name] = (load_transitions(other.name), "ood", None)
        except EmpoError as exc:
            if explicit:
                raise
            notes.append(f"{other.name}: skipped: {exc}")
    rows = transition_error_table(
        model,
        datasets,
        horizons=tuple(args.horizons),
        max_samples=args.max_samples,
        max_starts=args.max_starts,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    def write_table(path: Path) -> None:
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0].as_dict()))
            writer.writeheader()
            writer.writerows(r.as_dict() for r in rows)

    atomic_write(args.model_dir / ERROR_CSV, write_table)
    if args.json:
        print(json.dumps({"model_dir": str(args.model_dir), "kind": model.kind, "task": task.name,
                          "rows": [r.as_dict() for r in rows], "notes": notes}, indent=2))
    else:
        print(f"transition error of the {model.kind} model in {args.model_dir} (trained on {task.name}), raw units")
        print(format_table(rows))
        for note in notes:
            print(f"note: {note}")
        print(f"wrote {args.model_dir / ERROR_CSV}")
    return 0


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "train":
        return run_train(args)
    return run_eval(args)


if __name__ == "__main__":
    sys.exit(main())
