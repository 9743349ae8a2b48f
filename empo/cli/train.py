"""``empo-train``: train an EMPO or MOPO agent on a task, from the dataset to evaluated checkpoints."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from empo.cli.common import (
    add_device_argument,
    add_threads_argument,
    cli_entry,
    resolve_device,
    seed_everything,
    start_threads,
)
from empo.errors import EmpoError
from empo.utils import git_commit

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
  smoke  seconds: 4 tiny epochs, to check that everything runs. Learns nothing.
  Without --preset: paper on a CUDA device, quick on a CPU (the first line says which).

run directory (default runs/<task>-<algo>-<preset>-s<seed>-<timestamp>):
  config.yaml (resolved config), run.json (inputs), progress.csv, tb/ (TensorBoard),
  summary.json, checkpoint.pt (written atomically every epoch; --resume continues from it)

examples:
  empo-train --task hopper-medium
  empo-train --task hopper-medium --algo mopo --preset quick --seed 1
  empo-train --task walker2d-medium-replay --set training.epochs=500 --set runtime.cuda_graph=true
  empo-train --resume runs/hopper-medium-empo-paper-s0-20250101-120000
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="empo-train",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--task", help="task name, e.g. hopper-medium (<hopper|halfcheetah|walker2d>-<level>)")
    parser.add_argument("--algo", choices=("empo", "mopo"), default="empo", help="empo (ETM) or mopo (FTM); default empo")
    parser.add_argument(
        "--preset",
        choices=("paper", "quick", "smoke"),
        help="cost preset (see below); default: paper on a CUDA device, quick on a CPU",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the model, the agent and evaluation; default 0")
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
        "--stop-after", type=int, metavar="N", help="stop after N epochs in this invocation (continue later with --resume)"
    )
    add_threads_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


# --------------------------------------------------------------------------------- pieces
def empo_home() -> Path:
    return Path(os.environ.get("EMPO_HOME") or Path.home() / ".empo")


def dataset_fingerprint(transitions: Any) -> str:
    """Identifies the data a model was fit on: its source, size and a checksum of the arrays."""
    q = transitions.qlearning()
    sums = [float(getattr(q, name).sum(dtype="float64")) for name in ("observations", "actions", "rewards")]
    return json.dumps({"source": transitions.source, "rows": len(q), "sums": [round(s, 3) for s in sums]})


def model_cache_dir(task_name: str, model_config: Any, transitions: Any, seed: int) -> Path:
    from dataclasses import asdict

    blob = json.dumps({"model": asdict(model_config), "data": dataset_fingerprint(transitions)}, sort_keys=True)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:12]
    return empo_home() / "models" / f"{task_name}-{model_config.kind}-{digest}-s{seed}"


def load_dataset(task_name: str, d4rl_path: Path | None, minari_id: str | None, log=print):
    """The task's dataset; built first when none is on disk and no source is named."""
    from empo.data import ensure_dataset, load_transitions

    if d4rl_path is not None or minari_id is not None:
        return load_transitions(task_name, d4rl_path=d4rl_path, minari_id=minari_id)
    return ensure_dataset(task_name, log=log)


def obtain_model(
    config: Any, task: Any, transitions: Any, device: Any, model_dir: Path | None, progress: bool, log=print, threads: Any = None
):
    """(model, its directory): the given model, the cached one, or a newly trained (and cached) one."""
    from empo.models import load_dynamics, load_model_config, train_dynamics

    kind = config.algorithm.model_kind
    if kind == "simulator":
        from empo.envs.simulator import SimulatorDynamics

        if model_dir is not None:
            raise EmpoError("--model-dir cannot be used with model_kind=simulator (the simulator is the model)")
        log(f"model_kind=simulator: rollouts step the real {task.gym_id} env (a diagnostic, not offline RL)")
        return SimulatorDynamics(task, device), None
    if model_dir is not None:
        model = load_dynamics(model_dir, task, device=device)
        if getattr(model, "kind", kind) != kind:
            raise EmpoError(
                f"--model-dir {model_dir} holds a {model.kind} model, but {config.algo} needs a {kind} model"
            )
        return model, model_dir
    model_config = load_model_config(kind, config.model.preset, config.model.overrides or None)
    cache = model_cache_dir(task.name, model_config, transitions, config.seed)
    if (cache / "model.json").is_file() and (cache / "model.pt").is_file():
        log(f"using the cached {kind} model in {cache}")
        return load_dynamics(cache, task, device=device), cache
    resume = (cache / "checkpoint.pt").is_file()
    log(f"{'continuing' if resume else 'training'} the {kind} model ({config.model.preset} preset) in {cache}")
    model = train_dynamics(
        transitions, task, model_config, cache, device=device, seed=config.seed, progress=progress, resume=resume, threads=threads
    )
    return model.to(device), cache


def default_preset(device: Any, log=print) -> str:
    """The preset when none is named: the published recipe on a GPU, the quick one on a CPU."""
    if device.type == "cuda":
        log("preset: paper (no --preset given; the published recipe, about 13 h on one H100)")
        return "paper"
    log(f"preset: quick (no --preset given and the device is {device}: the paper preset is a GPU recipe that "
        "would take months here; --preset paper to run it anyway)")
    return "quick"


def default_run_dir(config: Any) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.task}-{config.algo}-{config.preset}-s{config.seed}-{stamp}"


# ---------------------------------------------------------------------------------- main
@cli_entry
def main(argv: list[str] | None = None, obtain: Callable[..., tuple[Any, Path | None]] | None = None) -> int:
    """``empo-train``. ``obtain`` replaces :func:`obtain_model` (same signature and result), so that
    a diagnostic can run the real command with a model of its own (benchmarks/diag_swap_penalty.py)."""
    args = build_parser().parse_args(argv)
    from empo.config import load_yaml
    from empo.data.tasks import get_task
    from empo.loop.config import config_from_dict, resolve_config
    from empo.loop.trainer import CHECKPOINT, Trainer
    from empo.models.config import parse_overrides

    if args.stop_after is not None and args.stop_after < 1:
        raise EmpoError(f"--stop-after must be >= 1, got {args.stop_after}")
    progress = not args.no_progress
    run_info: dict[str, Any] = {}

    if args.resume is not None:
        run_dir = args.resume
        if not (run_dir / "config.yaml").is_file():
            raise EmpoError(f"--resume {run_dir}: no config.yaml there; is it a run directory of empo-train?")
        config = config_from_dict(load_yaml(run_dir / "config.yaml"), where=str(run_dir / "config.yaml"))
        if args.task is not None and args.task != config.task:
            raise EmpoError(f"--resume {run_dir}: the run is for {config.task}, not {args.task}")
        if args.set:
            raise EmpoError("--set cannot change a run being resumed (its config.yaml is fixed)")
        run_json = run_dir / "run.json"
        run_info = json.loads(run_json.read_text()) if run_json.is_file() else {}
        if not (run_dir / CHECKPOINT).is_file():
            raise EmpoError(f"--resume {run_dir}: no {CHECKPOINT} (the run did not finish an epoch); start it again")
        model_dir = Path(run_info["model_dir"]) if run_info.get("model_dir") else args.model_dir
        d4rl_path = Path(run_info["d4rl_path"]) if run_info.get("d4rl_path") else args.d4rl_path
        minari_id = run_info.get("minari_id") or args.minari_id
    else:
        if args.task is None:
            raise EmpoError("give --task (e.g. --task hopper-medium) or --resume RUN_DIR")
        preset = args.preset or default_preset(resolve_device(args.device))
        config = resolve_config(args.task, args.algo, preset, args.seed, parse_overrides(args.set))
        run_dir = args.run_dir or default_run_dir(config)
        if (run_dir / CHECKPOINT).is_file():
            raise EmpoError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or pick another --run-dir")
        model_dir, d4rl_path, minari_id = args.model_dir, args.d4rl_path, args.minari_id

    task = get_task(config.task)
    device = resolve_device(args.device)
    from empo.loop.graphed import apply_tf32, check_runtime

    check_runtime(config.runtime, device)  # before the dataset and the model, which take minutes
    apply_tf32(config.runtime, device)  # the model fit too runs under the run's TF32 setting
    threads = start_threads(args.threads)
    seed_everything(config.seed)
    transitions = load_dataset(task.name, d4rl_path, minari_id)
    transitions.validate(task, origin=f"dataset of {task.name}")
    if obtain is None:
        model, used_model_dir = obtain_model(config, task, transitions, device, model_dir, progress, threads=threads)
    else:
        model, used_model_dir = obtain(config, task, transitions, device, model_dir, progress)

    run_dir.mkdir(parents=True, exist_ok=True)
    if args.resume is None:
        run_info = {
            "task": task.name,
            "model_dir": str(Path(used_model_dir).resolve()) if used_model_dir else None,
            "d4rl_path": str(d4rl_path) if d4rl_path else None,
            "minari_id": minari_id,
            "dataset_source": transitions.source,
            "device": str(device),
            "git_commit": git_commit(mark_dirty=False),
            "command": " ".join(["empo-train", *(sys.argv[1:] if argv is None else argv)]),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        (run_dir / "run.json").write_text(json.dumps(run_info, indent=2) + "\n")

    evaluator = None
    if config.training.eval_episodes > 0:
        from empo.evaluation.policy_eval import PolicyEvaluator

        evaluator = PolicyEvaluator(task, config.training.eval_episodes, device)
    dataset = transitions.qlearning().to_tensors(device)
    trainer = Trainer(
        config, dataset, model, run_dir, device=device, task=task, evaluator=evaluator, progress=progress, threads=threads
    )
    if args.resume is not None:
        trainer.load_checkpoint()
        if trainer.epoch >= config.training.epochs:
            print(f"{run_dir}: the run already finished ({trainer.epoch} epochs)")
        else:
            print(f"resuming {run_dir} after epoch {trainer.epoch} of {config.training.epochs}")
    else:
        print(f"run directory: {run_dir}")
    try:
        summary = trainer.run(stop_after_epochs=args.stop_after)
    finally:
        if evaluator is not None:
            evaluator.close()
    final, best = summary["final_normalized_score"], summary["best_normalized_score"]

    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.1f}"

    state = "finished" if summary["status"] == "finished" else f"stopped after epoch {summary['epochs']} (continue with --resume {run_dir})"
    print(
        f"{config.algo} {task.name} seed {config.seed}: {state}; normalised score final {fmt(final)}, "
        f"best {fmt(best)}; {summary['updates']} updates in {summary['wall_time_s']:.0f} s; {run_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
