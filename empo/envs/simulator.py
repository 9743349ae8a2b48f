"""The real MuJoCo simulator behind the dynamics-model interface: a perfect model, for checking the loop.

With ``model_kind: simulator`` the rollout engine steps the gymnasium env itself from each
sampled state instead of a learned model (penalty 0). That is no longer offline RL, but it
separates the two ways a run can fail: if SAC learns from simulator rollouts and not from model
rollouts, the model (or its penalty) is at fault, not the loop or the agent.

The v5 MuJoCo tasks observe ``qpos[1:]`` (the x position is left out; the dynamics do not depend
on it) followed by ``qvel`` (clipped to [-10, 10] for hopper and walker2d, so a state with a
faster joint is restored approximately). Each sample is set and stepped on the host, one at a
time: this model is a diagnostic, not a fast path.
"""

from __future__ import annotations

import numpy as np
import torch

from empo.data.envs import make_env
from empo.data.tasks import Task
from empo.errors import EmpoError
from empo.models.dynamics import StepResult


class SimulatorDynamics:
    """``step(obs, act) -> StepResult`` computed by the task's own gymnasium env (zero penalty)."""

    kind = "simulator"

    def __init__(self, task: Task, device: str | torch.device = "cpu") -> None:
        self.task = task
        self.obs_dim, self.act_dim = task.obs_dim, task.act_dim
        self.device = torch.device(device)
        self.env = make_env(task.gym_id).unwrapped
        self.env.reset(seed=0)
        nq = self.env.model.nq
        self.qpos_observed = nq - 1  # x position (qpos[0]) is not observed
        if self.qpos_observed + self.env.model.nv != self.obs_dim:
            raise EmpoError(
                f"{task.gym_id}: the simulator's state (nq={nq}, nv={self.env.model.nv}) does not match "
                f"observations of size {self.obs_dim}; only envs observing qpos[1:] and qvel are supported"
            )

    def set_observation(self, obs: np.ndarray) -> None:
        """Put the simulator in the state that ``obs`` (float64) describes (x position 0)."""
        qpos = np.concatenate([[0.0], obs[: self.qpos_observed]])
        self.env.set_state(qpos, obs[self.qpos_observed :])

    @torch.no_grad()
    def step(self, obs: torch.Tensor, act: torch.Tensor, generator: torch.Generator | None = None) -> StepResult:
        obs_np = obs.detach().cpu().numpy().astype(np.float64)
        act_np = act.detach().cpu().numpy().astype(np.float64)
        n = obs_np.shape[0]
        next_obs = np.empty((n, self.obs_dim), dtype=np.float32)
        reward = np.empty(n, dtype=np.float32)
        terminal = np.empty(n, dtype=bool)
        for i in range(n):
            self.set_observation(obs_np[i])
            next_obs[i], reward[i], terminal[i], _, _ = self.env.step(act_np[i])
        next_obs_t, reward_t, terminal_t = (torch.as_tensor(x, device=self.device) for x in (next_obs, reward, terminal))
        return StepResult(next_obs_t, reward_t, terminal_t, torch.zeros(n, device=self.device))

    def predict(self, obs: torch.Tensor, act: torch.Tensor, generator: torch.Generator | None = None):
        result = self.step(obs, act)
        return result.next_obs, result.reward

    def to(self, device: str | torch.device) -> SimulatorDynamics:
        self.device = torch.device(device)
        return self

    def close(self) -> None:
        self.env.close()
