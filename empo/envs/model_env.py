"""A trained dynamics model as a gymnasium vector env (:class:`ModelEnv`), and its one-env view.

``ModelEnv`` steps ``num_envs`` states together through any :class:`empo.models.Dynamics` (ETM,
FTM, the simulator diagnostic, a model of your own) on the model's device. It is written here
rather than built from gymnasium's ``SyncVectorEnv`` because that would step one sub-env at a
time; here a vector step is one batched model call. Episodes start from dataset states, end by the
task's termination rule and are truncated at ``horizon`` steps; the reward is the model's, minus
``penalty_coef`` times its raw uncertainty penalty. ::

    env = ModelEnv(model, "hopper-medium", transitions, num_envs=64, horizon=5, penalty_coef=1.0)
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

Autoreset: ``"SameStep"`` by default (gymnasium's ``AutoresetMode.SAME_STEP``): a sub-env that
ends is reset in the same ``step``, which returns its new start state; the state it ended in is
``info["final_obs"][i]`` and that step's info is ``info["final_info"]`` (gymnasium masks:
``info["_final_obs"]`` etc.). With ``"Disabled"`` nothing is reset: the caller resets ended
sub-envs with ``reset(options={"reset_mask": mask})`` before stepping again.
``info["raw_reward"]`` and ``info["penalty"]`` are the model's reward and raw penalty (for an
ended sub-env under ``final_info``, as gymnasium's vector envs place a last step's info).

Host work per step: the actions go to the device, and one packed tensor comes back.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from empo.data.tasks import Task, get_task
from empo.data.transitions import Transitions
from empo.errors import EmpoError
from empo.models.dynamics import Dynamics, check_dynamics
from empo.models.termination import get_termination_fn

STARTS = ("all", "episode")  # start states: every dataset observation, or episodes' first ones
TERMINATIONS = ("task", "model")  # the task's rule on next_obs, or the model's StepResult.terminal
AUTORESET_MODES = (AutoresetMode.SAME_STEP, AutoresetMode.DISABLED)
INFO_KEYS = ("raw_reward", "penalty")


class ModelEnv(VectorEnv):
    """``num_envs`` episodes in a learned model, stepped as one batch on the model's device.

    Args:
        model: the transition model (:class:`empo.models.Dynamics`); its sizes must be the task's.
        task: a :class:`Task` or a task name; it gives the spaces and the termination rule.
        dataset: start states are drawn from its observations (``starts="all"``) or from its
            episodes' first observations (``starts="episode"``).
        num_envs: states stepped together.
        horizon: an episode is truncated after this many steps (unless it terminated).
        penalty_coef: the reward is ``raw_reward - penalty_coef * penalty`` (0: the raw reward).
        termination: ``"task"`` applies the task's rule to the next state; ``"model"`` uses the
            model's own ``terminal``.
        autoreset_mode: ``"SameStep"`` (default) or ``"Disabled"``.
        seed: seeds the generator now; ``reset(seed=...)`` reseeds it.

    Actions are clipped to [-1, 1], the range of the dataset's actions.
    """

    def __init__(
        self,
        model: Dynamics,
        task: Task | str,
        dataset: Transitions,
        num_envs: int = 1,
        horizon: int = 1000,
        penalty_coef: float = 0.0,
        starts: str = "all",
        termination: str = "task",
        autoreset_mode: str | AutoresetMode = AutoresetMode.SAME_STEP,
        seed: int | None = None,
    ) -> None:
        task = get_task(task) if isinstance(task, str) else task
        check_dynamics(model, task, where="ModelEnv's model")
        if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise EmpoError(f"ModelEnv: num_envs must be a positive integer, got {num_envs!r}")
        if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
            raise EmpoError(f"ModelEnv: horizon must be a positive integer (steps per episode), got {horizon!r}")
        if isinstance(penalty_coef, bool) or not isinstance(penalty_coef, Real) or not math.isfinite(penalty_coef) or penalty_coef < 0:
            raise EmpoError(f"ModelEnv: penalty_coef must be a finite number >= 0, got {penalty_coef!r}")
        if starts not in STARTS:
            raise EmpoError(f"ModelEnv: starts must be one of {', '.join(STARTS)}, got {starts!r}")
        if termination not in TERMINATIONS:
            raise EmpoError(f"ModelEnv: termination must be one of {', '.join(TERMINATIONS)}, got {termination!r}")
        try:
            mode = AutoresetMode(autoreset_mode)
        except ValueError:
            mode = None
        if mode not in AUTORESET_MODES:
            valid = ", ".join(m.value for m in AUTORESET_MODES)
            raise EmpoError(f"ModelEnv: autoreset_mode must be one of {valid}, got {autoreset_mode!r}")
        if not isinstance(dataset, Transitions):
            raise EmpoError(f"ModelEnv: dataset must be empo.data.transitions.Transitions, got {type(dataset).__name__}")
        observations = dataset.observations if starts == "all" else dataset.observations[dataset.episode_starts]
        if observations.shape[0] == 0:
            raise EmpoError(f"ModelEnv: the dataset ({dataset.source}) has no {'episodes' if starts == 'episode' else 'observations'} to start from")
        if observations.ndim != 2 or observations.shape[1] != task.obs_dim:
            raise EmpoError(
                f"ModelEnv: the dataset ({dataset.source}) has observations of shape {list(observations.shape[1:])}, "
                f"but task {task.name} needs [{task.obs_dim}]"
            )

        self.model, self.task = model, task
        self.num_envs, self.horizon, self.penalty_coef = int(num_envs), int(horizon), float(penalty_coef)
        self.starts, self.termination = starts, termination
        self.device = torch.device(model.device)
        self.metadata = {"autoreset_mode": mode, "render_modes": []}
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(task.obs_dim,), dtype=np.float32)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, shape=(task.act_dim,), dtype=np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

        self._start_states = torch.as_tensor(observations, dtype=torch.float32, device=self.device)
        self._rule = get_termination_fn(task.env.termination) if termination == "task" else None
        self._generator = torch.Generator(device=self.device)
        if seed is None:
            self._generator.seed()
        else:
            self._seed(seed)
        self._obs: torch.Tensor | None = None  # [num_envs, obs_dim] on the device; None before reset
        self._elapsed = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        self._ended = np.zeros(self.num_envs, dtype=bool)  # "Disabled" mode: ended and not yet reset

    @classmethod
    def single(cls, model: Dynamics, task: Task | str, dataset: Transitions, **kwargs: Any) -> SingleModelEnv:
        """The one-env ``gymnasium.Env`` view (what ``gymnasium.utils.env_checker.check_env`` checks)."""
        return SingleModelEnv(model, task, dataset, **kwargs)

    @property
    def generator(self) -> torch.Generator:
        """The generator (on the model's device) behind start-state draws and model sampling."""
        return self._generator

    def _seed(self, seed: int) -> None:
        self._generator.manual_seed(int(seed))
        self._np_random, self._np_random_seed = seeding.np_random(int(seed))

    def _draw_starts(self, n: int) -> torch.Tensor:
        index = torch.randint(self._start_states.shape[0], (n,), generator=self._generator, device=self.device)
        return self._start_states[index]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw start states for every sub-env, or for those in ``options["reset_mask"]`` (bool [num_envs])."""
        if seed is not None:
            self._seed(seed)
        mask = None if options is None else options.get("reset_mask")
        if mask is None or self._obs is None:
            self._obs = self._draw_starts(self.num_envs)
            self._elapsed.zero_()
            self._ended[:] = False
        else:
            mask = np.asarray(mask)
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_:
                raise EmpoError(f"ModelEnv: options['reset_mask'] must be a bool array of shape ({self.num_envs},), got {mask.dtype} {mask.shape}")
            mask_t = torch.as_tensor(mask, device=self.device)
            self._obs = torch.where(mask_t[:, None], self._draw_starts(self.num_envs), self._obs)
            self._elapsed.masked_fill_(mask_t, 0)
            self._ended[mask] = False
        return self._obs.cpu().numpy(), {}

    @torch.no_grad()
    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._obs is None:
            raise EmpoError("ModelEnv: call reset() before step()")
        if self._ended.any():
            raise EmpoError(
                f"ModelEnv: sub-envs {np.flatnonzero(self._ended).tolist()} have ended; with autoreset_mode Disabled "
                "reset them with reset(options={'reset_mask': mask}) before stepping"
            )
        act = torch.as_tensor(actions, dtype=torch.float32, device=self.device)
        if act.shape != (self.num_envs, self.task.act_dim):
            raise EmpoError(f"ModelEnv: actions must have shape ({self.num_envs}, {self.task.act_dim}), got {tuple(act.shape)}")
        act = act.clamp(-1.0, 1.0)
        result = self.model.step(self._obs, act, generator=self._generator)
        next_obs = result.next_obs
        raw = result.reward.reshape(-1).float()
        penalty = result.penalty.reshape(-1).float()
        terminated = (self._rule(next_obs) if self._rule is not None else result.terminal).reshape(-1).bool()
        self._elapsed += 1
        truncated = (self._elapsed >= self.horizon) & ~terminated
        reward = raw - self.penalty_coef * penalty if self.penalty_coef else raw
        same_step = self.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
        if same_step:
            done = terminated | truncated
            self._obs = torch.where(done[:, None], self._draw_starts(self.num_envs), next_obs)
            self._elapsed.masked_fill_(done, 0)
        else:
            self._obs = next_obs
        # one device-to-host copy: [obs returned, (final obs), reward, raw, penalty, terminated, truncated]
        columns = [self._obs, next_obs] if same_step else [self._obs]
        columns += [c[:, None] for c in (reward, raw, penalty, terminated.float(), truncated.float())]
        packed = torch.cat(columns, dim=1).cpu().numpy()
        d = self.task.obs_dim
        tail = packed[:, -5:]
        rewards = tail[:, 0].astype(np.float64)
        terms, truncs = tail[:, 3] > 0.5, tail[:, 4] > 0.5
        values = {"raw_reward": tail[:, 1].astype(np.float64), "penalty": tail[:, 2].astype(np.float64)}
        obs = np.ascontiguousarray(packed[:, :d])
        if same_step:
            infos = self._same_step_infos(values, packed[:, d : 2 * d], terms | truncs)
        else:
            self._ended = terms | truncs
            infos = masked_infos(values, np.ones(self.num_envs, dtype=bool))
        return obs, rewards, terms, truncs, infos

    @property
    def ended(self) -> np.ndarray:
        """Disabled mode: the sub-envs whose episode ended and that were not reset since (a copy)."""
        return self._ended.copy()

    def step_some(
        self, actions: np.ndarray, active: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One batched step in which only the ``active`` sub-envs (bool mask) move: the others keep
        their state, step count and end flag (their rows of the result are to be ignored). For callers
        that step part of the batch, e.g. tianshou's collector (empo/integrations/tianshou.py)."""
        if self._obs is None:
            raise EmpoError("ModelEnv: call reset() before step()")
        active = np.asarray(active)
        if active.shape != (self.num_envs,) or active.dtype != bool:
            raise EmpoError(f"ModelEnv.step_some: active must be a bool mask of shape ({self.num_envs},), got {active.dtype} {active.shape}")
        idle = ~active
        idle_t = torch.as_tensor(idle, device=self.device)
        obs_before, elapsed_before, ended_before = self._obs.clone(), self._elapsed.clone(), self._ended.copy()
        self._ended = np.where(idle, False, self._ended)  # an ended idle env is carried along, not stepped for real
        try:
            result = self.step(actions)
        except BaseException:
            self._obs, self._elapsed, self._ended = obs_before, elapsed_before, ended_before
            raise
        self._obs = torch.where(idle_t[:, None], obs_before, self._obs)
        self._elapsed = torch.where(idle_t, elapsed_before, self._elapsed)
        self._ended = np.where(idle, ended_before, self._ended)
        return result

    def _same_step_infos(self, values: dict[str, np.ndarray], final: np.ndarray, done: np.ndarray) -> dict[str, Any]:
        """The info gymnasium's SyncVectorEnv gives in SameStep mode: a reset sub-env's own info is empty."""
        infos = masked_infos(values, ~done)
        if done.any():
            final_obs = np.full(self.num_envs, None, dtype=object)
            for i in np.flatnonzero(done):
                final_obs[i] = final[i].copy()
            infos.update(final_obs=final_obs, _final_obs=done.copy(), final_info=masked_infos(values, done), _final_info=done.copy())
        return infos

    def close_extras(self, **kwargs: Any) -> None:
        self._obs = None

    def __repr__(self) -> str:
        return f"ModelEnv({self.model.kind}, {self.task.name}, num_envs={self.num_envs}, horizon={self.horizon})"


def masked_infos(values: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, Any]:
    """Gymnasium's vector info layout: ``key`` holds the values where ``_key`` is true (0 elsewhere)."""
    if not mask.any():
        return {}
    infos: dict[str, Any] = {}
    for key, value in values.items():
        infos[key] = np.where(mask, value, 0.0)
        infos[f"_{key}"] = mask.copy()
    return infos


class SingleModelEnv(gym.Env):
    """One episode in the model as a plain ``gymnasium.Env`` (a :class:`ModelEnv` with one env, no autoreset).

    Takes ModelEnv's arguments except ``num_envs`` and ``autoreset_mode``; ``step`` returns the
    reward as a float and ``{"raw_reward": float, "penalty": float}`` as info.
    """

    metadata = {"render_modes": []}

    def __init__(self, model: Dynamics, task: Task | str, dataset: Transitions, **kwargs: Any) -> None:
        for name in ("num_envs", "autoreset_mode"):
            if name in kwargs:
                raise EmpoError(f"SingleModelEnv: '{name}' is fixed (one env, no autoreset); use ModelEnv for more")
        self.vector = ModelEnv(model, task, dataset, num_envs=1, autoreset_mode=AutoresetMode.DISABLED, **kwargs)
        self.observation_space = self.vector.single_observation_space
        self.action_space = self.vector.single_action_space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        obs, _ = self.vector.reset(seed=seed)
        return obs[0], {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, infos = self.vector.step(np.asarray(action, dtype=np.float32)[None])
        info = {key: float(infos[key][0]) for key in INFO_KEYS}
        return obs[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]), info

    def close(self) -> None:
        self.vector.close()
