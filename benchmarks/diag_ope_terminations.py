"""Why a model ends a policy's rollouts early (walker2d, hopper): roll the policies out in the model
as empo-ope's model estimator does (noiseless prediction, dataset initial states, clipping to the
data's range) and count, at each rollout's end, which part of the task's health rule failed
(height too low or too high, angle out of range), with the state dimension's value over time.

    python benchmarks/diag_ope_terminations.py --task walker2d-medium --model-dir DIR [--policies suite] [--starts 10]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from empo.data import load_transitions
from empo.data.tasks import get_task
from empo.evaluation.ope import initial_states, load_policies, widened_range
from empo.models import load_dynamics

# (height index, healthy height range, angle index, healthy angle range) of the envs with a health rule
HEALTH = {"walker2d": (0, (0.8, 2.0), 1, (-1.0, 1.0)), "hopper": (0, (0.7, float("inf")), 1, (-0.2, 0.2))}


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
    h_index, (h_low, h_high), a_index, (a_low, a_high) = HEALTH[task.env.name]
    model = load_dynamics(args.model_dir, task)
    data = load_transitions(args.task)
    low, high = (torch.as_tensor(v) for v in widened_range(data.qlearning().next_observations))
    starts = torch.as_tensor(initial_states(data, args.starts))
    print("| policy | steps (mean) | ended by low height | high height | angle | still alive | height at start -> at the end (mean) |")
    print("|---|---|---|---|---|---|---|")
    for policy in load_policies(args.policies, task):
        obs = starts.clone()
        alive = torch.ones(len(obs), dtype=torch.bool)
        steps = torch.zeros(len(obs))
        causes = {"low": 0, "high": 0, "angle": 0}
        last = obs.clone()
        with torch.no_grad():
            for _ in range(args.horizon):
                if not alive.any():
                    break
                rows = alive.nonzero().squeeze(1)
                next_obs, _ = model.predict(obs[rows], policy.act(obs[rows]).float())
                next_obs = torch.maximum(torch.minimum(next_obs, high), low)
                steps[rows] += 1
                height, angle = next_obs[:, h_index], next_obs[:, a_index]
                for name, bad in (("low", height <= h_low), ("high", height >= h_high), ("angle", (angle <= a_low) | (angle >= a_high))):
                    causes[name] += int(bad.sum())
                ended = (height <= h_low) | (height >= h_high) | (angle <= a_low) | (angle >= a_high)
                obs[rows], last[rows] = next_obs, next_obs
                alive[rows[ended]] = False
        print(f"| {policy.name} | {steps.mean():.0f} | {causes['low']} | {causes['high']} | {causes['angle']} | {int(alive.sum())} | "
              f"{starts[:, h_index].mean():.2f} -> {last[:, h_index].mean():.2f} |", flush=True)


if __name__ == "__main__":
    main()
