"""Where does a run's exploitation gap come from? (issue 38: diagnostics that say why a run does not
learn.) The per-epoch diagnostics say *that* a model overvalues the learned policy (its model return
above its real return); this says *where*, on the states the policy itself visits:

- **one step**: the model's sampled reward (``model.step``, what the rollouts store) on the real
  (s, a) of the policy's own episodes, minus the real reward: a reward head that flatters the
  policy's actions shows here, with no compounding;
- **k steps, closed loop**: from every real state of those episodes, the policy rolled out in the
  model for k steps (5: the loop's rollout horizon; longer: how the error compounds towards the
  diagnostics' 1,000-step model return; the deterministic policy, which is what acted in
  the real episode, so both sides start from the same state and follow the same policy), the
  model's reward summed against the real episode's next k rewards; raw, and with the run's own
  penalty taken off (coefficient as applied, ``penalty_coef_applied`` in summary.json). A penalised
  bias above zero is optimism that the penalty does not pay for, which is what a MOPO-style loop
  must avoid;
- the same one-step bias on the data's own transitions, for reference (where the model was fitted).

    python benchmarks/model_optimism.py RUN_DIR [RUN_DIR ...] [--episodes 5] [--horizons 5 25 100] [--threads 1]

Each run folder needs its checkpoint (the policy) and the model it names in run.json. Figures per
step; 95% intervals from a bootstrap over blocks of 50 consecutive steps. Writes
benchmarks/results/model-optimism-cpu.md (--out) and a .json beside it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from empo.data import get_task
from empo.data.envs import make_env
from empo.models import load_dynamics
from empo.pipeline import prepare_dataset
from empo.runs import load_run
from empo.utils import git_commit

BLOCK = 50  # steps per bootstrap block: consecutive steps of one episode are far from independent


def block_interval(values: np.ndarray, rng: np.random.Generator, resamples: int = 1000) -> tuple[float, float]:
    """95% interval of the mean of ``values`` (in time order) by resampling blocks of BLOCK steps."""
    if len(values) == 0:
        return float("nan"), float("nan")
    blocks = [values[i:i + BLOCK] for i in range(0, len(values), BLOCK)]
    sums, sizes = np.array([b.sum() for b in blocks]), np.array([len(b) for b in blocks])
    picks = rng.integers(0, len(blocks), size=(resamples, len(blocks)))
    means = sums[picks].sum(axis=1) / sizes[picks].sum(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def real_episodes(act_fn: Callable[[np.ndarray], np.ndarray], gym_id: str, episodes: int, seed: int) -> list[dict[str, np.ndarray]]:
    """``act_fn`` (a deterministic policy on one observation) for ``episodes`` real episodes (env seeds
    seed, seed + 1, ...): each episode's observations, actions and rewards."""
    out = []
    env = make_env(gym_id)
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            rows: dict[str, list] = {"obs": [], "act": [], "rew": []}
            for _ in range(1000):
                act = act_fn(obs.astype(np.float32))
                next_obs, reward, terminated, truncated, _ = env.step(act)
                rows["obs"].append(obs.astype(np.float32))
                rows["act"].append(act.astype(np.float32))
                rows["rew"].append(float(reward))
                obs = next_obs
                if terminated or truncated:
                    break
            out.append({key: np.asarray(value, dtype=np.float32) for key, value in rows.items()})
    finally:
        env.close()
    return out


@torch.no_grad()
def one_step(model, obs: np.ndarray, act: np.ndarray, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model's sampled reward, next state and raw penalty for each row (batches of 2,500)."""
    rewards, next_obs, penalties = [], [], []
    for o, a in zip(np.array_split(obs, max(1, len(obs) // 2500)), np.array_split(act, max(1, len(act) // 2500)), strict=True):
        step = model.step(torch.as_tensor(o), torch.as_tensor(a), generator=generator)
        rewards.append(step.reward.reshape(-1).numpy())
        next_obs.append(step.next_obs.numpy())
        penalties.append(step.penalty.reshape(-1).numpy())
    return np.concatenate(rewards), np.concatenate(next_obs), np.concatenate(penalties)


@torch.no_grad()
def closed_loop(model, policy, start_obs: np.ndarray, horizon: int, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``policy`` rolled out in ``model`` for ``horizon`` steps from each start state: summed raw reward,
    summed raw penalty and steps taken (a sample stops at the model's termination)."""
    obs = torch.as_tensor(start_obs)
    alive = torch.ones(len(obs), dtype=torch.bool)
    reward_sum, penalty_sum, steps = (torch.zeros(len(obs)) for _ in range(3))
    for _ in range(horizon):
        step = model.step(obs, policy(obs), generator=generator)
        live = alive.float()
        reward_sum += live * step.reward.reshape(-1)
        penalty_sum += live * step.penalty.reshape(-1)
        steps += live
        alive = alive & ~step.terminal.reshape(-1).bool()
        obs = step.next_obs
    return reward_sum.numpy(), penalty_sum.numpy(), steps.numpy()


def interval(values: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
    low, high = block_interval(values, rng)
    return {"mean": float(values.mean()), "low": low, "high": high}


def optimism(
    model, policy, real: list[dict[str, np.ndarray]], coef: float, horizons: list[int], generator: torch.Generator, rng: np.random.Generator
) -> dict:
    """The model's reward against the real one on the real episodes ``real`` of ``policy``: one step
    on their (s, a), and closed loop for each of ``horizons`` from every state with that many real
    steps after it (horizons longer than every episode are left out)."""
    obs = np.concatenate([e["obs"] for e in real])
    act = np.concatenate([e["act"] for e in real])
    rew = np.concatenate([e["rew"] for e in real])
    next_real = np.concatenate([np.concatenate([e["obs"][1:], e["obs"][-1:]]) for e in real])
    last = np.concatenate([np.arange(len(e["rew"])) == len(e["rew"]) - 1 for e in real])  # no real next state stored

    model_rew, model_next, penalty = one_step(model, obs, act, generator)
    state_err = ((model_next - next_real) ** 2).mean(axis=1)[~last]
    by_horizon = {}
    for horizon in horizons:
        starts, real_sums = [], []
        for e in real:
            n = len(e["rew"])
            if n < horizon:
                continue
            cumulative = np.concatenate([[0.0], np.cumsum(e["rew"], dtype=np.float64)])
            starts.append(e["obs"][: n - horizon + 1])
            real_sums.append(cumulative[horizon:] - cumulative[: n - horizon + 1])
        if not starts:
            continue
        starts_arr, real_sums_arr = np.concatenate(starts), np.concatenate(real_sums)
        model_sums, penalty_sums, steps = closed_loop(model, policy, starts_arr, horizon, generator)
        by_horizon[horizon] = {
            "starts": int(len(starts_arr)),
            "raw_bias": interval((model_sums - real_sums_arr) / horizon, rng),
            "penalised_bias": interval((model_sums - coef * penalty_sums - real_sums_arr) / horizon, rng),
            "model_steps": float(steps.mean()),
        }
    return {
        "real_steps": int(len(rew)),
        "real_return": float(np.mean([e["rew"].sum() for e in real])),
        "real_reward_per_step": float(rew.mean()),
        "one_step_reward_bias": interval(model_rew - rew, rng),
        "one_step_next_state_mse": float(state_err.mean()) if len(state_err) else float("nan"),
        "one_step_penalty_in_reward": float(coef * penalty.mean()),
        "closed_loop": by_horizon,
    }


def measure(run_dir: Path, episodes: int, horizons: list[int], seed: int, data_rows: int) -> dict:
    run = load_run(run_dir)
    task = get_task(run.config.task)
    model_dir = run.model_dir()
    if model_dir is None:
        raise SystemExit(f"{run_dir}: run.json names no trained model (a simulator run has no model to be optimistic)")
    model = load_dynamics(model_dir, task)
    model.eval()
    coef = float(run.summary.get("penalty_coef_applied", float("nan")))
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    real = real_episodes(run.act, task.gym_id, episodes, seed)
    figures = optimism(model, run.policy.eval(), real, coef, horizons, generator, rng)

    data = prepare_dataset(task.name, progress=False, log=lambda *_: None)
    pick = rng.choice(len(data.rewards), size=min(data_rows, len(data.rewards)), replace=False)
    data_rew, _, data_penalty = one_step(model, data.observations[pick].astype(np.float32), data.actions[pick].astype(np.float32), generator)
    data_bias = data_rew - data.rewards[pick]

    return {
        "run": str(run_dir),
        "task": task.name,
        "algo": run.config.algo,
        "model_kind": model.kind,
        "model_dir": str(model_dir),
        "epoch": run.epoch,
        "episodes": episodes,
        "penalty_coef_applied": coef,
        **figures,
        "data_one_step_reward_bias": float(data_bias.mean()),
        "data_penalty_in_reward": float(coef * data_penalty.mean()),
        "seconds": time.perf_counter() - started,
    }


def fmt(cell: dict) -> str:
    return f"{cell['mean']:+.3f} [{cell['low']:+.3f}, {cell['high']:+.3f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    parser.add_argument("--episodes", type=int, default=5, help="real episodes of each run's policy (default: 5)")
    parser.add_argument("--horizons", type=int, nargs="+", default=[5, 25, 100],
                        help="closed-loop model steps from each real state (default: 5 25 100; 5 is the loop's)")
    parser.add_argument("--data-rows", type=int, default=10_000, help="data transitions for the reference bias (default: 10,000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/model-optimism-cpu.md"))
    args = parser.parse_args(argv)
    if args.episodes < 1 or min(args.horizons) < 1:
        parser.error("--episodes and every --horizons value must be at least 1")
    torch.set_num_threads(args.threads)

    results = []
    for run_dir in args.runs:
        result = measure(run_dir, args.episodes, args.horizons, args.seed, args.data_rows)
        results.append(result)
        print(f"{run_dir}: one-step reward bias {fmt(result['one_step_reward_bias'])} ({result['seconds']:.0f} s)", flush=True)

    lines = [
        "# Where the exploitation gap comes from: model reward against real reward on the policy's own states",
        "",
        f"- command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`",
        f"- date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {git_commit() or 'unknown'}, CPU, {args.threads} thread(s)",
        f"- per step; the run's policy (its checkpoint's actor, deterministic) for {args.episodes} real episodes; "
        f"brackets: 95% bootstrap over blocks of {BLOCK} steps; benchmarks/model_optimism.py says what each column is",
        "",
        "| run | model | epoch | real return | real reward a step | one-step reward bias | next-state MSE | "
        "penalty (x coef) | data: reward bias | data: penalty (x coef) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {Path(r['run']).name} | {r['model_kind']} | {r['epoch']} | {r['real_return']:.0f} | {r['real_reward_per_step']:.3f} | "
            f"{fmt(r['one_step_reward_bias'])} | {r['one_step_next_state_mse']:.4f} | {r['one_step_penalty_in_reward']:.3f} | "
            f"{r['data_one_step_reward_bias']:+.4f} | {r['data_penalty_in_reward']:.3f} |"
        )
    lines += [
        "",
        "Closed loop: the policy in the model from each real state, summed model reward against the real episode's "
        "next k rewards, per step (penalised: the run's coefficient times the raw penalty taken off):",
        "",
        "| run | k | starts | raw bias | penalised bias | model steps taken (of k) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        for k, cell in r["closed_loop"].items():
            lines.append(f"| {Path(r['run']).name} | {k} | {cell['starts']} | {fmt(cell['raw_bias'])} | "
                         f"{fmt(cell['penalised_bias'])} | {cell['model_steps']:.1f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
