"""``empo-sweep``: a grid of training runs on a process pool or a Ray cluster, restartable."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from empo.cli.common import MAX_THREADS, ArgumentParser, cli_entry, int_range, seed_int
from empo.errors import EmpoError

DESCRIPTION = """\
Run a grid of empo-train runs (tasks x algorithms x seeds x presets), each an ordinary run folder
under one sweep folder, indexed in sweep.json (config, status, scores, wall time, error). Give the
grid as a YAML spec (keys: tasks, algos, seeds, presets, overrides, engine, workers,
threads_per_run, gpus_per_run, ray_address, device) or with the flags below.

Without --out the sweep folder is runs/sweep-<presets>-<hash>, named after the grid (tasks, algos,
seeds, presets and overrides, from the flags or the spec alike; not the engine, workers, threads or
device): so the same command again finds its folder, says "resuming the sweep in ...", skips the
finished runs and resumes interrupted ones from their last checkpoint. A different grid gets a
different folder; --out picks one yourself (give the same --out, alone, to continue).

A failing run is recorded with its error and the others go on; Ctrl-C (or SIGINT or SIGTERM to
this process alone) stops and loses at most the current epoch of each run. Runs that need the same
transition model fit it once (a lock in the model cache), and a dataset missing on disk is built
once. Each run's output goes to its folder's log.txt. Report with empo-report; watch with
tensorboard --logdir SWEEP_FOLDER (a chart per task and algorithm in the Custom Scalars tab, the
final scores in the HParams tab; docs/sweeps.md).
"""

EPILOG = """\
examples:
  empo-sweep --tasks hopper-medium walker2d-medium --algos empo mopo --seeds 0 1 2 --presets quick --workers 2
  empo-sweep sweep.yaml                    # runs/sweep-<presets>-<hash>; the same command again resumes it
  empo-sweep sweep.yaml --out runs/sweep-quick
  empo-sweep --out runs/sweep-quick        # continue that sweep from its folder alone
  empo-sweep --tasks hopper-medium --seeds 0 1 --engine ray --ray-address auto    # an existing Ray cluster
"""


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="empo-sweep", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", nargs="?", type=Path, help="a sweep spec (YAML); flags given too override its keys")
    parser.add_argument("--tasks", nargs="+")
    parser.add_argument("--algos", nargs="+", help="default: empo mopo")
    parser.add_argument("--seeds", nargs="+", type=seed_int, help="default: 0")
    parser.add_argument("--presets", nargs="+", help="default: quick")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for every run (repeatable)")
    parser.add_argument("--engine", choices=("local", "ray"), help="local (a process pool, default) or ray")
    parser.add_argument("--workers", type=int_range(1, 1024), help="runs at once (default 1)")
    parser.add_argument("--threads-per-run", type=int_range(1, MAX_THREADS), help="torch CPU threads of each run (default 1)")
    parser.add_argument("--gpus-per-run", type=float, help="GPUs each Ray task declares (default 0)")
    parser.add_argument("--ray-address", help="join this Ray cluster (default: start a local Ray instance)")
    parser.add_argument("--device", help="torch device of every run (default cpu)")
    parser.add_argument(
        "--out",
        type=Path,
        help="the sweep folder (default runs/sweep-<presets>-<hash of the grid>, so the same grid resumes its "
        "folder; give the same --out to continue a sweep placed here)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.gpus_per_run is not None and not 0 <= args.gpus_per_run <= 1024:  # NaN fails both comparisons
        raise EmpoError(f"--gpus-per-run {args.gpus_per_run}: expected a number from 0 to 1024")
    from empo.config import load_yaml, merge
    from empo.models.config import parse_overrides
    from empo.sweep import SPEC_YAML, SweepSpec, find_sweep_dir, run_sweep

    data: dict = {}
    if args.spec is not None:
        data = load_yaml(args.spec)
        if not isinstance(data, dict):
            raise EmpoError(f"{args.spec}: expected a mapping of sweep keys")
    elif args.out is not None and (args.out / SPEC_YAML).is_file() and not args.tasks:
        data = load_yaml(args.out / SPEC_YAML)  # continue a sweep from its folder alone
    flags = {"tasks": args.tasks, "algos": args.algos, "seeds": args.seeds, "presets": args.presets, "engine": args.engine,
             "workers": args.workers, "threads_per_run": args.threads_per_run, "gpus_per_run": args.gpus_per_run,
             "ray_address": args.ray_address, "device": args.device}
    data.update({k: v for k, v in flags.items() if v is not None})
    if args.set:
        data["overrides"] = merge(data.get("overrides") or {}, parse_overrides(args.set))
    from empo.config import from_dict

    where = str(args.spec or "sweep flags")
    if not data.get("tasks"):
        # a misspelt key (e.g. 'task') is named before the missing tasks are
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(SweepSpec)})
        if unknown:
            from_dict(SweepSpec, {**data, "tasks": ["-"]}, where=where)
        raise EmpoError(f"{where}: give the tasks (--tasks hopper-medium ... or a spec file with 'tasks')")
    spec = from_dict(SweepSpec, data, where=where)
    if spec.engine == "local" and (spec.ray_address or spec.gpus_per_run):
        print("note: ray_address and gpus_per_run apply to --engine ray only; the local engine runs on --device")
    out = args.out or find_sweep_dir(spec)  # the same grid finds its folder: running it again resumes it
    index = run_sweep(spec, out, progress=not args.no_progress)
    failed = [r["run_id"] for r in index["runs"] if r["status"] in ("failed", "interrupted")]
    print(f"{out}: {len(index['runs']) - len(failed)} of {len(index['runs'])} runs done" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
