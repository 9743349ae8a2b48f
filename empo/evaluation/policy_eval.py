"""Evaluate a policy in the real gymnasium environment (DESIGN.md section 8).

The deterministic policy runs ``episodes`` episodes at once in a vectorised env (one sub-env per
episode, one batched forward pass per step); the score is the D4RL-normalised mean return.
Evaluation is outside the training hot loop, so observations cross to the host here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from empo.data.tasks import Task
from empo.errors import EmpoError


@dataclass
class EvalResult:
    returns: list[float]
    lengths: list[int]
    normalized_scores: list[float]

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns)) if self.returns else float("nan")

    @property
    def std_return(self) -> float:
        return float(np.std(self.returns)) if self.returns else float("nan")

    @property
    def mean_score(self) -> float:
        return float(np.mean(self.normalized_scores)) if self.normalized_scores else float("nan")

    @property
    def std_score(self) -> float:
        return float(np.std(self.normalized_scores)) if self.normalized_scores else float("nan")

    @property
    def mean_length(self) -> float:
        return float(np.mean(self.lengths)) if self.lengths else float("nan")


class PolicyEvaluator:
    """Holds ``episodes`` real envs of ``task`` and runs a policy in them on demand."""

    def __init__(self, task: Task, episodes: int = 10, device: str | torch.device = "cpu", max_steps: int | None = None):
        import gymnasium as gym

        if episodes < 1:
            raise EmpoError(f"evaluation needs at least one episode, got {episodes}")
        self.task = task
        self.episodes = episodes
        self.device = torch.device(device)
        self.max_steps = max_steps
        try:
            self.envs = gym.vector.SyncVectorEnv([lambda: gym.make(task.gym_id) for _ in range(episodes)])
        except Exception as exc:  # gymnasium/mujoco missing or broken: say which env
            raise EmpoError(f"cannot create the evaluation env {task.gym_id}: {exc}") from None

    def close(self) -> None:
        self.envs.close()

    @torch.no_grad()
    def evaluate(self, policy: Callable[[torch.Tensor], torch.Tensor], seed: int) -> EvalResult:
        """Run each sub-env for one episode (episode i seeded ``seed + i``); returns per-episode figures."""
        obs, _ = self.envs.reset(seed=[seed + i for i in range(self.episodes)])
        returns = np.zeros(self.episodes)
        lengths = np.zeros(self.episodes, dtype=np.int64)
        running = np.ones(self.episodes, dtype=bool)
        steps = 0
        while running.any():
            obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
            action = policy(obs_t).cpu().numpy()
            obs, reward, terminated, truncated, _ = self.envs.step(action)
            # sub-envs that already finished are auto-reset; their further steps do not count
            returns += np.where(running, reward, 0.0)
            lengths += running
            running &= ~(terminated | truncated)
            steps += 1
            if self.max_steps is not None and steps >= self.max_steps:
                break
        scores = [self.task.normalized_score(r) for r in returns]
        return EvalResult([float(r) for r in returns], [int(n) for n in lengths], scores)


def evaluate_policy(
    policy: Callable[[torch.Tensor], torch.Tensor],
    task: Task,
    episodes: int = 10,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> EvalResult:
    """One-off evaluation: build the envs, run ``episodes`` deterministic episodes, close."""
    evaluator = PolicyEvaluator(task, episodes, device)
    try:
        return evaluator.evaluate(policy, seed)
    finally:
        evaluator.close()
