"""``empo-train``: train an EMPO or MOPO agent on a task, from the dataset to evaluated checkpoints."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from empo.cli.common import (
    ArgumentParser,
    add_device_argument,
    add_seed_argument,
    add_threads_argument,
    cli_entry,
    output_folder,
    positive_int,
    resolve_device,
    start_threads,
)
from empo.errors import EmpoError
from empo.loop.agents import AGENTS
from empo.loop.algorithms import ALGORITHMS
from empo.loop.config import PRESETS

DESCRIPTION = """\
Train an offline model-based agent (EMPO with an ETM ensemble, or MOPO with a Gaussian FTM
ensemble) on a task's dataset, evaluating it in the real gymnasium env every epoch.

Steps: (1) load the dataset, building it first when none is on disk (empo-data build);
(2) train the transition model, or reuse the cached one ($EMPO_HOME/models or ~/.empo/models,
keyed by task, model config, dataset and seed), or use --model-dir; (3) train SAC on
uncertainty-penalised model rollouts, with a checkpoint every epoch.
"""

EPILOG = """\
presets (cost of the agent phase; the model preset follows the same name):
  paper  3000 epochs x 1000 updates (3M SAC updates), 50k-state rollouts, 10 eval episodes an
         epoch: the published schedule. A GPU recipe: about 13 h on one H100 (9 h with
         --set runtime.cuda_graph=true), months on a 2-core CPU.
  quick  about an hour on a 2-core CPU: 120 epochs x 1000 updates, 2.5k-state rollouts, 5 eval
         episodes, the quick model preset (ETM about 22 min). Not the published recipe in two
         places: LayerNorm critics and EMPO penalty coefficient 5.0 (docs/training.md). A CPU
         check of the method, not the paper's scores: benchmarks/results/learning-hopper-medium-quick-*.md.
  learn  at most 3 h of one CPU thread, models included (being measured: docs/training.md,
         "The learn preset"): models fitted until their holdout error stops improving (under a
         cap), 200 epochs x 1000 updates, 10k-state rollouts, the penalty in data units,
         behaviour cloning on the real rows (sac.bc_weight 0.4; not published).
  smoke  seconds: 4 tiny epochs, to check that everything runs. Learns nothing.
  Without --preset: paper on a CUDA device, learn on a CPU (the first line says which).

run directory (default runs/<task>-<algo>-<preset>-s<seed>-<timestamp>):
  config.yaml (resolved config), run.json (inputs), progress.csv, tb/ (TensorBoard),
  summary.json, checkpoint.pt (written atomically every epoch; --resume continues from it)

examples:
  empo-train --task hopper-medium
  empo-train --task hopper-medium --algo mopo --preset quick --seed 1
  empo-train --task walker2d-medium-replay --set training.epochs=500 --set runtime.cuda_graph=true
  empo-train --task hopper-medium --preset quick --agent sb3-sac
  empo-train --resume runs/hopper-medium-empo-paper-s0-20250101-120000
"""


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="empo-train",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--task", help="task name, e.g. hopper-medium (<hopper|halfcheetah|walker2d>-<level>)")
    parser.add_argument("--algo", choices=tuple(ALGORITHMS), default="empo",
                        help="; ".join(f"{name}: {a.description}" for name, a in ALGORITHMS.items()) + "; default empo")
    parser.add_argument(
        "--agent", choices=tuple(AGENTS), default=None,
        help="who learns from the loop's data: " + "; ".join(f"{name}: {a.description}" for name, a in AGENTS.items())
        + " (docs/integrations.md); default sac",
    )
    parser.add_argument(
        "--preset",
        choices=PRESETS,
        help="cost preset (see below); default: paper on a CUDA device, learn on a CPU",
    )
    add_seed_argument(parser, help="seed of the model, the agent and evaluation")
    add_device_argument(parser)
    parser.add_argument("--model-dir", type=Path, help="use this trained transition model (empo-model train output)")
    parser.add_argument("--run-dir", type=Path, help="where this run writes (default runs/<task>-<algo>-<preset>-s<seed>-<time>)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--d4rl-path", type=Path, metavar="FILE", help="read the dataset from this D4RL hdf5 file")
    source.add_argument("--minari-id", metavar="ID", help="read the dataset from this local Minari dataset")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. training.epochs=100 or mopo.penalty_coef=1.0 (repeatable)",
    )
    parser.add_argument(
        "--stop-after", type=positive_int, metavar="N", help="stop after N epochs in this invocation (continue later with --resume)"
    )
    add_threads_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


# ---------------------------------------------------------------------------------- main
@cli_entry
def main(argv: list[str] | None = None) -> int:
    """``empo-train``: parse the arguments and run :func:`empo.pipeline.train_agent` or :func:`empo.pipeline.resume`."""
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    args = build_parser().parse_args(argv)
    from empo import pipeline
    from empo.cli.checks import check_agent_run, check_model_dir, check_model_settings, folder_kind
    from empo.cli.common import SEED_MAX
    from empo.data import get_task
    from empo.loop.config import resolve_config
    from empo.models.config import parse_overrides

    device = resolve_device(args.device)
    common: dict[str, Any] = {"device": device, "progress": not args.no_progress, "stop_after": args.stop_after}
    if args.resume is not None:
        if args.set:
            raise EmpoError("--set cannot change a run being resumed (its config.yaml is fixed)")
        for option in ("model_dir", "run_dir", "d4rl_path", "minari_id", "agent"):
            if getattr(args, option) is not None:
                name = "--" + option.replace("_", "-")
                raise EmpoError(f"{name} cannot be given with --resume (the run keeps the inputs it started with)")
        run_dir = args.resume
        check_agent_run(run_dir, "--resume", task=args.task, resuming=True)
        summary = pipeline.resume(run_dir, task=args.task, threads=start_threads(args.threads), **common)
        task_name = summary["task"]
    else:
        if args.task is None:
            raise EmpoError("give --task (e.g. --task hopper-medium) or --resume RUN_DIR")
        preset = args.preset or pipeline.default_preset(device)
        overrides = parse_overrides(args.set)
        if args.agent is not None:
            overrides["agent"] = args.agent
        config = resolve_config(args.task, args.algo, preset, args.seed, overrides)
        if not 0 <= config.seed <= SEED_MAX:
            raise EmpoError(f"training config: seed {config.seed} is out of range, expected a whole number from 0 to {SEED_MAX:,}")
        model_config = pipeline.model_config_for(config)  # the model settings too are checked before any slow work
        if model_config is not None:
            check_model_settings(model_config)
        if args.model_dir is not None:
            meta = check_model_dir(args.model_dir)
            if meta["kind"] != config.algorithm.model_kind:
                raise EmpoError(f"--model-dir {args.model_dir} holds a {meta['kind']} model, but {config.algo} needs a "
                                f"{config.algorithm.model_kind} model")
            task = get_task(config.task)
            if (meta["obs_dim"], meta["act_dim"]) != (task.obs_dim, task.act_dim):
                trained_on = meta.get("meta", {}).get("task", "another task")
                raise EmpoError(
                    f"--model-dir {args.model_dir}: a model of {trained_on} (observations of size {meta['obs_dim']}, actions "
                    f"of size {meta['act_dim']}), but {task.name} has {task.obs_dim} and {task.act_dim}"
                )
        run_dir = output_folder(args.run_dir or pipeline.default_run_dir(config), "--run-dir")
        if folder_kind(run_dir) == "empo-model train":
            raise EmpoError(f"--run-dir {run_dir}: a model folder of empo-model train is there; give a new folder for the run")
        command = " ".join(["empo-train", *(sys.argv[1:] if argv is None else argv)])
        summary = pipeline.train_agent(
            config, run_dir, model_dir=args.model_dir, d4rl_path=args.d4rl_path, minari_id=args.minari_id,
            threads=start_threads(args.threads), command=command, started=started, **common,
        )
        task_name = config.task
    from empo.evaluation.report import describe_scores

    state = "finished" if summary["status"] == "finished" else f"stopped after epoch {summary['epochs']} (continue with --resume {run_dir})"
    print(
        f"{summary['algo']} {task_name} seed {summary['seed']}: {state}; normalised score {describe_scores(summary)}; "
        f"{summary['updates']} updates in {summary['wall_time_s']:.0f} s; {run_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
