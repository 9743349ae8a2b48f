"""Is it a model's next states or its penalty that fails? Run empo-train with the two from different models.

    python benchmarks/archive/diag_swap_penalty.py --states MODEL_DIR --penalty MODEL_DIR \\
        --task hopper-medium --algo empo --preset quick --seed 0 --threads 1 --run-dir RUN_DIR

The run goes through ``empo.pipeline.train_agent`` with the pair as its model (the algorithm's
coefficient and horizon apply; ``--set`` overrides as empo-train's). Rollouts take next states,
rewards and terminations from ``--states`` and the penalty from ``--penalty``, both models stepped on the same (state, action) batch. If an ETM's next states
with an FTM's penalty do not learn while the FTM alone does, the ETM's transitions are at fault,
not its uncertainty estimate. The run directory and its summary are those of any empo-train run
(run.json names the --states model as model_dir and records this command).
A diagnostic: each rollout step costs both models' steps.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from empo.data.tasks import get_task
from empo.loop.algorithms import ALGORITHMS
from empo.loop.config import resolve_config
from empo.models import load_dynamics
from empo.models.config import parse_overrides
from empo.models.dynamics import DynamicsModel, StepResult
from empo.pipeline import train_agent


class PenaltySwap:
    """Steps ``states`` for the transition and ``penalty`` for the penalty of each sample."""

    def __init__(self, states: DynamicsModel, penalty: DynamicsModel) -> None:
        self.states, self.penalty = states, penalty
        self.kind = f"{states.kind}+{penalty.kind}-penalty"
        self.obs_dim, self.act_dim = states.obs_dim, states.act_dim

    @property
    def device(self) -> torch.device:
        return self.states.device

    def predict(self, obs: torch.Tensor, act: torch.Tensor, generator: torch.Generator | None = None):
        return self.states.predict(obs, act, generator)

    @torch.no_grad()
    def step(self, obs: torch.Tensor, act: torch.Tensor, generator: torch.Generator | None = None) -> StepResult:
        moved = self.states.step(obs, act, generator=generator)
        return StepResult(moved.next_obs, moved.reward, moved.terminal, self.penalty.step(obs, act, generator=generator).penalty)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--states", type=Path, required=True, help="model whose next states, rewards and terminations are used")
    parser.add_argument("--penalty", type=Path, required=True, help="model whose penalty is used")
    parser.add_argument("--task", required=True)
    parser.add_argument("--algo", default="empo", choices=tuple(ALGORITHMS))
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, as empo-train's")
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = resolve_config(args.task, args.algo, args.preset, args.seed, parse_overrides(args.set))
    task = get_task(config.task)
    states = load_dynamics(args.states, task, device=args.device)
    penalty = load_dynamics(args.penalty, task, device=args.device)
    print(f"next states, rewards and terminations from {args.states}; penalty from {args.penalty}")
    summary = train_agent(config, args.run_dir, device=args.device, model=PenaltySwap(states, penalty), model_dir=args.states,
                          progress=False, command=" ".join(["python benchmarks/archive/diag_swap_penalty.py", *sys.argv[1:]]))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
