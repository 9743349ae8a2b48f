"""Real episode lengths of an OPE suite's policies (deterministic actions, env seeds 0..N-1, as the
true values use), to set beside the model rollout lengths that ``empo-ope`` reports: a model that
ends a good policy's episodes early undervalues it.

    python benchmarks/archive/ope_episode_lengths.py --task walker2d-medium [--policies suite] [--episodes 10]
"""

from __future__ import annotations

import argparse

import numpy as np

from empo.data.envs import make_env
from empo.data.tasks import get_task
from empo.evaluation.ope import load_policies, real_episodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="walker2d-medium")
    parser.add_argument("--policies", nargs="+", default=["suite"])
    parser.add_argument("--episodes", type=int, default=10)
    args = parser.parse_args()
    task = get_task(args.task)
    envs = [make_env(task.gym_id) for _ in range(args.episodes)]
    print("| policy | real episode length (mean) | shortest |\n|---|---|---|")
    try:
        for policy in load_policies(args.policies, task):
            _, lengths = real_episodes(policy, envs)  # the episodes the true values take (env seeds 0..N-1)
            print(f"| {policy.name} | {np.mean(lengths):.0f} | {lengths.min()} |", flush=True)
    finally:
        for env in envs:
            env.close()


if __name__ == "__main__":
    main()
