"""stable-baselines3's ``VecEnv`` over a :class:`empo.envs.model_env.ModelEnv`.

Hand-written because SB3 only vectorises single ``gym.Env`` objects (``DummyVecEnv`` steps them
one by one); this adapter keeps ModelEnv's one batched model call per step and translates its
gymnasium output to SB3's conventions: ``done = terminated or truncated``; on done the returned
observation is the new start state and the final one is ``infos[i]["terminal_observation"]``;
``infos[i]["TimeLimit.truncated"]`` marks a horizon cut (not a termination). Each info also holds
the model's ``raw_reward`` and ``penalty``. ::

    from stable_baselines3 import SAC
    venv = SB3ModelVecEnv(ModelEnv(model, "hopper-medium", transitions, num_envs=8, horizon=5))
    SAC("MlpPolicy", venv, seed=0).learn(10_000)

The sub-envs share one ModelEnv (one batch): ``get_attr``/``set_attr``/``env_method`` act on
that ModelEnv and repeat its answer for each index asked. ``seed(s)`` takes effect at the next
``reset()`` (as in SB3), seeding ModelEnv's one generator with ``s``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from empo.envs.model_env import INFO_KEYS, ModelEnv
from empo.errors import EmpoError


class SB3ModelVecEnv(VecEnv):
    """SB3's ``VecEnv`` API over a ModelEnv in SameStep autoreset mode."""

    def __init__(self, env: ModelEnv) -> None:
        if not isinstance(env, ModelEnv):
            raise EmpoError(f"SB3ModelVecEnv: expected an empo ModelEnv, got {type(env).__name__}")
        if env.metadata["autoreset_mode"] != AutoresetMode.SAME_STEP:
            raise EmpoError("SB3ModelVecEnv: the ModelEnv must use autoreset_mode SameStep (SB3 resets in the same step)")
        self.env = env
        self._actions: np.ndarray | None = None
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)

    def reset(self) -> VecEnvObs:
        seed = self._seeds[0]
        obs, _ = self.env.reset(seed=seed)
        self.reset_infos = [{} for _ in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise EmpoError("SB3ModelVecEnv: step_wait() without step_async()")
        obs, rewards, terminated, truncated, vector_info = self.env.step(self._actions)
        self._actions = None
        dones = terminated | truncated
        final_info = vector_info.get("final_info", {})
        infos: list[dict[str, Any]] = []
        for i in range(self.num_envs):
            source = final_info if dones[i] else vector_info
            info = {key: float(source[key][i]) for key in INFO_KEYS}
            info["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            if dones[i]:
                info["terminal_observation"] = vector_info["final_obs"][i]
            infos.append(info)
        return obs, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.env.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self.env, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any) -> list[Any]:
        result = getattr(self.env, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]
