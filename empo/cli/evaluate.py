"""``empo-eval``: a trained policy (a run folder or an exported file) in the real env."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from empo.cli.common import (
    ArgumentParser,
    add_seed_argument,
    add_threads_argument,
    cli_entry,
    existing_file,
    int_range,
    output_folder,
    start_threads,
)

MAX_EPISODES = 1000  # run side by side, one env each

DESCRIPTION = """\
Run a trained policy deterministically in the task's real gymnasium env and print the return and
the D4RL-normalised score (mean +- std over episodes). POLICY is a run folder of empo-train (its
last checkpoint) or a file written by empo-export (then --task is needed): .pt2 (torch.export),
TorchScript, or .onnx (run by onnxruntime: pip install onnxruntime). A policy that gives a NaN
or infinite action stops the evaluation with one line naming it, the episode and the step.

--video DIR also records the first episode (seed --seed) while the evaluation runs, as
DIR/TASK-seedSEED-episode-0.mp4, with gymnasium's RecordVideo; the other episodes are not
rendered and the figures are the same as without --video. It needs moviepy (pip install moviepy)
and MuJoCo's offscreen rendering: on a machine without a display, set MUJOCO_GL=egl (libEGL from
a GPU driver or Mesa) or MUJOCO_GL=osmesa (libosmesa6). Both are checked, with one frame rendered
in a child process, before any episode runs. Rendering on the CPU (Mesa) takes about 0.1 s a frame,
and the frames stay in memory until the episode ends (about 0.7 GB for 1000 steps at 480x480).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="empo-eval", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("policy", type=Path, metavar="POLICY", help="RUN_DIR of empo-train or a file of empo-export")
    parser.add_argument("--task", help="the task (read from the run; needed for a policy file)")
    parser.add_argument(
        "--episodes", type=int_range(1, MAX_EPISODES), default=10, help=f"episodes, run side by side (1 to {MAX_EPISODES}; default 10)"
    )
    add_seed_argument(parser, help="episode i is seeded seed + i")
    parser.add_argument(
        "--video", type=Path, metavar="DIR", help="also record the first episode as an mp4 in DIR (needs moviepy and MUJOCO_GL; see above)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    add_threads_argument(parser)
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from empo.cli.checks import check_agent_run
    from empo.data.tasks import get_task
    from empo.errors import EmpoError
    from empo.evaluation.policy_eval import check_video_support, evaluate_policy
    from empo.runs import load_policy_file, load_run

    if not args.policy.exists():
        raise EmpoError(f"POLICY {args.policy}: no such run folder or policy file")
    if args.video is not None:
        output_folder(args.video, "--video")
    if args.policy.is_dir():
        check_agent_run(args.policy, "POLICY")
        run = load_run(args.policy)
        if args.task is not None and args.task != run.config.task:
            raise EmpoError(f"{args.policy} is a run on {run.config.task}, not {args.task}")
        task, policy, source = get_task(run.config.task), run.policy, f"{args.policy} (epoch {run.epoch})"
    else:
        existing_file(args.policy, "POLICY", "policy file of empo-export")
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
    if args.video is not None:
        if args.video.exists() and not args.video.is_dir():
            raise EmpoError(f"--video {args.video}: not a folder")
        check_video_support(task.gym_id)
    start_threads(args.threads)
    result = evaluate_policy(policy, task, args.episodes, args.seed, video_dir=args.video, name=source)
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
    if args.video is not None:
        figures["video"] = str(result.video) if result.video else None
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(
            f"{task.name}, {source}: return {result.mean_return:.1f} +- {result.std_return:.1f}, normalised score "
            f"{result.mean_score:.1f} +- {result.std_score:.1f} over {args.episodes} episodes (mean length {result.mean_length:.0f})"
        )
        if args.video is not None:
            print(f"video of episode 0 (return {result.returns[0]:.1f}): {result.video}" if result.video else "no video was written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
