"""The rollout engine shared by every algorithm of the loop (docs/training.md).

Start states are sampled from the dataset; the policy acts, the model steps, each sample stops
at its own termination. Each transition keeps its raw uncertainty penalty (``penalties``); the
:class:`empo.loop.penalty.Penalty` it is given says whether the stored reward is already
penalised (MOPO) or stays raw for the critic target to penalise (the authors' EMPO); the engine
knows no algorithm by name. A sample that terminates contributes its terminal transition and
then nothing (d3rlpy's users could not reproduce MOPO on hopper until rollouts were cut there).

Everything stays on the device. Dropping the finished samples needs their count on the host:
one sync per horizon step (h <= 5 per epoch, against 1000 SAC updates), which also spares the
model the cost of stepping dead samples (an ETM step is a Langevin chain).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from empo.loop.penalty import Penalty, Policy, QFunction
from empo.models.dynamics import Dynamics


@dataclass
class RolloutResult:
    """The transitions of one rollout (on the device) and statistics as 0-d tensors."""

    transitions: dict[str, torch.Tensor]
    stats: dict[str, torch.Tensor]

    @property
    def num_transitions(self) -> int:
        return int(self.transitions["observations"].shape[0])


@torch.no_grad()
def rollout(
    model: Dynamics,
    policy: Policy,
    start_obs: torch.Tensor,
    horizon: int,
    penalty: Penalty,
    generator: torch.Generator | None = None,
    q_function: QFunction | None = None,
) -> RolloutResult:
    """Roll ``policy`` in ``model`` from ``start_obs`` [N, obs_dim] for up to ``horizon`` steps.

    Returns the transitions of all samples, step by step (rewards as ``penalty`` stores them, raw
    penalties under ``penalties``), and statistics: mean rollout length, share of samples that
    terminated, raw and penalised reward, penalty mean/max. ``q_function`` serves a decaying penalty.
    """
    device = start_obs.device
    obs = start_obs
    num_starts = int(start_obs.shape[0])
    parts: dict[str, list[torch.Tensor]] = {
        "observations": [],
        "actions": [],
        "rewards": [],
        "next_observations": [],
        "terminals": [],
        "penalties": [],
    }
    penalised_rewards: list[torch.Tensor] = []
    raw_rewards: list[torch.Tensor] = []
    lengths = torch.zeros((), device=device)
    nonfinite = torch.zeros((), device=device)
    for _ in range(horizon):
        if obs.shape[0] == 0:
            break
        act = policy(obs)
        step = model.step(obs, act, generator=generator)
        next_obs, reward = step.next_obs, step.reward.reshape(-1)
        terminal = step.terminal.reshape(-1).bool()
        uncertainty = step.penalty.reshape(-1)
        stored, penalised = penalty.at_rollout(reward, uncertainty, next_obs, policy, q_function)
        parts["observations"].append(obs)
        parts["actions"].append(act)
        parts["rewards"].append(stored)
        parts["next_observations"].append(next_obs)
        parts["terminals"].append(terminal.float())
        parts["penalties"].append(uncertainty)
        penalised_rewards.append(penalised)
        raw_rewards.append(reward)
        lengths = lengths + obs.shape[0]
        # the divergence guard reads this once an epoch (no sync here)
        nonfinite = nonfinite + (~torch.isfinite(next_obs)).sum() + (~torch.isfinite(reward)).sum()
        # a terminated sample stops here; the survivors step on
        obs = next_obs[~terminal]
    transitions = {key: torch.cat(values) for key, values in parts.items()} if parts["observations"] else {
        "observations": start_obs[:0],
        "actions": torch.zeros(0, 0, device=device),
        "rewards": torch.zeros(0, device=device),
        "next_observations": start_obs[:0],
        "terminals": torch.zeros(0, device=device),
        "penalties": torch.zeros(0, device=device),
    }
    penalty_all = transitions["penalties"] if penalised_rewards else torch.zeros(1, device=device)
    raw_all = torch.cat(raw_rewards) if raw_rewards else torch.zeros(1, device=device)
    penalised_all = torch.cat(penalised_rewards) if penalised_rewards else raw_all
    stats = {
        "mean_length": lengths / max(num_starts, 1),
        "terminated_fraction": transitions["terminals"].sum() / max(num_starts, 1),
        "penalty_mean": penalty_all.mean(),
        "penalty_max": penalty_all.max(),
        "raw_reward_mean": raw_all.mean(),
        "penalised_reward_mean": penalised_all.mean(),
        "nonfinite_outputs": nonfinite,
    }
    return RolloutResult(transitions, stats)
