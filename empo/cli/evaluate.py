"""``empo-eval``: a trained policy (a run folder or an exported file) in the real env."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from empo.cli.common import add_threads_argument, cli_entry, start_threads

DESCRIPTION = """\
Run a trained policy deterministically in the task's real gymnasium env and print the return and
the D4RL-normalised score (mean +- std over episodes). POLICY is a run folder of empo-train (its
last checkpoint) or a file written by empo-export (then --task is needed).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empo-eval", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("policy", type=Path, metavar="POLICY", help="RUN_DIR of empo-train or a file of empo-export")
    parser.add_argument("--task", help="the task (read from the run; needed for a policy file)")
    parser.add_argument("--episodes", type=int, default=10, help="episodes, run side by side (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="episode i is seeded seed + i (default 0)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    add_threads_argument(parser)
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from empo.data.tasks import get_task
    from empo.errors import EmpoError
    from empo.evaluation.policy_eval import evaluate_policy
    from empo.runs import load_policy_file, load_run

    if args.episodes < 1:
        raise EmpoError(f"--episodes must be at least 1, got {args.episodes}")
    if args.policy.is_dir():
        run = load_run(args.policy)
        if args.task is not None and args.task != run.config.task:
            raise EmpoError(f"{args.policy} is a run on {run.config.task}, not {args.task}")
        task, policy, source = get_task(run.config.task), run.policy, f"{args.policy} (epoch {run.epoch})"
    else:
        if args.task is None:
            raise EmpoError(f"{args.policy}: a policy file does not say its task; give --task")
        task, policy, source = get_task(args.task), load_policy_file(args.policy), str(args.policy)
    try:
        with torch.no_grad():
            probe = policy(torch.zeros(1, task.obs_dim))
    except Exception as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise EmpoError(f"{args.policy}: does not take {task.name}'s observations of size {task.obs_dim} ({first})") from None
    if tuple(probe.shape) != (1, task.act_dim):
        raise EmpoError(f"{args.policy}: gives actions of shape {list(probe.shape)} for {task.name}, expected [1, {task.act_dim}]")
    start_threads(args.threads)
    result = evaluate_policy(policy, task, args.episodes, args.seed)
    figures = {
        "task": task.name,
        "policy": source,
        "episodes": args.episodes,
        "seed": args.seed,
        "mean_return": result.mean_return,
        "std_return": result.std_return,
        "mean_normalized_score": result.mean_score,
        "std_normalized_score": result.std_score,
        "mean_length": result.mean_length,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(
            f"{task.name}, {source}: return {result.mean_return:.1f} +- {result.std_return:.1f}, normalised score "
            f"{result.mean_score:.1f} +- {result.std_score:.1f} over {args.episodes} episodes (mean length {result.mean_length:.0f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
