"""Building D4RL-equivalent datasets locally from gymnasium MuJoCo envs (docs/method.md, "Datasets").

random: uniform actions. medium / expert: a SAC behaviour policy, actions sampled stochastically.
medium-expert: medium + expert. medium-replay: the replay buffer of the behaviour-training run up
to the moment it reached medium. Episodes are cut at 1000 steps (timeouts); the last, partial
episode of each env when the size is reached is cut too and marked as a timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from empo.data.behaviour import find_policy, load_policy
from empo.data.minari_io import clean_stale_staging, write_minari
from empo.data.tasks import Task
from empo.errors import EmpoError
from empo.utils import empo_home, torch_threads

DEFAULT_SIZE = 1_000_000
# hours to reach medium on a 2-core CPU: halfcheetah measured (90k SAC steps), the others lower bounds
TRAIN_HOURS_HINT = {"hopper": 1.0, "halfcheetah": 0.6, "walker2d": 1.5}


def behaviour_root() -> Path:
    """Where ``empo-data train-behaviour`` keeps its runs: ``$EMPO_HOME/behaviour`` (``~/.empo``)."""
    return empo_home() / "behaviour"


Policy = Callable[[np.ndarray], np.ndarray]


def collect_episodes(
    gym_id: str,
    policy: Policy,
    size: int,
    seed: int,
    n_envs: int = 10,
    progress: bool = True,
    desc: str = "collect",
) -> list[dict[str, np.ndarray]]:
    """Step ``n_envs`` envs in lockstep with batched actions until exactly ``size`` steps are stored.

    Returns Minari-style episodes (observations has T+1 rows). Episodes end on termination or
    the env's time limit; those still running when ``size`` is reached are cut as timeouts.
    """
    from tqdm import tqdm

    from empo.data.envs import make_env

    if size <= 0:
        raise EmpoError(f"--size must be positive, got {size}")
    n_envs = max(1, min(n_envs, size))
    seeds = np.random.default_rng(seed)
    envs = [make_env(gym_id) for _ in range(n_envs)]
    current: list[dict[str, list]] = []
    obs = []
    for env in envs:
        o, _ = env.reset(seed=int(seeds.integers(2**31)))
        obs.append(o)
        current.append({"observations": [o], "actions": [], "rewards": [], "terminations": [], "truncations": []})
    obs_batch = np.stack(obs)
    episodes: list[dict[str, np.ndarray]] = []
    total = 0
    bar = tqdm(total=size, desc=desc, unit="step", disable=not progress, mininterval=1.0)

    def close(i: int, truncated_now: bool) -> None:
        ep = current[i]
        if truncated_now:
            ep["truncations"][-1] = True
        episodes.append({key: np.asarray(value) for key, value in ep.items()})

    with torch_threads(1):  # tiny batched actor: one thread is ~80x faster than two on a busy CPU
        while total < size:
            actions = policy(obs_batch)
            for i, env in enumerate(envs):
                o, r, term, trunc, _ = env.step(actions[i])
                ep = current[i]
                ep["observations"].append(o)
                ep["actions"].append(actions[i])
                ep["rewards"].append(r)
                ep["terminations"].append(bool(term))
                ep["truncations"].append(bool(trunc and not term))
                total += 1
                if total == size:
                    break
                if term or trunc:
                    close(i, truncated_now=False)
                    o, _ = env.reset(seed=int(seeds.integers(2**31)))
                    current[i] = {"observations": [o], "actions": [], "rewards": [], "terminations": [], "truncations": []}
                obs_batch[i] = o
            bar.update(min(n_envs, size - bar.n))
    bar.close()
    for i in range(n_envs):
        if current[i]["actions"]:
            last_terminal = current[i]["terminations"][-1]
            close(i, truncated_now=not last_terminal)
    for env in envs:
        env.close()
    return episodes


def uniform_policy(act_dim: int, seed: int) -> Policy:
    rng = np.random.default_rng(seed)
    return lambda obs: rng.uniform(-1.0, 1.0, size=(obs.shape[0], act_dim)).astype(np.float32)


def behaviour_policy(task: Task, level: str, seed: int, behaviour_dir: Path | None) -> tuple[Policy, dict[str, Any]]:
    path = find_policy(task.env.name, level, behaviour_dir)
    if path is None:
        raise EmpoError(
            f"no {level} behaviour policy for {task.env.name}: none ships with this version and none was found in "
            f"{behaviour_dir or behaviour_root() / task.env.name}; train one with "
            f"`empo-data train-behaviour {task.env.name}-{level}`"
        )
    saved = load_policy(path, task.env)
    generator = torch.Generator().manual_seed(seed)
    return (lambda obs: saved.actor.act(obs, deterministic=False, generator=generator)), {**saved.meta, "path": str(path)}


REPLAY_KEYS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")


def read_replay(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a saved replay buffer, checked: every key there, one length, at least one row."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in REPLAY_KEYS if key not in archive.files]
            if missing:
                raise EmpoError(f"{path}: missing array(s) {', '.join(missing)}; a replay buffer needs {', '.join(REPLAY_KEYS)}")
            data = {key: np.asarray(archive[key]) for key in REPLAY_KEYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise EmpoError(f"{path}: not a readable replay buffer of empo-data train-behaviour ({exc})") from None
    n = data["observations"].shape[0] if data["observations"].ndim == 2 else -1
    if n <= 0:
        raise EmpoError(f"{path}: 'observations' must be a non-empty 2-D array, got shape {data['observations'].shape}")
    for key in REPLAY_KEYS[1:]:
        if data[key].shape[:1] != (n,):
            raise EmpoError(f"{path}: '{key}' has shape {data[key].shape}, expected {n} rows like 'observations'")
    return data


def replay_episodes(path: Path) -> list[dict[str, np.ndarray]]:
    """Split a saved replay buffer (``medium_replay.npz``) into Minari-style episodes."""
    data = read_replay(path)
    n = data["observations"].shape[0]
    done = (data["terminals"] > 0.5) | (data["timeouts"] > 0.5)
    done[-1] = True  # the run stopped mid-episode: cut it there
    episodes = []
    start = 0
    for end in np.flatnonzero(done) + 1:
        truncations = data["timeouts"][start:end] > 0.5
        terminations = data["terminals"][start:end] > 0.5
        if end == n and not terminations[-1]:
            truncations = truncations.copy()
            truncations[-1] = True
        episodes.append(
            {
                "observations": np.concatenate([data["observations"][start:end], data["next_observations"][end - 1 : end]]),
                "actions": data["actions"][start:end],
                "rewards": data["rewards"][start:end],
                "terminations": terminations,
                "truncations": truncations,
            }
        )
        start = end
    return episodes


def build_dataset(
    task: Task,
    size: int = DEFAULT_SIZE,
    seed: int = 0,
    behaviour_dir: Path | None = None,
    n_envs: int = 10,
    progress: bool = True,
    log: Callable[[str], Any] = print,
) -> Path:
    """Collect ``task``'s dataset and store it as Minari dataset ``task.minari_id``."""
    clean_stale_staging()
    started = time.time()
    level = task.level
    if behaviour_dir is None:
        behaviour_dir = behaviour_root() / task.env.name
    sources: list[dict[str, Any]] = []
    if level == "random":
        episodes = collect_episodes(task.gym_id, uniform_policy(task.act_dim, seed), size, seed, n_envs, progress, task.name)
        algorithm = "uniform random actions"
    elif level in ("medium", "expert"):
        policy, meta = behaviour_policy(task, level, seed, behaviour_dir)
        sources.append(meta)
        episodes = collect_episodes(task.gym_id, policy, size, seed, n_envs, progress, task.name)
        algorithm = "SAC behaviour policy (stable-baselines3), stochastic actions"
    elif level == "medium-expert":
        episodes = []
        for offset, part in enumerate(("medium", "expert")):
            policy, meta = behaviour_policy(task, part, seed + offset, behaviour_dir)
            sources.append(meta)
            episodes += collect_episodes(
                task.gym_id, policy, size, seed + offset, n_envs, progress, f"{task.name} ({part})"
            )
        algorithm = "SAC behaviour policies (stable-baselines3): medium + expert, stochastic actions"
    elif level == "medium-replay":
        replay = behaviour_dir / "medium_replay.npz"
        if not replay.is_file():
            raise EmpoError(
                f"{task.name} needs the replay buffer of a behaviour-training run ({replay} not found): run "
                f"`empo-data train-behaviour {task.env.name}-medium` first (at least "
                f"{TRAIN_HOURS_HINT[task.env.name]:.1f} h on a 2-core CPU), or pass --behaviour-dir"
            )
        episodes = replay_episodes(replay)
        algorithm = "SAC (stable-baselines3) replay buffer up to the medium policy"
        sources.append({"replay": str(replay)})
    else:  # pragma: no cover - get_task only yields known levels
        raise EmpoError(f"unknown level '{level}'")
    description = f"{task.name} built by empo-data (seed {seed}); sources: {sources}"
    path = write_minari(task.minari_id, episodes, task, algorithm, description)
    steps = sum(len(ep["actions"]) for ep in episodes)
    log(f"{task.name}: {steps} steps in {len(episodes)} episodes written to {path} ({time.time() - started:.0f} s)")
    return path

