"""Where a learned model's rollouts go wrong, measured against the simulator.

    python benchmarks/archive/diag_model_rollouts.py --task hopper-medium \\
        --model-dir ~/.empo/models/hopper-medium-etm-3012ec504d7d-s0 \\
        --run-dir ~/.empo/runs/hopper-medium-empo-quick-s0 [--starts 2000] [--out FILE.md]

Two tables, written as markdown with command, device, date and commit:

1. Rollouts of the run's policy (its checkpoint) in the model from ``--starts`` dataset states,
   with the model's rollout sampler and (for an ETM) variants of it: next-state MSE against the
   simulator stepped from the same state and action, the share of next states outside the
   dataset's range, the mean raw penalty and its rank correlation with the error, at steps 1 and 5.
2. One step on dataset transitions: per target dimension (state deltas, then reward), the slope
   of the model's change regressed on the true change (1 = right scale, < 1 = shrunk to zero).
3. For an ETM, whether its sampler or its energy is off: the evaluation sampler started at zero
   and started at the true change, with the next-state MSE of each and the energy of the true
   change above that of the sample. Equal errors from both starts mean the chains reach the
   energy's minimum and the minimum itself is misplaced (a training problem, not an inference one).

It answers "is it the sampler, the model, or the loop?" for a run that does not learn.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from datetime import date
from pathlib import Path

import torch

from empo.agents.sac import SAC
from empo.data.tasks import get_task
from empo.envs.simulator import SimulatorDynamics
from empo.loop.config import config_from_dict
from empo.loop.trainer import CHECKPOINT
from empo.models import load_dynamics
from empo.pipeline import prepare_dataset
from empo.utils import device_name, git_commit

# (label, change to the ETM's rollout sampler); None: the 100-step noiseless evaluation sampler
SAMPLER_VARIANTS: list[tuple[str, dict | None]] = [
    ("published (noise 0.5, 30 steps, 1 chain)", {}),
    ("noise 0.1", {"noise": 0.1}),
    ("noise 0", {"noise": 0.0}),
    ("4 chains, lowest energy", {"chains": 4}),
    ("evaluation sampler (100 noiseless steps)", None),
]


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    ranks = torch.stack([a.argsort().argsort().float(), b.argsort().argsort().float()])
    return float(torch.corrcoef(ranks)[0, 1])


@torch.no_grad()
def rollout_errors(model, sim, agent, start_obs, low, high, horizon=5, seed=1) -> list[tuple[float, ...]]:
    """Per step: (next-state MSE vs simulator, share outside the data range, penalty, rank corr)."""
    generator = torch.Generator().manual_seed(seed)
    obs, rows = start_obs, []
    for _ in range(horizon):
        act = agent.act(obs, generator=generator)
        step, true = model.step(obs, act, generator=generator), sim.step(obs, act)
        error = (step.next_obs - true.next_obs).pow(2).mean(dim=1)
        outside = ((step.next_obs < low) | (step.next_obs > high)).any(dim=1).float().mean()
        rows.append(
            (float(error.mean()), float(outside), float(step.penalty.mean()), rank_correlation(step.penalty, error))
        )
        obs = step.next_obs[~step.terminal]
    return rows


@torch.no_grad()
def energy_minimum_check(model, obs: torch.Tensor, act: torch.Tensor, true_change: torch.Tensor) -> list[str]:
    """Table rows: the ETM's evaluation sampler from zero and from the true (Delta s, r)."""
    sampler = model.config.etm.eval_langevin
    code = model.energy.encode(model.input_scaler(torch.cat([obs, act], dim=-1)))  # [M, B, H], shared

    def energy(change: torch.Tensor) -> torch.Tensor:  # raw [M, B, D] -> [M, B]
        return model.energy.energy_from_code(code, model.target_scaler(change).unsqueeze(2)).squeeze(2)

    true_energy = energy(true_change.unsqueeze(0).expand(model.members, -1, -1))
    rows = []
    for label, init in (("from zero (as in use)", None), ("from the true change", true_change)):
        generator = torch.Generator().manual_seed(3)
        sample = model.sample_members(obs, act, sampler, generator=generator, init=init)  # [M, B, D]
        error = (sample.median(dim=0).values[:, :-1] - true_change[:, :-1]).pow(2).mean()
        gap = true_energy - energy(sample)
        rows.append(
            f"| {label} | {float(error):.4f} | {float(gap.mean()):+.3f} | {float((gap > 0).float().mean()):.0%} |"
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="hopper-medium")
    parser.add_argument("--model-dir", type=Path, required=True, help="a trained ETM or FTM (empo-model train output)")
    parser.add_argument("--run-dir", type=Path, required=True, help="an empo-train run: its checkpoint's policy acts")
    parser.add_argument("--starts", type=int, default=2000, help="dataset states the rollouts start from")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the markdown here (default: print only)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    task = get_task(args.task)
    data = prepare_dataset(task.name).qlearning().to_tensors("cpu")
    observations = data["observations"]
    low, high = observations.min(0).values, observations.max(0).values
    checkpoint_path = args.run_dir / CHECKPOINT
    if not checkpoint_path.is_file():
        sys.exit(f"{args.run_dir}: no {CHECKPOINT} (expected an empo-train run directory)")
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    config = config_from_dict(checkpoint["config"], where=str(checkpoint_path))
    agent = SAC(task.obs_dim, task.act_dim, config.sac)
    agent.load_state_dict(checkpoint["agent"])
    model = load_dynamics(args.model_dir, task)
    sim = SimulatorDynamics(task)
    index = torch.randint(0, observations.shape[0], (args.starts,), generator=torch.Generator().manual_seed(0))
    start_obs = observations[index]

    lines = [
        f"# Model rollouts against the simulator: {task.name}",
        "",
        f"- command: `python benchmarks/archive/diag_model_rollouts.py {' '.join(sys.argv[1:])}`",
        f"- device: {device_name()}, {args.threads} thread(s); date {date.today().isoformat()}; commit {git_commit()}",
        f"- model: {args.model_dir} ({model.kind}); policy: {checkpoint_path} (epoch {checkpoint['epoch']})",
        "",
        f"## Rollouts of the policy from {args.starts} dataset states",
        "",
        "| sampler | h1 MSE | h1 outside | h1 penalty | h1 rank corr | h5 MSE | h5 outside | h5 penalty | h5 rank corr |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    variants = SAMPLER_VARIANTS if model.kind == "etm" else [("the model's own sampling", {})]
    for label, change in variants:
        if model.kind == "etm":
            etm_config = model.config.etm
            published = etm_config.rollout_langevin
            etm_config.rollout_langevin = (
                etm_config.eval_langevin if change is None else dataclasses.replace(published, **change)
            )
        rows = rollout_errors(model, sim, agent, start_obs, low, high)
        if model.kind == "etm":
            etm_config.rollout_langevin = published
        cells = [f"{r[0]:.3f} | {r[1]:.0%} | {r[2]:.3f} | {r[3]:.2f}" for r in (rows[0], rows[-1])]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
        print(lines[-1], flush=True)

    with torch.no_grad():
        step = model.step(start_obs, data["actions"][index], generator=torch.Generator().manual_seed(2))
    true_change = torch.cat([data["next_observations"][index] - start_obs, data["rewards"][index, None]], dim=1)
    model_change = torch.cat([step.next_obs - start_obs, step.reward[:, None]], dim=1)
    centred_true = true_change - true_change.mean(0)
    slope = (centred_true * (model_change - model_change.mean(0))).sum(0) / centred_true.pow(2).sum(0)
    names = [f"ds{i}" for i in range(task.obs_dim)] + ["r"]
    lines += [
        "",
        "## One step on dataset transitions: slope of the model's change on the true change",
        "",
        "| " + " | ".join(names) + " |",
        "|" + "---|" * len(names),
        "| " + " | ".join(f"{x:.2f}" for x in slope.tolist()) + " |",
    ]
    print("\n".join(lines[-5:]))
    if model.kind == "etm":
        lines += [
            "",
            "## Sampler or energy: the evaluation sampler from zero and from the true change",
            "",
            "| start | next-state MSE | E(true) - E(sample), mean | share with E(true) > E(sample) |",
            "|---|---|---|---|",
            *energy_minimum_check(model, start_obs, data["actions"][index], true_change),
        ]
        print("\n".join(lines[-6:]))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
