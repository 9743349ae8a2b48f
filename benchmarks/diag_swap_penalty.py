"""Is it a model's next states or its penalty that fails? Run empo-train with the two from different models.

    python benchmarks/diag_swap_penalty.py --states MODEL_DIR --penalty MODEL_DIR -- \\
        --task hopper-medium --algo empo --preset quick --seed 0 --threads 1 --run-dir RUN_DIR

Everything after ``--`` goes to ``empo-train`` unchanged (the algorithm's coefficient and horizon
apply). Rollouts take next states, rewards and terminations from ``--states`` and the penalty
from ``--penalty``, both models stepped on the same (state, action) batch. If an ETM's next states
with an FTM's penalty do not learn while the FTM alone does, the ETM's transitions are at fault,
not its uncertainty estimate. The run directory and its summary are those of any empo-train run
(run.json names the --states model as model_dir and records only the empo-train arguments).
A diagnostic: each rollout step costs both models' steps.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from empo.cli import train as train_cli
from empo.models import load_dynamics
from empo.models.dynamics import DynamicsModel, StepResult


class PenaltySwap:
    """Steps ``states`` for the transition and ``penalty`` for the penalty of each sample."""

    def __init__(self, states: DynamicsModel, penalty: DynamicsModel) -> None:
        self.states, self.penalty = states, penalty
        self.kind = f"{states.kind}+{penalty.kind}-penalty"
        self.obs_dim, self.act_dim = states.obs_dim, states.act_dim

    @torch.no_grad()
    def step(self, obs: torch.Tensor, act: torch.Tensor, generator: torch.Generator | None = None) -> StepResult:
        moved = self.states.step(obs, act, generator=generator)
        return StepResult(moved.next_obs, moved.reward, moved.terminal, self.penalty.step(obs, act, generator=generator).penalty)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--states", type=Path, required=True, help="model whose next states, rewards and terminations are used")
    parser.add_argument("--penalty", type=Path, required=True, help="model whose penalty is used")
    own, train_args = sys.argv[1:], []
    if "--" in own:
        cut = own.index("--")
        own, train_args = own[:cut], own[cut + 1 :]
    args = parser.parse_args(own)

    def obtain(config: Any, task: Any, transitions: Any, device: Any, model_dir: Path | None, progress: bool, log=print):
        states = load_dynamics(args.states, task, device=device)
        penalty = load_dynamics(args.penalty, task, device=device)
        log(f"next states, rewards and terminations from {args.states}; penalty from {args.penalty}")
        return PenaltySwap(states, penalty), args.states

    return train_cli.main(train_args, obtain=obtain)


if __name__ == "__main__":
    raise SystemExit(main())
