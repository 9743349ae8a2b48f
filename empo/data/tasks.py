"""Task registry: ``<env>-<level>`` names, their gymnasium envs and D4RL reference scores."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from empo.errors import EmpoError

LEVELS: tuple[str, ...] = ("random", "medium", "medium-replay", "medium-expert", "expert")


@dataclass(frozen=True)
class EnvSpec:
    """One MuJoCo locomotion environment as the project uses it."""

    name: str
    gym_id: str
    obs_dim: int
    act_dim: int
    ref_min_score: float  # D4RL's random-policy return
    ref_max_score: float  # D4RL's expert return
    termination: str  # name of the rule in empo.models.termination
    medium_return: float  # D4RL v2 medium dataset mean return (the target band for "medium")
    expert_return: float  # D4RL v2 expert dataset mean return (approx.)


ENVS: dict[str, EnvSpec] = {
    "hopper": EnvSpec("hopper", "Hopper-v5", 11, 3, -20.272305, 3234.3, "hopper", 1420.0, 3500.0),
    "halfcheetah": EnvSpec(
        "halfcheetah", "HalfCheetah-v5", 17, 6, -280.178953, 12135.0, "halfcheetah", 4770.0, 10650.0
    ),
    "walker2d": EnvSpec("walker2d", "Walker2d-v5", 17, 6, 1.629008, 4592.3, "walker2d", 3300.0, 4920.0),
}


@dataclass(frozen=True)
class Task:
    """A dataset task such as ``hopper-medium``."""

    env: EnvSpec
    level: str

    @property
    def name(self) -> str:
        return f"{self.env.name}-{self.level}"

    @property
    def gym_id(self) -> str:
        return self.env.gym_id

    @property
    def obs_dim(self) -> int:
        return self.env.obs_dim

    @property
    def act_dim(self) -> int:
        return self.env.act_dim

    @property
    def minari_id(self) -> str:
        """The id under which ``empo-data build`` stores this task's Minari dataset."""
        return f"empo/{self.env.name}/{self.level}-v0"

    @property
    def d4rl_filename(self) -> str:
        """D4RL's file name, e.g. ``hopper_medium_replay-v2.hdf5``."""
        return f"{self.env.name}_{self.level.replace('-', '_')}-v2.hdf5"

    def normalized_score(self, episode_return: float) -> float:
        return normalized_score(episode_return, self.env.ref_min_score, self.env.ref_max_score)


def normalized_score(episode_return: float, ref_min: float, ref_max: float) -> float:
    """D4RL-normalised score: 0 is the random policy, 100 the expert."""
    return 100.0 * (float(episode_return) - ref_min) / (ref_max - ref_min)


def task_names() -> list[str]:
    return [f"{env}-{level}" for env in ENVS for level in LEVELS]


def get_task(name: str) -> Task:
    """Look a task up by name; a misspelt name is an error listing the valid ones."""
    for env_name, spec in ENVS.items():
        prefix = env_name + "-"
        if name.startswith(prefix) and name[len(prefix) :] in LEVELS:
            return Task(spec, name[len(prefix) :])
    names = task_names()
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise EmpoError(f"unknown task '{name}'{hint}; valid tasks: {', '.join(names)}")
