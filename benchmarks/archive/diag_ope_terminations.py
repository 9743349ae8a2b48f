"""Why a model ends a policy's rollouts early (walker2d, hopper): roll the policies out in the model
as empo-ope's model estimator does (noiseless prediction, dataset initial states, clipping to the
data's range) and count, at each rollout's end, which part of the task's health rule failed
(height too low or too high, angle out of range), with the state dimension's value over time.

    python benchmarks/archive/diag_ope_terminations.py --task walker2d-medium --model-dir DIR [--policies suite] [--starts 10]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from empo.data import load_transitions
from empo.data.tasks import get_task
from empo.evaluation.ope import initial_states, load_policies, widened_range
from empo.models import load_dynamics
from empo.models.termination import HEALTHY_RANGES, get_termination_fn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="walker2d-medium")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--policies", nargs="+", default=["suite"])
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--horizon", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = get_task(args.task)
    if task.env.name not in HEALTHY_RANGES:
        raise SystemExit(f"{task.env.name} has no health rule: its rollouts never end early")
    (h_low, h_high), (a_low, a_high) = HEALTHY_RANGES[task.env.name]
    terminated = get_termination_fn(task.env.termination)
    model = load_dynamics(args.model_dir, task)
    data = load_transitions(args.task)
    low, high = (torch.as_tensor(v) for v in widened_range(data.qlearning().next_observations))
    starts = torch.as_tensor(initial_states(data, args.starts))
    print("| policy | steps (mean) | ended by low height | high height | angle | other (hopper: joint angles, NaN) | still alive | "
          "height at start -> at the end (mean) |")
    print("|---|---|---|---|---|---|---|---|")
    for policy in load_policies(args.policies, task):
        obs = starts.clone()
        alive = torch.ones(len(obs), dtype=torch.bool)
        steps = torch.zeros(len(obs))
        causes = {"low": 0, "high": 0, "angle": 0, "other": 0}
        with torch.no_grad():
            for _ in range(args.horizon):
                if not alive.any():
                    break
                rows = alive.nonzero().squeeze(1)
                next_obs, _ = model.predict(obs[rows], policy.act(obs[rows]).float())
                next_obs = torch.maximum(torch.minimum(next_obs, high), low)
                steps[rows] += 1
                ended = terminated(next_obs).bool()  # the task's own rule; the causes below only name the part that failed
                height, angle = next_obs[ended, 0], next_obs[ended, 1]
                failed = {"low": height <= h_low, "high": height >= h_high, "angle": (angle <= a_low) | (angle >= a_high)}
                for name, bad in failed.items():
                    causes[name] += int(bad.sum())
                causes["other"] += int((~(failed["low"] | failed["high"] | failed["angle"])).sum())
                obs[rows] = next_obs  # an ended rollout keeps its last state
                alive[rows[ended]] = False
        print(f"| {policy.name} | {steps.mean():.0f} | {causes['low']} | {causes['high']} | {causes['angle']} | {causes['other']} | "
              f"{int(alive.sum())} | {starts[:, 0].mean():.2f} -> {obs[:, 0].mean():.2f} |", flush=True)


if __name__ == "__main__":
    main()
