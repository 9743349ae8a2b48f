"""Transition error of a dynamics model (docs/method.md, "Transition error"), in raw units.

Pure functions over a :class:`~empo.models.DynamicsModel` and :class:`Transitions`:
one-step MSE of the predicted next state (mean over state dimensions) and of the reward, and
open-loop h-step error along real episodes (the dataset's actions are fed to the model from a
real start state; the state reached after h steps and the h-th reward are compared).
Predictions use the model's deterministic ``predict`` (ETM: 100 noiseless Langevin steps).
The means are taken over per-row errors (:func:`per_row_errors`); two models scored on the same
rows compare with :func:`paired_bootstrap` (benchmarks/claims_transition_error.py).
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


@dataclass
class RowErrors:
    """Squared errors of one model, row by row: one step on rows of ``transitions.qlearning()``, or
    open loop ``horizon`` steps from start rows of ``transitions`` (``rows`` are the start rows)."""

    rows: np.ndarray  # [n] row indices (one-step: of the qlearning view; open-loop: start rows of the full data)
    next_obs_se: np.ndarray  # [n] squared next-state error, mean over state dimensions
    reward_se: np.ndarray  # [n] squared reward error

    def means(self) -> dict[str, float]:
        """The mean errors over the rows (NaN when there are none), as ``one_step_error`` reports them."""
        if self.rows.size == 0:
            return {"next_obs_mse": float("nan"), "reward_mse": float("nan"), "n": 0}
        return {
            "next_obs_mse": float(np.mean(self.next_obs_se)),
            "reward_mse": float(np.mean(self.reward_se)),
            "n": int(self.rows.size),
        }


def per_row_errors(
    model: DynamicsModel,
    transitions: Transitions,
    rows: np.ndarray | None = None,
    horizons: Sequence[int] | None = None,
    batch_size: int = 4096,
) -> dict[int, RowErrors]:
    """Per-row squared errors of ``model``'s deterministic prediction, keyed by horizon.

    ``horizons`` None: one step on rows ``rows`` of ``transitions.qlearning()`` (all if None) -> ``{1: ...}``.
    ``horizons`` given: open loop along the episodes of ``transitions`` (the data's actions fed to the
    model from the real start state) from start rows ``rows`` (default: every start valid for the
    longest horizon, :func:`episode_window_starts`) -> ``{h: ...}``; the state reached after h steps
    and the h-th reward are scored. Rows are taken as given, so that two models scored on the same
    rows can be compared row by row (:func:`paired_bootstrap`).
    """
    if horizons is None:
        data = transitions.qlearning()
        rows = np.arange(len(data)) if rows is None else np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return {1: RowErrors(rows, np.zeros(0, np.float32), np.zeros(0, np.float32))}
        next_obs, reward = _predict_batches(model, data.observations[rows], data.actions[rows], batch_size)
        next_obs_se = np.mean((next_obs - data.next_observations[rows]) ** 2, axis=-1)
        return {1: RowErrors(rows, next_obs_se, (reward - data.rewards[rows]) ** 2)}

    wanted = sorted(set(int(h) for h in horizons))
    if not wanted or wanted[0] < 1:
        raise ValueError(f"horizons must be positive, got {list(horizons)}")
    longest = wanted[-1]
    valid = episode_window_starts(transitions, longest)
    starts = valid if rows is None else np.asarray(rows, dtype=np.int64)
    if rows is not None and not np.isin(starts, valid).all():
        # a start whose window crosses an episode's end would score the model against another episode
        raise ValueError(f"some start rows are not valid for {longest} open-loop steps (see episode_window_starts)")
    if starts.size == 0:
        empty = np.zeros(0, np.float32)
        return {h: RowErrors(starts, empty, empty) for h in wanted}
    results: dict[int, RowErrors] = {}
    state = transitions.observations[starts]
    for t in range(longest):
        step_rows = starts + t
        state, reward = _predict_batches(model, state, transitions.actions[step_rows], batch_size)
        if t + 1 in wanted:
            results[t + 1] = RowErrors(
                starts,
                np.mean((state - transitions.next_observations[step_rows]) ** 2, axis=-1),
                (reward - transitions.rewards[step_rows]) ** 2,
            )
    return results


def paired_bootstrap(
    errors_a: np.ndarray, errors_b: np.ndarray, resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, dict[str, float]]:
    """Percentile bootstrap of two models' mean errors on the SAME rows and of the ratio of the means.

    ``errors_a[i]`` and ``errors_b[i]`` must be the two models' errors on one row: each resample draws
    rows with replacement and takes both means over the same draw, so that what makes a row hard for
    both models (most of the spread between rows) cancels in the ratio instead of widening its
    interval. Returns ``{"a": {mean, low, high}, "b": {...}, "ratio": {...}}``; "mean" is the full sample's figure
    (ratio: mean(a) / mean(b)), low and high the percentiles of the resampled figures.
    """
    a, b = np.asarray(errors_a, dtype=np.float64), np.asarray(errors_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired errors must be two 1-D arrays of one length, got shapes {a.shape} and {b.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    n = a.size
    if n == 0 or resamples < 1:
        nan = {"mean": float("nan"), "low": float("nan"), "high": float("nan")}
        return {"a": dict(nan), "b": dict(nan), "ratio": dict(nan)}
    rng = np.random.default_rng(seed)
    means_a, means_b = np.empty(resamples), np.empty(resamples)
    chunk = max(1, 2_000_000 // n)  # bounded memory for the index draw; fixed, so a seed gives one answer
    for start in range(0, resamples, chunk):
        index = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        means_a[start : start + index.shape[0]] = a[index].mean(axis=1)
        means_b[start : start + index.shape[0]] = b[index].mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = means_a / means_b
        ratio = a.mean() / b.mean()
    tail = (1 - level) / 2 * 100

    def interval(point: float, samples: np.ndarray) -> dict[str, float]:
        finite = samples[np.isfinite(samples)]
        if finite.size == 0:
            return {"mean": float(point), "low": float("nan"), "high": float("nan")}
        low, high = np.percentile(finite, [tail, 100 - tail])
        return {"mean": float(point), "low": float(low), "high": float(high)}

    return {"a": interval(a.mean(), means_a), "b": interval(b.mean(), means_b), "ratio": interval(ratio, ratios)}


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
    rows = one_step_rows(transitions, index, max_samples, seed)
    return per_row_errors(model, transitions, rows, batch_size=batch_size)[1].means()


def one_step_rows(transitions: Transitions, index: np.ndarray | None = None, max_samples: int | None = None, seed: int = 0) -> np.ndarray:
    """Rows of ``transitions.qlearning()`` to score one step on: ``index`` (else all), a seeded sorted
    subset of ``max_samples`` if more (the same draw whatever the model, so that models can be compared row by row)."""
    n = int(np.count_nonzero(transitions.qlearning_mask()))  # len(transitions.qlearning()) without copying the data
    return _rows(n, index, max_samples, seed)


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


def open_loop_starts(transitions: Transitions, horizon: int, max_starts: int | None = None, seed: int = 0) -> np.ndarray:
    """Start rows of ``transitions`` valid for ``horizon`` open-loop steps, a seeded sorted subset of
    ``max_starts`` if more (the same draw whatever the model, so that models can be compared row by row)."""
    return _rows(0, episode_window_starts(transitions, horizon), max_starts, seed)


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
    starts = open_loop_starts(transitions, max(horizons), max_starts, seed)
    per_row = per_row_errors(model, transitions, starts, horizons, batch_size)
    return {h: per_row[h].means() for h in sorted(set(horizons))}


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
    from empo.evaluation.stats import spearman

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
