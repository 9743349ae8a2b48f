"""tianshou's (2.x) vector env over a :class:`empo.envs.model_env.ModelEnv`.

Hand-written because tianshou vectorises single ``gym.Env`` objects through workers
(``DummyVectorEnv`` steps them one by one); this adapter keeps ModelEnv's one batched model call
per step and speaks tianshou's ``BaseVectorEnv`` API: ``reset(env_id=None, seed=..., options=...)``
returns ``(obs, infos)`` and ``step(action, id=None)`` returns ``(obs, rew, terminated, truncated,
infos)`` for the envs in ``id`` (in that order), ``infos`` being an object array of per-env dicts
(``env_id``, the model's ``raw_reward`` and ``penalty``). tianshou's ``Collector`` resets ended
envs itself with ``reset(env_id)``, so the ModelEnv must be made with ``autoreset_mode="Disabled"``:
a step returns the state an episode ended in as its ``obs``, which the collector stores as
``obs_next``. ::

    from tianshou.data import Collector, VectorReplayBuffer
    venv = TianshouModelVectorEnv(ModelEnv(model, "hopper-medium", transitions, num_envs=8, horizon=5,
                                           autoreset_mode="Disabled"))
    collector = Collector(sac, venv, VectorReplayBuffer(10_000, len(venv)))
    collector.reset()
    collector.collect(n_step=1_000)

The sub-envs are one batch: ``get_env_attr``/``set_env_attr`` act on the one ModelEnv
(``action_space`` and ``observation_space`` answer the one-env spaces, as a tianshou worker
would); ``seed(s)`` seeds ModelEnv's one generator with ``s`` (the first, for a list) and resets
every env, as tianshou's ``DummyEnvWorker.seed`` does.

A step of some of the envs (the collector does this when it collects ``n_episode`` episodes and
has more envs than episodes left) still runs one batched model call over all of them, and then
puts the others' states and step counters back, so that they are as they were.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from tianshou.env import BaseVectorEnv

from empo.envs.model_env import INFO_KEYS, ModelEnv
from empo.errors import EmpoError

NAME = "TianshouModelVectorEnv"
ONE_ENV_SPACES = {"action_space": "single_action_space", "observation_space": "single_observation_space"}


class TianshouModelVectorEnv(BaseVectorEnv):
    """tianshou's ``BaseVectorEnv`` API over a ModelEnv in Disabled autoreset mode (synchronous)."""

    # No BaseVectorEnv.__init__: it builds one worker per env, and here one ModelEnv steps them all
    # (tianshou's own VectorEnvWrapper extends the interface the same way).
    def __init__(self, env: ModelEnv) -> None:
        if not isinstance(env, ModelEnv):
            raise EmpoError(f"{NAME}: expected an empo ModelEnv, got {type(env).__name__}")
        if env.metadata["autoreset_mode"] != AutoresetMode.DISABLED:
            raise EmpoError(
                f"{NAME}: the ModelEnv must use autoreset_mode Disabled (tianshou resets ended envs itself "
                f"with reset(env_id)), got {env.metadata['autoreset_mode'].value}"
            )
        self.env = env
        self.env_num = env.num_envs
        self.act_dim = int(env.single_action_space.shape[0])
        # what tianshou's collectors and wrappers read of a BaseVectorEnv: a synchronous env
        self.wait_num = self.env_num
        self.timeout = None
        self.is_async = False
        self.waiting_conn: list[Any] = []
        self.waiting_id: list[int] = []
        self.ready_id = list(range(self.env_num))
        self.is_closed = False

    def __len__(self) -> int:
        return self.env_num

    def __repr__(self) -> str:
        return f"{NAME}({self.env!r})"

    # ----------------------------------------------------------------------------------- ids
    def _check_open(self) -> None:
        if self.is_closed:
            raise EmpoError(f"{NAME}: the env is closed")

    def _ids(self, id: int | Sequence[int] | np.ndarray | None) -> np.ndarray:
        """Env ids as an int array, in the caller's order; None is every env."""
        if id is None:
            return np.arange(self.env_num)
        ids = np.atleast_1d(np.asarray(id))
        if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
            raise EmpoError(f"{NAME}: env ids must be integers, got {id!r}")
        ids = ids.astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.env_num):
            raise EmpoError(f"{NAME}: env ids must be in [0, {self.env_num}), got {ids.tolist()}")
        if np.unique(ids).size != ids.size:
            raise EmpoError(f"{NAME}: env ids must not repeat, got {ids.tolist()}")
        return ids

    # --------------------------------------------------------------------------- attributes
    def get_env_attr(self, key: str, id: int | Sequence[int] | np.ndarray | None = None) -> list[Any]:
        self._check_open()
        value = getattr(self.env, ONE_ENV_SPACES.get(key, key))
        return [value for _ in self._ids(id)]

    def set_env_attr(self, key: str, value: Any, id: int | Sequence[int] | np.ndarray | None = None) -> None:
        self._check_open()
        self._ids(id)
        setattr(self.env, key, value)

    # ------------------------------------------------------------------------ reset and step
    def reset(
        self, env_id: int | Sequence[int] | np.ndarray | None = None, **kwargs: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Start new episodes in the envs ``env_id`` (default: all); returns their obs and ``{}`` infos."""
        self._check_open()
        unknown = sorted(set(kwargs) - {"seed", "options"})
        if unknown:
            raise EmpoError(f"{NAME}: reset() takes env_id, seed and options, not {', '.join(unknown)}")
        ids = self._ids(env_id)
        options = dict(kwargs.get("options") or {})
        if env_id is not None:
            mask = np.zeros(self.env_num, dtype=bool)
            mask[ids] = True
            options["reset_mask"] = mask
        obs, _ = self.env.reset(seed=kwargs.get("seed"), options=options or None)
        return obs[ids], np.array([{} for _ in ids], dtype=object)

    def step(
        self, action: np.ndarray | torch.Tensor | None, id: int | Sequence[int] | np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One batched model step; returns the results of the envs ``id`` (default: all), in that order."""
        self._check_open()
        if action is None:
            raise EmpoError(f"{NAME}: step() needs actions (this env is synchronous)")
        ids = self._ids(id)
        if isinstance(action, torch.Tensor):
            action = action.detach().cpu().numpy()
        action = np.asarray(action, dtype=np.float32)
        if action.shape != (ids.size, self.act_dim):
            raise EmpoError(
                f"{NAME}: actions must have shape ({ids.size}, {self.act_dim}) for {ids.size} env ids, got {action.shape}"
            )
        ended = self.env.ended
        if ended[ids].any():
            raise EmpoError(f"{NAME}: envs {ids[ended[ids]].tolist()} have ended; reset(env_id) them before stepping")
        actions = np.zeros((self.env_num, self.act_dim), dtype=np.float32)
        actions[ids] = action
        if ids.size == self.env_num:
            obs, rew, terminated, truncated, infos = self.env.step(actions)
        else:
            active = np.zeros(self.env_num, dtype=bool)
            active[ids] = True
            obs, rew, terminated, truncated, infos = self.env.step_some(actions, active)
        per_env = np.empty(ids.size, dtype=object)
        for k, j in enumerate(ids):
            per_env[k] = {"env_id": int(j), **{key: float(infos[key][j]) for key in INFO_KEYS}}
        return obs[ids], rew[ids], terminated[ids], truncated[ids], per_env

    def seed(self, seed: int | list[int] | None = None) -> list[list[int] | None]:
        """Seed the one generator (with the first seed of a list) and reset every env."""
        self._check_open()
        if isinstance(seed, list | tuple):
            if len(seed) != self.env_num:
                raise EmpoError(f"{NAME}: seed() takes one seed or {self.env_num}, got {len(seed)}")
            seed = seed[0]
        if seed is None:
            self.env.generator.seed()
            self.env.reset()
            return [None] * self.env_num
        self.env.reset(seed=int(seed))
        return [[int(seed)] for _ in range(self.env_num)]

    def render(self, **kwargs: Any) -> list[Any]:
        self._check_open()
        return [None] * self.env_num

    def close(self) -> None:
        if not self.is_closed:
            self.env.close()
            self.is_closed = True
