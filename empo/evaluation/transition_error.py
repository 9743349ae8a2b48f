"""Transition error of a dynamics model (docs/method.md, "Transition error"), in raw units.

Pure functions over a :class:`~empo.models.DynamicsModel` and :class:`Transitions`:
one-step MSE of the predicted next state (mean over state dimensions) and of the reward, and
open-loop h-step error along real episodes (the dataset's actions are fed to the model from a
real start state; the state reached after h steps and the h-th reward are compared).
Predictions use the model's deterministic ``predict`` (ETM: 100 noiseless Langevin steps).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from empo.data.transitions import Transitions
    from empo.models.dynamics import DynamicsModel


@dataclass
class ErrorRow:
    dataset: str  # task or dataset name
    split: str  # "holdout" (one-step, in distribution), "in-dist" (episodes of the training data), "ood"
    horizon: int  # 1 for one-step
    mode: str  # "one-step" or "open-loop"
    next_obs_mse: float
    reward_mse: float
    n: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _predict_batches(model: DynamicsModel, obs: np.ndarray, act: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    outs_obs, outs_rew = [], []
    for start in range(0, obs.shape[0], batch_size):
        o = torch.as_tensor(obs[start : start + batch_size], device=model.device)
        a = torch.as_tensor(act[start : start + batch_size], device=model.device)
        with torch.no_grad():
            next_obs, reward = model.predict(o, a)
        outs_obs.append(next_obs.cpu().numpy())
        outs_rew.append(reward.cpu().numpy())
    return np.concatenate(outs_obs), np.concatenate(outs_rew)


def _rows(n: int, index: np.ndarray | None, max_samples: int | None, seed: int) -> np.ndarray:
    """The rows to score: ``index`` (else all ``n``), a seeded sorted subset of ``max_samples`` if more."""
    rows = np.arange(n) if index is None else np.asarray(index)
    if max_samples is not None and rows.size > max_samples:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=max_samples, replace=False))
    return rows


def one_step_error(
    model: DynamicsModel,
    transitions: Transitions,
    index: np.ndarray | None = None,
    max_samples: int | None = None,
    batch_size: int = 4096,
    seed: int = 0,
) -> dict[str, float]:
    """MSE of next state and reward on ``transitions.qlearning()`` (rows ``index`` if given).

    ``max_samples`` draws a seeded random subset (ETM prediction is costly on a CPU).
    """
    data = transitions.qlearning()
    rows = _rows(len(data), index, max_samples, seed)
    next_obs, reward = _predict_batches(model, data.observations[rows], data.actions[rows], batch_size)
    return {
        "next_obs_mse": float(np.mean((next_obs - data.next_observations[rows]) ** 2)),
        "reward_mse": float(np.mean((reward - data.rewards[rows]) ** 2)),
        "n": int(rows.size),
    }


def episode_window_starts(transitions: Transitions, horizon: int) -> np.ndarray:
    """Start rows i such that steps i .. i+horizon-1 lie in one episode, none is a timeout and
    none but the last is terminal (so the real states form an unbroken trajectory)."""
    n = len(transitions)
    if n < horizon:
        return np.zeros(0, dtype=np.int64)
    episode = np.zeros(n, dtype=np.int64)
    episode[transitions.episode_starts[1:]] = 1
    episode = np.cumsum(episode)
    bad = transitions.timeouts > 0.5  # a timeout step is never used (qlearning semantics)
    cut = transitions.terminals > 0.5
    starts = np.arange(n - horizon + 1)
    ok = episode[starts] == episode[starts + horizon - 1]
    for t in range(horizon):
        ok &= ~bad[starts + t]
        if t < horizon - 1:
            ok &= ~cut[starts + t]
    return starts[ok]


def multi_step_error(
    model: DynamicsModel,
    transitions: Transitions,
    horizons: Sequence[int] = (1, 5, 10),
    max_starts: int | None = 1000,
    batch_size: int = 4096,
    seed: int = 0,
) -> dict[int, dict[str, float]]:
    """Open-loop h-step error along real episodes for each h in ``horizons``.

    The same start states serve every horizon (those valid for the longest one).
    """
    longest = max(horizons)
    starts = episode_window_starts(transitions, longest)
    if max_starts is not None and starts.size > max_starts:
        starts = np.sort(np.random.default_rng(seed).choice(starts, size=max_starts, replace=False))
    results: dict[int, dict[str, float]] = {}
    if starts.size == 0:
        return {h: {"next_obs_mse": float("nan"), "reward_mse": float("nan"), "n": 0} for h in horizons}
    state = transitions.observations[starts]
    for t in range(longest):
        rows = starts + t
        state, reward = _predict_batches(model, state, transitions.actions[rows], batch_size)
        if t + 1 in horizons:
            results[t + 1] = {
                "next_obs_mse": float(np.mean((state - transitions.next_observations[rows]) ** 2)),
                "reward_mse": float(np.mean((reward - transitions.rewards[rows]) ** 2)),
                "n": int(starts.size),
            }
    return results


def penalty_and_error(
    model: DynamicsModel,
    transitions: Transitions,
    index: np.ndarray | None = None,
    max_samples: int | None = None,
    batch_size: int = 4096,
    seed: int = 0,
) -> dict[str, float]:
    """Does the uncertainty penalty track the error? One sampled step per row (``model.step``, as
    rollouts take it): the mean penalty, the mean next-state MSE of the sample, and the Spearman
    correlation between each row's penalty and its error (1: the penalty ranks the rows by error).

    EMPO's rollouts trust a transition as much as its penalty says; a model whose penalty is low
    and flat where its error is high lets the agent exploit it.
    """
    from empo.evaluation.ope import spearman

    data = transitions.qlearning()
    rows = _rows(len(data), index, max_samples, seed)
    generator = torch.Generator(device=model.device).manual_seed(seed)
    penalties, errors = [], []
    for start in range(0, rows.size, batch_size):
        part = rows[start : start + batch_size]
        obs = torch.as_tensor(data.observations[part], device=model.device)
        act = torch.as_tensor(data.actions[part], device=model.device)
        with torch.no_grad():
            result = model.step(obs, act, generator)
        penalties.append(result.penalty.cpu().numpy())
        errors.append(((result.next_obs.cpu().numpy() - data.next_observations[part]) ** 2).mean(axis=-1))
    penalty, error = np.concatenate(penalties), np.concatenate(errors)
    return {
        "penalty_mean": float(penalty.mean()),
        "sample_mse": float(error.mean()),
        "spearman": spearman(penalty, error),
        "n": int(rows.size),
    }


def transition_error_table(
    model: DynamicsModel,
    datasets: dict[str, tuple[Transitions, str, np.ndarray | None]],
    horizons: Sequence[int] = (1, 5, 10),
    max_samples: int | None = 10000,
    max_starts: int | None = 1000,
    batch_size: int = 4096,
    seed: int = 0,
) -> list[ErrorRow]:
    """All rows for ``datasets``: name -> (transitions, split label, one-step row index or None).

    With a row index (the model's holdout) the one-step rows use those rows and the open-loop
    rows, which need whole episodes, are labelled "in-dist" (mostly training transitions).
    """
    rows: list[ErrorRow] = []
    for name, (data, split, index) in datasets.items():
        one = one_step_error(model, data, index, max_samples, batch_size, seed)
        rows.append(ErrorRow(name, split, 1, "one-step", one["next_obs_mse"], one["reward_mse"], one["n"]))
        multi = multi_step_error(model, data, horizons, max_starts, batch_size, seed)
        for h in horizons:
            r = multi[h]
            loop_split = "in-dist" if index is not None else split
            rows.append(ErrorRow(name, loop_split, h, "open-loop", r["next_obs_mse"], r["reward_mse"], int(r["n"])))
    return rows


def format_table(rows: Sequence[ErrorRow]) -> str:
    """A plain-text table of error rows."""
    header = f"{'dataset':<26} {'split':<10} {'mode':<10} {'h':>3} {'next-state MSE':>15} {'reward MSE':>12} {'n':>7}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.dataset:<26} {r.split:<10} {r.mode:<10} {r.horizon:>3} {r.next_obs_mse:>15.5g} {r.reward_mse:>12.5g} {r.n:>7}"
        )
    return "\n".join(lines)
