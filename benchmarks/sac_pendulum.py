"""SAC checked on its own: empo's SAC trained online on Pendulum-v1.

Pass mark: a deterministic evaluation return above -300 within 20k environment steps.
Same agent class and settings as the offline loop (docs/training.md, "The loop"), with the actor-lr cosine
decay off (an online run has no fixed length to decay over). One update per environment step
after 1000 uniform-random steps; 10 evaluation episodes every 2000 steps.

    python benchmarks/sac_pendulum.py [--steps 20000] [--seed 0] [--threads 1] [--out FILE]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from empo.agents import SAC, SACConfig
from empo.loop.buffers import TransitionBuffer
from empo.utils import device_name, git_commit


def evaluate(agent: SAC, episodes: int, seed: int, scale: float) -> float:
    env = gym.make("Pendulum-v1")
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        done, total = False, 0.0
        while not done:
            act = agent.act(torch.as_tensor(obs, dtype=torch.float32)[None], deterministic=True)[0].numpy()
            obs, reward, terminated, truncated, _ = env.step(act * scale)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-every", type=int, default=2000)
    parser.add_argument("--out", type=Path, help="write a markdown report here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    env = gym.make("Pendulum-v1")
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    scale = float(env.action_space.high[0])  # the agent acts in [-1, 1]
    config = SACConfig(actor_lr_cosine_decay=False)
    agent = SAC(obs_dim, act_dim, config, seed=args.seed)
    buffer = TransitionBuffer(args.steps, obs_dim, act_dim)
    sample_gen = torch.Generator().manual_seed(args.seed + 100)
    rng = np.random.default_rng(args.seed)

    obs, _ = env.reset(seed=args.seed)
    history: list[tuple[int, float]] = []
    start = time.perf_counter()
    first_pass: int | None = None
    for step in range(1, args.steps + 1):
        if step <= 1000:
            act = rng.uniform(-1, 1, size=act_dim).astype(np.float32)
        else:
            act = agent.act(torch.as_tensor(obs, dtype=torch.float32)[None])[0].numpy()
        next_obs, reward, terminated, truncated, _ = env.step(act * scale)
        buffer.add(
            {
                "observations": torch.as_tensor(obs, dtype=torch.float32)[None],
                "actions": torch.as_tensor(act)[None],
                "rewards": torch.tensor([reward], dtype=torch.float32),
                "next_observations": torch.as_tensor(next_obs, dtype=torch.float32)[None],
                "terminals": torch.tensor([float(terminated)]),
            }
        )
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
        if step > 1000:
            agent.update(buffer.sample(256, sample_gen))
        if step % args.eval_every == 0:
            ret = evaluate(agent, 10, 10_000 + step, scale)
            history.append((step, ret))
            if first_pass is None and ret > -300:
                first_pass = step
            print(f"step {step:6d}  eval return {ret:8.1f}  ({time.perf_counter() - start:.0f} s)", flush=True)
    wall = time.perf_counter() - start
    best = max(r for _, r in history)
    passed = first_pass is not None
    print(f"{'PASS' if passed else 'FAIL'}: best eval return {best:.1f}, first above -300 at step {first_pass}")

    if args.out:
        commit = git_commit()
        lines = [
            "# SAC on Pendulum-v1 (online), empo.agents.SAC",
            "",
            f"- date: {time.strftime('%Y-%m-%d %H:%M')}",
            f"- git commit: {commit}",
            f"- device: cpu ({device_name()}), torch threads {args.threads}, "
            f"torch {torch.__version__}; CPU shared with other jobs",
            f"- command: `python benchmarks/sac_pendulum.py --steps {args.steps} --seed {args.seed} --threads {args.threads}`",
            "- settings: docs/training.md SAC (256x256, actor lr 1e-4 without decay, critic lr 3e-4, alpha lr 1e-4, "
            "gamma 0.99, tau 0.005, target entropy -1); batch 256, 1 update per step after 1000 random steps",
            "",
            f"**Result: {'PASS' if passed else 'FAIL'}** (pass mark: deterministic return above -300 within "
            f"{args.steps} steps); first above -300 at step {first_pass}; best {best:.1f}; wall time {wall:.0f} s.",
            "",
            "| env steps | mean return, 10 deterministic episodes |",
            "|---|---|",
            *[f"| {s} | {r:.1f} |" for s, r in history],
            "",
        ]
        args.out.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
