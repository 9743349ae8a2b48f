"""``empo-data``: build, inspect and list datasets; train the behaviour policies behind them."""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

from empo.cli.common import (
    ArgumentParser,
    add_seed_argument,
    add_threads_argument,
    cli_entry,
    existing_folder,
    int_range,
    output_folder,
    positive_int,
    start_threads,
)
from empo.data import get_task, load_transitions, task_names
from empo.errors import EmpoError

DESCRIPTION = """\
Datasets for offline RL on hopper, halfcheetah and walker2d (D4RL-style tasks such as hopper-medium).

Datasets are built locally from gymnasium MuJoCo envs and stored as Minari datasets under
$MINARI_DATASETS_PATH (default ~/.minari/datasets), id empo/<env>/<level>-v0. Real D4RL hdf5
files are read from --d4rl-path or from $D4RL_DATASET_DIR (default ~/.d4rl/datasets) under D4RL's
file names; any local Minari dataset is read with --minari-id.
"""

BUILD_HELP = """\
Collect a task's dataset and store it as a Minari dataset.
  random         uniform actions (1M steps: about 2 min on a 2-core CPU, 11-13 min when it is busy)
  medium, expert the shipped SAC behaviour policy, stochastic actions (1M steps: 1-2 min)
  medium-expert  medium + expert, --size steps each
  medium-replay  the replay buffer of the behaviour-training run up to the medium policy; needs
                 that run (`empo-data train-behaviour ENV-medium`: halfcheetah reached medium
                 after 90k SAC steps, 37 min on a shared 2-core CPU; hopper after 155k, 27 min;
                 walker2d after 335k, 2.4 h); --size does not apply
An interrupted build leaves nothing that reads as a dataset; a rebuild replaces the old one.
"""


def _add_task_args(parser: argparse.ArgumentParser, example: str) -> None:
    """The task as a positional argument or as --task (the other commands' spelling)."""
    parser.add_argument("task", nargs="?", help=f"{example} (or --task)")
    parser.add_argument("--task", dest="task_option", metavar="TASK", help="the task, as in empo-train and empo-model")


def _task_name(args: argparse.Namespace) -> str:
    given = [name for name in (args.task, args.task_option) if name is not None]
    if not given:
        raise EmpoError("give the task, e.g. hopper-medium (positional or --task)")
    if len(set(given)) > 1:
        raise EmpoError(f"two different tasks given: {given[0]} and --task {given[1]}")
    return given[0]


def _add_source_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--d4rl-path", metavar="FILE", help="read a real D4RL hdf5 file")
    group.add_argument("--minari-id", metavar="ID", help="read a local Minari dataset by id")


MAX_SIZE = 100_000_000  # steps of one build (D4RL's largest datasets hold 2M)
MAX_ENVS = 1000
MAX_STEPS = 10**10
MAX_EPISODES = 1000  # evaluation episodes are run side by side, one env each


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="empo-data", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = sub.add_parser(
        "build", help="collect a task's dataset", description=BUILD_HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _add_task_args(build, "e.g. hopper-medium")
    build.add_argument(
        "--size", type=int_range(), default=1_000_000, help="steps to collect (default: 1,000,000 as D4RL)"
    )
    add_seed_argument(build, help="seed of env resets and action noise")
    build.add_argument("--envs", type=int_range(1, MAX_ENVS), default=10, help="envs stepped in lockstep (default: 10)")
    build.add_argument(
        "--behaviour-dir",
        type=Path,
        help="a train-behaviour output folder whose policies (and medium_replay.npz) are used instead of the shipped ones",
    )
    build.add_argument("--no-progress", action="store_true", help="no progress bar")

    train = sub.add_parser(
        "train-behaviour",
        help="train the SAC behaviour policies behind the medium/expert datasets",
        description=(
            "Train SAC (stable-baselines3) online until its stochastic evaluation return reaches the D4RL medium band "
            "(TASK ENV-medium or ENV-medium-replay) and, for ENV-expert or ENV-medium-expert, on to the expert band. "
            "Writes ENV-medium.pt / ENV-expert.pt (actor weights) and medium_replay.npz into --out. "
            "On a 2-core CPU SAC runs at about 160 steps/s with a core to itself; halfcheetah reached medium after "
            "90k steps (37 min on a shared CPU), hopper after 155k (27 min), walker2d after 335k (2.4 h), "
            "expert levels longer (hopper expert after 230k steps, 65 min; halfcheetah expert after 475k, 5.7 h; walker2d expert after 500k, 2.6 h; both on a shared CPU). A policy in the band over 10 episodes must stay in it over --confirm-episodes. "
            "Ctrl-C or SIGTERM writes a checkpoint at the next step and stops; the same command resumes from it, "
            "as it does from the periodic checkpoint (--checkpoint-every) after a run was killed."
        ),
    )
    _add_task_args(train, "ENV-medium, ENV-medium-replay, ENV-expert or ENV-medium-expert")
    train.add_argument("--out", type=Path, help="output folder (default: $EMPO_HOME/behaviour/ENV, EMPO_HOME=~/.empo)")
    add_seed_argument(train, help="seed of SAC and its envs")
    train.add_argument(
        "--max-steps", type=int_range(1, MAX_STEPS), default=1_000_000, help="give up after this many env steps"
    )
    train.add_argument("--eval-every", type=positive_int, default=5000, help="env steps between evaluations (default: 5000)")
    train.add_argument(
        "--confirm-episodes",
        type=int_range(0, MAX_EPISODES),
        default=50,
        help="a policy whose 10-episode evaluation lands in a level's band is accepted only if its "
        "return over this many episodes is in the band too (default: 50)",
    )
    train.add_argument(
        "--suite-every",
        type=int_range(0),
        default=0,
        metavar="STEPS",
        help="also keep the actor every STEPS env steps (a multiple of --eval-every) in OUT/suite/ with its "
        "evaluation: a suite of policies of graded quality for off-policy evaluation (default: 0, none)",
    )
    train.add_argument(
        "--checkpoint-every",
        type=int_range(1, MAX_STEPS),
        default=50_000,
        metavar="STEPS",
        help="write a resumable checkpoint (agent and replay buffer, a few hundred MB) every STEPS env steps "
        "(default: 50,000)",
    )
    add_threads_argument(train)
    train.add_argument(
        "--install",
        action="store_true",
        help="copy the resulting policies into the package's shipped policies (for maintainers)",
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar (for logs written to a file)")

    suite = sub.add_parser(
        "suite",
        help="build a shipped policy suite for off-policy evaluation, or recompute its true values",
        description=(
            "A suite is ENV's policies of graded quality (empo-ope --policies suite): with --from, COUNT snapshots of a "
            "behaviour-training run (empo-data train-behaviour ENV-expert --suite-every 25000 keeps them in OUT/suite/) "
            "spread evenly over their evaluated returns, plus uniform random actions, copied into the package "
            "(empo/data/policies/suites/ENV-*, for maintainers) with each policy's true value: the mean discounted "
            "return of --episodes real episodes, cached in the suite's index (ENV-index.json). Without --from, the true values "
            "of the shipped suite are recomputed and written into its index (the package's, unless --out names another "
            "suites folder). Halfcheetah: 12 policies x 10 episodes took about 2 minutes."
        ),
    )
    suite.add_argument("env", choices=("hopper", "halfcheetah", "walker2d"), help="the env")
    suite.add_argument("--from", dest="sources", type=Path, nargs="+", metavar="DIR",
                       help="behaviour actors: train-behaviour output folders (their suite/ is searched) or .pt files")
    suite.add_argument("--count", type=int_range(2, 100), default=11, help="how many snapshots (default 11, + random)")
    suite.add_argument("--episodes", type=int_range(1, MAX_EPISODES), default=10, help="real episodes per true value (default 10)")
    add_seed_argument(suite, help="first env seed of the true-value episodes")
    suite.add_argument("--out", type=Path, help="suites folder (default: the package's empo/data/policies/suites)")
    suite.add_argument("--no-progress", action="store_true", help="no progress bar")

    sub.add_parser("list", help="list every task, whether it is built, and where")

    info = sub.add_parser("info", help="statistics of a task's dataset")
    _add_task_args(info, "e.g. hopper-medium")
    _add_source_args(info)
    info.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def cmd_build(args: argparse.Namespace) -> int:
    from empo.data.behaviour import policy_path
    from empo.data.build import build_dataset

    task = get_task(_task_name(args))
    if not 1 <= args.size <= MAX_SIZE:
        bound = "positive" if args.size < 1 else f"at most {MAX_SIZE:,}"
        raise EmpoError(f"--size must be {bound}, got {args.size} (expected a whole number from 1 to {MAX_SIZE:,})")
    if args.behaviour_dir is not None:
        existing_folder(args.behaviour_dir, "--behaviour-dir", "train-behaviour output folder")
        needed = {"medium": ["medium"], "expert": ["expert"], "medium-expert": ["medium", "expert"]}.get(task.level, [])
        files = [policy_path(task.env.name, level, args.behaviour_dir) for level in needed]
        if task.level == "medium-replay":
            files = [args.behaviour_dir / "medium_replay.npz"]
        for path in files:
            if not path.is_file():
                raise EmpoError(f"--behaviour-dir {args.behaviour_dir}: no {path.name} there (needed to build {task.name})")
    build_dataset(
        task,
        size=args.size,
        seed=args.seed,
        behaviour_dir=args.behaviour_dir,
        n_envs=args.envs,
        progress=not args.no_progress,
    )
    return 0


def cmd_train_behaviour(args: argparse.Namespace) -> int:
    from empo.data.behaviour import POLICY_DIR, check_behaviour_folder, policy_path, train_behaviour
    from empo.data.build import behaviour_root

    task = get_task(_task_name(args))
    if task.level == "random":
        raise EmpoError(f"{task.name} uses uniform random actions: there is no behaviour policy to train")
    until = "expert" if task.level in ("expert", "medium-expert") else "medium"
    for option, value in (("--eval-every", args.eval_every), ("--suite-every", args.suite_every)):
        if value > args.max_steps:
            raise EmpoError(f"{option} {value} is more than --max-steps {args.max_steps}: expected at most --max-steps")
    if args.suite_every % args.eval_every:
        raise EmpoError(f"--suite-every must be a multiple of --eval-every ({args.eval_every}), got {args.suite_every}")
    out = output_folder(args.out or behaviour_root() / task.env.name, "--out")
    check_behaviour_folder(out, task.env.name)
    started = time.time()
    threads = start_threads(args.threads)
    state = train_behaviour(task.env.name, out, until=until, seed=args.seed, max_steps=args.max_steps, eval_every=args.eval_every,
                            confirm_episodes=args.confirm_episodes, threads=threads, suite_every=args.suite_every,
                            checkpoint_every=args.checkpoint_every, progress=not args.no_progress)
    for level, meta in state["reached"].items():
        print(f"{task.env.name}-{level}: step {meta['train_steps']}, stochastic return {meta['stochastic_return']:.1f}")
    if args.install:
        for level in state["reached"]:
            shutil.copy2(policy_path(task.env.name, level, out), policy_path(task.env.name, level, POLICY_DIR))
            print(f"installed {policy_path(task.env.name, level, POLICY_DIR)}")
    print(f"done in {time.time() - started:.0f} s; outputs in {out}")
    return 0 if until in state["reached"] else 1


def cmd_list(args: argparse.Namespace) -> int:
    from empo.data.d4rl import find_d4rl_file
    from empo.data.minari_io import dataset_path, is_built, minari_root

    print(f"Minari root: {minari_root()}")
    print(f"{'task':28s} {'status':10s} where")
    for name in task_names():
        task = get_task(name)
        d4rl = find_d4rl_file(task)
        if d4rl is not None:
            status, where = "d4rl", str(d4rl)
        elif is_built(task.minari_id):
            status, where = "built", str(dataset_path(task.minari_id))
        else:
            status, where = "-", f"empo-data build {name}"
        print(f"{name:28s} {status:10s} {where}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    task = get_task(_task_name(args))
    transitions = load_transitions(task.name, d4rl_path=args.d4rl_path, minari_id=args.minari_id)
    summary = transitions.summary(task)
    if args.json:
        keys = ("transitions", "episodes", "terminals", "timeouts", "mean_return", "normalized_score", "source", "checksum")
        out = {key: summary[key] for key in keys}
        out["std_return"] = summary["std_return"]
        print(json.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}))
        return 0
    score = summary["normalized_score"]
    print(f"task              {task.name} ({task.gym_id})")
    print(f"source            {summary['source']}")
    print(f"transitions       {summary['transitions']} (after dropping timeout steps)")
    print(f"episodes          {summary['episodes']}")
    print(f"terminals         {summary['terminals']}")
    print(f"timeouts          {summary['timeouts']}")
    print(f"episode return    {summary['mean_return']:.1f} +- {summary['std_return']:.1f}")
    print(f"normalised score  {score:.1f}" if score is not None else "normalised score  n/a")
    print(f"checksum          {summary['checksum']} (SHA-256 of the arrays: equal on two machines = the same steps)")
    return 0


def cmd_suite(args: argparse.Namespace) -> int:
    from empo.evaluation.suites import build_suite, recompute_true_values

    progress = not args.no_progress
    if args.out is not None:
        output_folder(args.out, "--out")
    for source in args.sources or []:
        if not source.exists():
            raise EmpoError(f"--from {source}: no such folder or file of behaviour actors")
        if source.is_dir():
            existing_folder(source, "--from", "folder of behaviour actors")
    if args.sources:
        command = f"empo-data suite {args.env} --from {' '.join(map(str, args.sources))} --count {args.count} --episodes {args.episodes}"
        index = build_suite(args.env, args.sources, args.count, args.episodes, seed=args.seed, out_root=args.out,
                            source_command=command, progress=progress)
    else:
        index = recompute_true_values(args.env, args.episodes, seed=args.seed, root=args.out, progress=progress)
    for entry in index["policies"]:
        trained = "" if entry["training_return"] is None else f", training return {entry['training_return']:.0f}"
        print(f"{entry['name']:<28} true value {entry['true_value']:9.1f} +- {entry['true_stderr']:.1f}"
              f" ({entry['train_steps']:,} SAC steps{trained})")
    return 0


COMMANDS = {"build": cmd_build, "train-behaviour": cmd_train_behaviour, "suite": cmd_suite, "list": cmd_list, "info": cmd_info}


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
