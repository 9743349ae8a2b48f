"""One OPE study: load the suite, compute true values, run each estimator, write the results.

``run_ope(config, out_dir)`` is what ``empo-ope`` runs (empo/cli/ope.py only parses arguments).
The folder gets ``values.csv`` (policy, source, true value and its standard error, each estimate),
``metrics.json`` (per estimator: metrics, bootstrap intervals, seconds, seconds per policy),
``report.md`` and ``scatter.png`` (true vs estimated, one panel per estimator); with FQE also
``fqe_curve.csv`` (policy, updates, loss, value) and ``fqe_curve.png``, its fits' curves, and FQE's
drift (how far its estimates still moved over the last quarter of the updates) in the report.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from empo.errors import EmpoError
from empo.evaluation.ope import (
    FQE,
    GAMMA,
    ModelEstimator,
    bootstrap_intervals,
    load_policies,
    ope_metrics,
    true_values_cached,
)
from empo.utils import git_commit

ESTIMATORS = ("etm", "ftm", "fqe")


@dataclass
class OPEConfig:
    task: str
    policies: list[str]
    estimators: list[str] = field(default_factory=lambda: list(ESTIMATORS))
    preset: str = "quick"
    model_dirs: dict[str, Path] = field(default_factory=dict)
    sample: bool = False
    episodes: int = 10
    starts: int = 10
    horizon: int = 1000
    fqe_steps: int = 20_000
    fqe_layer_norm: bool = True
    # FQE's target network rate and Adam's step (docs/evaluation.md, "Faster targets, and where FQE settles")
    fqe_tau: float = 0.005
    fqe_lr: float = 3e-4
    seed: int = 0
    gamma: float = GAMMA

    def check(self) -> None:
        """Every value checked before slow work, each error naming the value."""
        from empo.data.tasks import get_task
        from empo.models.config import PRESETS

        get_task(self.task)
        unknown = [e for e in self.estimators if e not in ESTIMATORS]
        if unknown:
            raise EmpoError(f"unknown estimator {unknown[0]!r}; valid: {', '.join(ESTIMATORS)}")
        if self.preset not in PRESETS:
            raise EmpoError(f"unknown model preset {self.preset!r}; valid: {', '.join(PRESETS)}")
        for name in ("episodes", "starts", "horizon", "fqe_steps"):
            if getattr(self, name) < 1:
                raise EmpoError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.fqe_tau <= 1:
            raise EmpoError(f"--fqe-tau must be in (0, 1] (the target network's step toward Q), got {self.fqe_tau}")
        if not 0 < self.fqe_lr < 1:
            raise EmpoError(f"--fqe-lr must be in (0, 1), got {self.fqe_lr}")
        if not 0 < self.gamma <= 1:
            raise EmpoError(f"gamma must be in (0, 1], got {self.gamma}")
        if not self.policies:
            raise EmpoError("give at least two policies (--policies)")
        for kind, model_dir in self.model_dirs.items():  # read now, not after the dataset and the true values
            from empo.models import load_dynamics

            model = load_dynamics(model_dir, get_task(self.task))
            if model.kind != kind:
                raise EmpoError(f"--model-dir {kind}={model_dir} holds a {model.kind} model")


@dataclass
class OPEResult:
    names: list[str]
    sources: list[str]
    true: np.ndarray
    true_stderr: np.ndarray
    estimates: dict[str, np.ndarray]
    metrics: dict[str, dict[str, Any]]
    rollout_steps: dict[str, np.ndarray] = field(default_factory=dict)  # model estimators: mean rollout length per policy
    fqe_curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # per policy: updates, loss, value

    def table(self) -> str:
        keys = ["abs_error", "spearman", "pearson", "regret@1"] + (["regret@5"] if len(self.names) >= 5 else [])
        lines = [f"{'estimator':12s} " + " ".join(f"{k:>10s}" for k in keys) + f" {'s/policy':>9s}"]
        for name, m in self.metrics.items():
            lines.append(
                f"{name:12s} " + " ".join(f"{m['metrics'].get(k, float('nan')):10.3f}" for k in keys) + f" {m['seconds_per_policy']:9.1f}"
            )
        return "\n".join(lines)


def run_ope(
    config: OPEConfig, out_dir: str | Path, device: str | torch.device = "auto", progress: bool = True, threads: Any = None, log=print
) -> OPEResult:
    from empo.data.tasks import get_task
    from empo.models import load_dynamics, load_model_config
    from empo.pipeline import cached_model, prepare_dataset, resolve_device

    config.check()
    task = get_task(config.task)
    device = resolve_device(device)
    policies = load_policies(config.policies, task)
    if len(policies) < 2:
        raise EmpoError(f"OPE compares policies: --policies gave {len(policies)}, need at least 2")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise EmpoError(f"{out_dir}: a file is there, expected a folder to write the OPE results into")
    log(f"{len(policies)} policies: {', '.join(p.name for p in policies)}")
    dataset = prepare_dataset(task.name, log=log, progress=progress)

    started = time.perf_counter()
    true, true_err, cached = true_values_cached(policies, task, config.episodes, config.gamma, config.seed, progress=progress)
    timings = {"true_values_s": time.perf_counter() - started}
    if cached:
        log(f"true values: {cached} of {len(policies)} from the suite's cache (same episodes, gamma and seed)")

    estimates: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    rollout_steps: dict[str, np.ndarray] = {}
    fqe_curves: dict[str, dict[str, list[float]]] = {}
    for kind in config.estimators:
        if kind == "fqe":
            estimators = [FQE(dataset, task, steps=config.fqe_steps, gamma=config.gamma, seed=config.seed, device=device, progress=progress,
                              layer_norm=config.fqe_layer_norm, tau=config.fqe_tau, lr=config.fqe_lr)]
        else:
            if kind in config.model_dirs:
                model = load_dynamics(config.model_dirs[kind], task, device=device)
                if model.kind != kind:
                    raise EmpoError(f"--model-dir {kind}={config.model_dirs[kind]} holds a {model.kind} model")
            else:
                model, _ = cached_model(load_model_config(kind, config.preset, task=task.name), task, dataset, config.seed, device, progress, log, threads)
            modes = ("predict", "sample") if config.sample else ("predict",)
            estimators = [
                ModelEstimator(model, task, dataset, starts=config.starts, horizon=config.horizon, gamma=config.gamma,
                               mode=mode, seed=config.seed, progress=progress, name=kind if mode == "predict" else f"{kind}-sample")
                for mode in modes
            ]
        for estimator in estimators:
            t0 = time.perf_counter()
            estimates[estimator.name] = np.asarray(estimator.estimate(policies), dtype=np.float64)
            seconds[estimator.name] = time.perf_counter() - t0
            if getattr(estimator, "rollout_steps", None) is not None:
                rollout_steps[estimator.name] = np.asarray(estimator.rollout_steps, dtype=np.float64)
            if isinstance(estimator, FQE):
                fqe_curves = estimator.curves
            log(f"{estimator.name}: {seconds[estimator.name]:.0f} s")

    metrics = {
        name: {
            "metrics": ope_metrics(true, values),
            "intervals_95": bootstrap_intervals(true, values, seed=config.seed),
            "seconds": seconds[name],
            "seconds_per_policy": seconds[name] / len(policies),
        }
        for name, values in estimates.items()
    }
    if fqe_curves:
        metrics["fqe"]["drift"] = fqe_drift(fqe_curves)
    result = OPEResult([p.name for p in policies], [p.source for p in policies], true, true_err, estimates, metrics, rollout_steps,
                       fqe_curves)
    out_dir.mkdir(parents=True, exist_ok=True)  # only now: a run that fails leaves no empty folder
    _write(result, config, out_dir, device, timings)
    return result


# an FQE estimate that moved by more than this share of itself over the last quarter of its updates
# is still moving (docs/evaluation.md, "Has FQE converged?")
FQE_SETTLED = 0.05
# a moving estimate whose path over the last half of its updates is more than this many times its net
# change there swings rather than climbs. FQE's estimates start near 0 and climb toward the policy's
# value: one that falls or swings is not a fit cut short, and more updates may not settle it
FQE_SWING = 2.0


def last_quarter_change(curve: dict[str, list[float]]) -> float:
    """How one FQE curve's estimate changed over the last quarter of its updates (signed: negative, it fell)."""
    updates = np.asarray(curve["updates"], dtype=np.float64)
    values = np.asarray(curve["value"], dtype=np.float64)
    quarter = int(np.searchsorted(updates, 0.75 * updates[-1]))  # first point at or after 3/4 of the updates
    return float(values[-1] - values[min(quarter, len(values) - 1)])


def last_quarter_move(curve: dict[str, list[float]]) -> float:
    """How far one FQE curve's estimate moved over the last quarter of its updates (absolute)."""
    return abs(last_quarter_change(curve))


def last_half_swing(curve: dict[str, list[float]]) -> tuple[float, float]:
    """(path, net) of one FQE curve's estimate over the last half of its updates: the sum of its moves
    between logged points and the move from the first of them to the end. A climb has path = net."""
    updates = np.asarray(curve["updates"], dtype=np.float64)
    values = np.asarray(curve["value"], dtype=np.float64)
    half = values[min(int(np.searchsorted(updates, 0.5 * updates[-1])), len(values) - 1):]
    return float(np.abs(np.diff(half)).sum()), float(abs(half[-1] - half[0]))


def fqe_drift(curves: dict[str, dict[str, list[float]]], spread: float | None = None) -> dict[str, Any]:
    """How far FQE's estimates still moved over the last quarter of its updates, per policy, in units
    of the spread of its final estimates over the suite (the scale the OPE metrics read them on), or
    of ``spread`` where given (e.g. the true values' range, which one diverging fit cannot inflate):
    near 0, the fits had settled; 0.1 moves a policy a tenth of the suite's range.
    ``last_quarter_relative``: the same move over the policy's own final estimate (at least a quarter
    of the suite's largest, so that a policy worth about nothing does not read as climbing), which
    shows a slow steady climb (every estimate still rising by a tenth of itself) that reads small on
    the spread. ``falling_or_swinging``: the policies still moving (relative move above
    ``FQE_SETTLED``) that fell over the last quarter (an overshoot coming back, or a collapse), or whose
    path over the last half is more than ``FQE_SWING`` times their net change there (they rise and
    fall): unlike a climb, more updates may not settle them."""
    if spread is None:
        finals = np.array([curve["value"][-1] for curve in curves.values()])
        spread = float(finals.max() - finals.min()) if len(finals) > 1 else 0.0
        spread = spread if spread > 0 else max(1e-12, float(np.abs(finals).max()))
    per_policy, relative, not_climbing = {}, {}, []
    floor = max(1e-12, 0.25 * max(abs(float(curve["value"][-1])) for curve in curves.values()))
    for name, curve in curves.items():
        change = last_quarter_change(curve)
        per_policy[name] = abs(change) / spread
        relative[name] = abs(change) / max(abs(float(curve["value"][-1])), floor)
        path, net = last_half_swing(curve)
        if relative[name] > FQE_SETTLED and (change < 0 or path > FQE_SWING * net):
            not_climbing.append(name)
    return {"last_quarter_over_spread": per_policy, "max": max(per_policy.values()), "spread": spread,
            "last_quarter_relative": relative, "max_relative": max(relative.values()),
            "falling_or_swinging": not_climbing}


def fqe_verdict(drift: dict[str, Any]) -> str:
    """What the report says of FQE's fits: settled, still climbing (more updates will help) or falling
    and swinging (they may not)."""
    moving = sum(value > FQE_SETTLED for value in drift["last_quarter_relative"].values())
    not_climbing = drift.get("falling_or_swinging", [])
    if not moving:
        return ""
    parts = []
    if moving > len(not_climbing):
        parts.append(f"{moving - len(not_climbing)} still climbing steadily: more --fqe-steps")
    if not_climbing:
        parts.append(f"{len(not_climbing)} falling or swinging ({', '.join(not_climbing)}): not a fit cut short, so more "
                     "--fqe-steps may not settle them; see fqe_curve.png")
    return " (" + "; ".join(parts) + ")"


def _write(result: OPEResult, config: OPEConfig, out_dir: Path, device: torch.device, timings: dict[str, float]) -> None:
    with (out_dir / "values.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        steps_columns = [f"{name}_rollout_steps" for name in result.rollout_steps]
        writer.writerow(["policy", "source", "true_value", "true_stderr", *result.estimates, *steps_columns])
        for i, name in enumerate(result.names):
            writer.writerow([name, result.sources[i], result.true[i], result.true_stderr[i], *(v[i] for v in result.estimates.values()),
                             *(v[i] for v in result.rollout_steps.values())])
    meta = {
        "config": {**asdict(config), "model_dirs": {k: str(v) for k, v in config.model_dirs.items()}},
        "device": str(device),
        "git_commit": git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        **timings,
        "estimators": result.metrics,
    }
    (out_dir / "metrics.json").write_text(json.dumps(meta, indent=2) + "\n")
    _scatter(result, out_dir / "scatter.png", config.task)
    if result.fqe_curves:
        with (out_dir / "fqe_curve.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["policy", "updates", "loss", "value"])
            for name, curve in result.fqe_curves.items():
                writer.writerows([name, *row] for row in zip(curve["updates"], curve["loss"], curve["value"], strict=True))
        _fqe_figure(result, out_dir / "fqe_curve.png", config.task)
    lines = [
        f"# Off-policy evaluation on {config.task}",
        "",
        f"- date {meta['date']}, commit {meta['git_commit']}, device {device}",
        f"- {len(result.names)} policies; true value: mean discounted return (gamma {config.gamma}) of {config.episodes} real "
        f"episodes; model rollouts from {config.starts} dataset initial states, horizon {config.horizon}; FQE {config.fqe_steps} updates{'' if config.fqe_layer_norm else ' (no LayerNorm)'}"
        f"{'' if (config.fqe_tau, config.fqe_lr) == (OPEConfig.fqe_tau, OPEConfig.fqe_lr) else f' (tau {config.fqe_tau:g}, lr {config.fqe_lr:g})'}",
        "",
        "| estimator | abs error | Spearman | Pearson (the authors' \"rank correlation\") | regret@1 | s/policy |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in result.metrics.items():
        ci = m["intervals_95"]

        def cell(key: str, m: dict[str, Any] = m, ci: dict[str, Any] = ci) -> str:
            value = m["metrics"].get(key, float("nan"))
            return f"{value:.3f}" + (f" [{ci[key][0]:.2f}, {ci[key][1]:.2f}]" if key in ci else "")

        lines.append(f"| {name} | {cell('abs_error')} | {cell('spearman')} | {cell('pearson')} | {cell('regret@1')} | {m['seconds_per_policy']:.1f} |")
    lines += ["", "| policy | true value | " + " | ".join(result.estimates) + " |", "|---|---|" + "---|" * len(result.estimates)]
    for i, name in enumerate(result.names):
        lines.append(
            f"| {name} | {result.true[i]:.1f} +- {result.true_stderr[i]:.1f} | "
            + " | ".join(f"{v[i]:.1f}" for v in result.estimates.values())
            + " |"
        )
    if result.rollout_steps:
        lines += ["", f"Mean model rollout length per policy (steps before the task's termination rule ended it; at most {config.horizon}):",
                  "", "| policy | " + " | ".join(result.rollout_steps) + " |", "|---|" + "---|" * len(result.rollout_steps)]
        for i, name in enumerate(result.names):
            lines.append(f"| {name} | " + " | ".join(f"{v[i]:.0f}" for v in result.rollout_steps.values()) + " |")
    if result.fqe_curves:
        drift = result.metrics["fqe"]["drift"]
        lines += ["", f"FQE's fits (fqe_curve.csv, fqe_curve.png): over the last quarter of their {config.fqe_steps} updates the "
                  f"estimates moved by at most {drift['max']:.3f} of the spread of the final estimates ({drift['spread']:.1f}) "
                  f"and by at most {drift['max_relative']:.3f} of their own final value"
                  + fqe_verdict(drift) + "; per policy:",
                  "", "| policy | drift | relative move | final loss | value at 1/2, 3/4, end |", "|---|---|---|---|---|"]
        for name, curve in result.fqe_curves.items():
            values = curve["value"]
            marks = [values[min(len(values) - 1, int(len(values) * f) - 1)] for f in (0.5, 0.75)] + [values[-1]]
            lines.append(f"| {name} | {drift['last_quarter_over_spread'][name]:.3f} | "
                         f"{drift['last_quarter_relative'][name]:.3f} | {curve['loss'][-1]:.2e} | "
                         + ", ".join(f"{v:.1f}" for v in marks) + " |")
    lines += ["", "![true vs estimated](scatter.png)", ""]
    (out_dir / "report.md").write_text("\n".join(lines))


def _scatter(result: OPEResult, path: Path, task: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = max(1, len(result.estimates))
    fig, axes = plt.subplots(1, count, figsize=(4 * count, 4), squeeze=False)
    for ax, (name, values) in zip(axes[0], result.estimates.items(), strict=False):
        ax.scatter(result.true, values)
        low, high = min(result.true.min(), values.min()), max(result.true.max(), values.max())
        ax.plot([low, high], [low, high], color="grey", linewidth=0.8)
        ax.set_title(f"{name}: Spearman {result.metrics[name]['metrics']['spearman']:.2f}")
        ax.set_xlabel("true value")
        ax.set_ylabel("estimate")
    fig.suptitle(f"OPE on {task}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _fqe_figure(result: OPEResult, path: Path, task: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, value_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for name, curve in result.fqe_curves.items():
        loss_ax.plot(curve["updates"], curve["loss"], linewidth=0.9)
        value_ax.plot(curve["updates"], curve["value"], linewidth=0.9, label=name)
    loss_ax.set(yscale="log", xlabel="updates", ylabel="Huber loss (scaled rewards)", title="FQE loss")
    value_ax.set(xlabel="updates", ylabel="estimated value", title="FQE estimate per policy")
    value_ax.legend(fontsize=6, ncol=2)
    fig.suptitle(f"FQE on {task}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
