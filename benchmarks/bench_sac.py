"""SAC updates per second: empo's device-resident SAC vs stable-baselines3's SAC.

Both agents: actor and twin critics 256 x 256, batch 256, automatic temperature, same device,
Hopper shapes (obs 11, act 3), a replay buffer filled with 100k random transitions. Each side
samples its own batches inside the timed region (SB3: ``SAC.train(gradient_steps, batch_size)``;
ours: ``TransitionBuffer.sample`` + ``SAC.update``). One run each, after a short warm-up.

    python benchmarks/bench_sac.py [--steps 2000] [--device cpu] [--threads 1] [--out FILE]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from empo.agents import SAC, SACConfig
from empo.loop.buffers import TransitionBuffer
from empo.utils import device_name, git_commit

OBS_DIM, ACT_DIM, FILL, BATCH = 11, 3, 100_000, 256


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_ours(steps: int, device: torch.device) -> float:
    gen = torch.Generator().manual_seed(0)
    data = {
        "observations": torch.randn(FILL, OBS_DIM, generator=gen),
        "actions": torch.rand(FILL, ACT_DIM, generator=gen) * 2 - 1,
        "rewards": torch.randn(FILL, generator=gen),
        "next_observations": torch.randn(FILL, OBS_DIM, generator=gen),
        "terminals": (torch.rand(FILL, generator=gen) < 0.01).float(),
    }
    buffer = TransitionBuffer.from_tensors(data, device)
    agent = SAC(OBS_DIM, ACT_DIM, SACConfig(), device=device, seed=0, total_lr_steps=10)
    sample_gen = torch.Generator(device=device).manual_seed(1)
    for _ in range(50):
        agent.update(buffer.sample(BATCH, sample_gen))
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        agent.update(buffer.sample(BATCH, sample_gen))
    sync(device)
    return steps / (time.perf_counter() - start)


def bench_sb3(steps: int, device: torch.device) -> float:
    import gymnasium as gym
    from stable_baselines3 import SAC as SB3SAC
    from stable_baselines3.common.logger import configure

    class HopperShapes(gym.Env):
        observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
        action_space = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)

    model = SB3SAC(
        "MlpPolicy",
        HopperShapes(),
        policy_kwargs={"net_arch": [256, 256]},
        batch_size=BATCH,
        buffer_size=FILL,
        learning_starts=0,
        device=device,
        seed=0,
    )
    model.set_logger(configure(folder=None, format_strings=[]))
    rng = np.random.default_rng(0)
    rb = model.replay_buffer
    rb.observations[:] = rng.standard_normal(rb.observations.shape, dtype=np.float32)
    rb.next_observations[:] = rng.standard_normal(rb.next_observations.shape, dtype=np.float32)
    rb.actions[:] = rng.uniform(-1, 1, rb.actions.shape).astype(np.float32)
    rb.rewards[:] = rng.standard_normal(rb.rewards.shape, dtype=np.float32)
    rb.dones[:] = (rng.random(rb.dones.shape) < 0.01).astype(np.float32)
    rb.full, rb.pos = True, 0
    model.train(gradient_steps=50, batch_size=BATCH)
    sync(device)
    start = time.perf_counter()
    model.train(gradient_steps=steps, batch_size=BATCH)
    sync(device)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write a markdown report here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ours = bench_ours(args.steps, device)
    sb3 = bench_sb3(args.steps, device)
    print(f"empo SAC: {ours:.1f} updates/s; stable-baselines3 SAC: {sb3:.1f} updates/s; ratio {ours / sb3:.2f}x")
    if args.out:
        import stable_baselines3

        commit = git_commit()
        name = device_name(device)
        text = "\n".join(
            [
                "# SAC updates per second: empo vs stable-baselines3",
                "",
                f"- date: {time.strftime('%Y-%m-%d %H:%M')}",
                f"- git commit: {commit}",
                f"- device: {device} ({name}), torch threads {args.threads}, torch {torch.__version__}, "
                f"stable-baselines3 {stable_baselines3.__version__}",
                f"- command: `python benchmarks/bench_sac.py --steps {args.steps} --device {args.device} --threads {args.threads}`",
                "- setup: 256x256 actor and twin critics, batch 256, auto temperature, Hopper shapes (11/3), "
                "buffer of 100k random transitions, batch sampling inside the timed region, one run each",
                "",
                "| agent | updates/s |",
                "|---|---|",
                f"| empo.agents.SAC | {ours:.1f} |",
                f"| stable_baselines3.SAC (`train(gradient_steps, batch_size)`) | {sb3:.1f} |",
                "",
                f"Ratio: {ours / sb3:.2f}x.",
                "",
            ]
        )
        args.out.write_text(text)


if __name__ == "__main__":
    main()
