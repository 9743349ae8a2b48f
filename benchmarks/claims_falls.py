"""Do the models foresee falls? (issue 35: why a model ranks policies worse in OPE.) A model
estimator values a policy by rolling it out until the task's termination rule fires, so a model
that keeps a falling hopper upright overvalues it and one that topples a walker too early
undervalues it. This scores both errors on the data's own episodes, open loop (the data's actions
fed to the model from a real state), for windows of k steps:

- **falls foreseen**: windows whose k-th real step ends the episode (the termination rule fires on
  the real next state); the share where the model's rollout also ends within the window;
- **false falls**: windows of k steps inside an episode that goes on for at least k more steps;
  the share where the model's rollout ends within the window.

    python benchmarks/claims_falls.py --task hopper-medium --models etm=DIR ftm=DIR [--windows 5 20 50] [--count 500]

Deterministic predictions (each model's ``predict``, what ``empo-ope``'s default estimator rolls
out). 95% Wilson intervals over windows. --out FILE.md (default
benchmarks/results/claims/claims-falls-<task>-cpu.md).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from empo.data import get_task
from empo.models import load_dynamics
from empo.models.termination import get_termination_fn
from empo.pipeline import prepare_dataset
from empo.utils import git_commit, named_path


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def windows(
    terminals: np.ndarray, episode_starts: np.ndarray, k: int, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """First rows of k-step windows inside one episode: those whose last step is a termination, and
    those followed by at least k more steps of the same episode without one."""
    n = len(terminals)
    starts = np.asarray(episode_starts)
    ends = np.append(starts[1:], n)  # one past each episode's last row
    falling, upright = [], []
    for first, stop in zip(starts, ends, strict=True):
        length = stop - first
        if terminals[stop - 1] > 0.5 and length >= k:
            falling.append(stop - k)
        # windows that end at least k steps before the episode's last row (so no fall within 2k)
        last_safe = stop - 2 * k if terminals[stop - 1] > 0.5 else stop - k
        if last_safe >= first:
            upright.extend(range(first, last_safe + 1, max(1, k)))

    def pick(rows: list[int]) -> np.ndarray:
        if not rows:
            return np.zeros(0, np.int64)
        return rng.choice(np.asarray(rows, dtype=np.int64), min(count, len(rows)), replace=False)

    return pick(falling), pick(upright)


@torch.no_grad()
def falls_within(
    model, termination, observations: np.ndarray, actions: np.ndarray, first: np.ndarray, k: int
) -> np.ndarray:
    obs = torch.as_tensor(observations[first], dtype=torch.float32, device=model.device)
    fell = torch.zeros(len(first), dtype=torch.bool, device=model.device)
    for j in range(k):
        act = torch.as_tensor(actions[first + j], dtype=torch.float32, device=model.device)
        obs, _ = model.predict(obs, act)
        fell |= termination(obs)
    return fell.cpu().numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="hopper-medium")
    parser.add_argument("--models", type=named_path("NAME=MODEL_DIR"), nargs="+", required=True, metavar="NAME=DIR")
    parser.add_argument("--windows", type=int, nargs="+", default=[5, 20, 50])
    parser.add_argument("--count", type=int, default=500, help="windows of each kind per k")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = get_task(args.task)
    if task.env.termination == "halfcheetah":
        raise SystemExit(f"{task.name}: its episodes never terminate, so there are no falls to score")
    data = prepare_dataset(task.name, log=print, progress=False)
    termination = get_termination_fn(task.env.termination)
    models = {name: load_dynamics(path, task, device="cpu") for name, path in args.models}
    rng = np.random.default_rng(args.seed)

    lines = [
        f"# Do the models foresee falls? {task.name}",
        "",
        f"`python {' '.join(shlex.quote(a) for a in sys.argv)}`",
        f"(commit {git_commit()}, {time.strftime('%Y-%m-%d')}, CPU, {args.threads} torch thread(s); models: "
        + ", ".join(f"{name} = {path}" for name, path in args.models)
        + ").",
        "",
        "Open loop along the data's episodes (the data's actions), deterministic predictions. Falls foreseen:",
        "share of k-step windows ending in a real fall where the model's rollout also falls within the",
        "window. False falls: share of k-step windows well inside an episode (no real fall within 2k steps)",
        "where the model's rollout falls. 95% Wilson intervals.",
        "",
        "| k | model | falls foreseen [95% CI] | windows | false falls [95% CI] | windows |",
        "|---|---|---|---|---|---|",
    ]
    for k in args.windows:
        falling, upright = windows(data.terminals, data.episode_starts, k, args.count, rng)
        for name, model in models.items():
            caught = falls_within(model, termination, data.observations, data.actions, falling, k)
            false = falls_within(model, termination, data.observations, data.actions, upright, k)
            lo, hi = wilson(int(caught.sum()), len(caught))
            flo, fhi = wilson(int(false.sum()), len(false))
            lines.append(
                f"| {k} | {name} | {caught.mean():.3f} [{lo:.3f}, {hi:.3f}] | {len(caught)} | "
                f"{false.mean():.3f} [{flo:.3f}, {fhi:.3f}] | {len(false)} |"
            )
            print(lines[-1], flush=True)
    out = args.out or Path(f"benchmarks/results/claims/claims-falls-{task.name}-cpu.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
