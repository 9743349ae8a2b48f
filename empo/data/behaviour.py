"""Behaviour policies for building D4RL-like datasets.

Training uses stable-baselines3's SAC online, stopping on evaluation thresholds as D4RL did
(docs/method.md, "Levels"): the first policy whose *stochastic* evaluation return reaches the D4RL
medium band becomes ``medium`` (and the replay buffer up to that moment becomes
``medium-replay``); training may go on to an ``expert`` threshold. Only the actor weights are
kept (a few hundred kB), so datasets can be rebuilt by collecting alone.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from empo.config import load_json_object
from empo.data.tasks import ENVS, EnvSpec
from empo.errors import EmpoError
from empo.utils import atomic_write, atomic_write_text, torch_threads

POLICY_DIR = Path(__file__).parent / "policies"
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # stable-baselines3's SAC actor bounds


class PolicyActor(nn.Module):
    """A tanh-Gaussian MLP actor with stable-baselines3's SAC layout, for data collection."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (256, 256)):
        super().__init__()
        layers: list[nn.Module] = []
        last = obs_dim
        for width in hidden:
            layers += [nn.Linear(last, width), nn.ReLU()]
            last = width
        self.latent_pi = nn.Sequential(*layers)
        self.mu = nn.Linear(last, act_dim)
        self.log_std = nn.Linear(last, act_dim)

    @torch.no_grad()
    def act(
        self, obs: np.ndarray, deterministic: bool = False, generator: torch.Generator | None = None
    ) -> np.ndarray:
        latent = self.latent_pi(torch.as_tensor(obs, dtype=torch.float32))
        mean = self.mu(latent)
        if deterministic:
            return torch.tanh(mean).numpy()
        std = self.log_std(latent).clamp(LOG_STD_MIN, LOG_STD_MAX).exp()
        noise = torch.randn(mean.shape, generator=generator)
        return torch.tanh(mean + std * noise).numpy()


@dataclass
class SavedPolicy:
    actor: PolicyActor
    meta: dict[str, Any]


def policy_path(env_name: str, level: str, directory: Path | None = None) -> Path:
    return (directory or POLICY_DIR) / f"{env_name}-{level}.pt"


def save_policy(path: Path, actor_state: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"state_dict": {k: v.detach().cpu().clone() for k, v in actor_state.items()}, "meta": meta}
    atomic_write(path, lambda p: torch.save(blob, p))


def load_policy(path: Path, spec: EnvSpec) -> SavedPolicy:
    if not path.is_file():
        raise EmpoError(f"behaviour policy not found: {path}")
    if path.stat().st_size == 0:
        raise EmpoError(f"{path}: the file is empty, expected a behaviour policy of empo-data train-behaviour")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged file
        reason = "it holds Python objects besides tensors, or is damaged" if "Weights only" in str(exc) else _first_line(exc)
        raise EmpoError(f"{path}: cannot read the behaviour policy: damaged or of another kind ({reason})") from None
    if not isinstance(blob, dict) or not isinstance(blob.get("state_dict"), dict):
        raise EmpoError(f"{path}: not a behaviour policy of empo-data train-behaviour (expected a dict with 'state_dict')")
    actor = PolicyActor(spec.obs_dim, spec.act_dim)
    try:
        actor.load_state_dict(blob["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise EmpoError(f"{path}: not a behaviour policy for {spec.gym_id}: {_first_line(exc)}") from None
    actor.eval()
    return SavedPolicy(actor, dict(blob.get("meta", {})))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_state(out_dir: Path) -> dict[str, Any]:
    """``out_dir/state.json`` of a train-behaviour run ({} when there is none), checked to be a JSON object."""
    path = out_dir / "state.json"
    state = load_json_object(path, "the state of an empo-data train-behaviour run", missing_ok=True)
    for key, kind in (("evaluations", list), ("reached", dict)):
        if key in state and not isinstance(state[key], kind):
            raise EmpoError(f"{path}: '{key}' must be a {'list' if kind is list else 'mapping'}")
    return state


def check_behaviour_folder(out_dir: Path, env_name: str) -> None:
    """A folder to train ``env_name``'s behaviour policies in: new, or one of an earlier run on the
    same env whose state and checkpoint can be read (errors name the file)."""
    if not out_dir.is_dir():
        return
    state = read_state(out_dir)
    if state.get("env", env_name) != env_name:
        raise EmpoError(
            f"{out_dir / 'state.json'}: the folder holds a train-behaviour run on {state['env']}, not {env_name}; "
            "give another --out"
        )
    ckpt, buffer = out_dir / "checkpoint.zip", out_dir / "replay_buffer.pkl"
    if ckpt.is_file() != buffer.is_file():
        present, absent = (ckpt, buffer) if ckpt.is_file() else (buffer, ckpt)
        raise EmpoError(f"{out_dir}: {present.name} is there but {absent.name} is missing; a resumable run needs both")
    if ckpt.is_file():
        import zipfile

        try:
            with zipfile.ZipFile(ckpt) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError) as exc:
            raise EmpoError(f"{ckpt}: not a readable stable-baselines3 checkpoint ({exc})") from None
        if bad is not None:
            raise EmpoError(f"{ckpt}: damaged (member {bad} fails its checksum)")


def find_policy(env_name: str, level: str, run_dir: Path | None = None) -> Path | None:
    """A locally trained policy (in ``run_dir``) wins over the shipped one."""
    for directory in ([run_dir] if run_dir else []) + [POLICY_DIR]:
        path = policy_path(env_name, level, directory)
        if path.is_file():
            return path
    return None


def _actor_state(model: Any) -> dict[str, torch.Tensor]:
    actor = model.actor
    state = {}
    for prefix in ("latent_pi", "mu", "log_std"):
        for key, value in getattr(actor, prefix).state_dict().items():
            state[f"{prefix}.{key}"] = value
    return state


def _actor_state_copy(model: Any) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in _actor_state(model).items()}


def evaluate_actor(
    actor: PolicyActor, gym_id: str, episodes: int, seed: int, deterministic: bool = False
) -> tuple[float, float]:
    """Mean and std of the return over ``episodes`` episodes, all envs stepped in lockstep."""
    from empo.data.envs import make_env

    envs = [make_env(gym_id) for _ in range(episodes)]
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    returns = np.zeros(episodes)
    alive = np.ones(episodes, dtype=bool)
    gen = torch.Generator().manual_seed(seed)
    while alive.any():
        actions = actor.act(obs, deterministic=deterministic, generator=gen)
        for i in np.flatnonzero(alive):
            o, r, term, trunc, _ = envs[i].step(actions[i])
            obs[i] = o
            returns[i] += r
            if term or trunc:
                alive[i] = False
    for env in envs:
        env.close()
    return float(returns.mean()), float(returns.std())


Band = tuple[float, float | None]


def default_bands(spec: EnvSpec) -> dict[str, Band]:
    """Stochastic-evaluation bands (low, high): medium within 15% of D4RL medium's mean return,
    expert from 90% of D4RL expert's (no upper bound)."""
    return {"medium": (0.85 * spec.medium_return, 1.15 * spec.medium_return), "expert": (0.9 * spec.expert_return, None)}


@dataclass
class Candidate:
    """A policy snapshot evaluated for a level: its training step, return and weights."""

    step: int
    mean: float
    std: float
    state: dict[str, torch.Tensor]


def in_band(value: float, band: Band) -> bool:
    """``value`` lies in ``band`` = (low, high); ``high`` None means no upper bound."""
    low, high = band
    return value >= low and (high is None or value <= high)


def choose_in_band(candidates: list[Candidate], band: Band) -> tuple[Candidate, bool]:
    """The candidate inside ``band`` closest to its centre; if none is inside, the one closest to it.

    Returns (candidate, inside). Hopper can jump from well below to well above the medium band
    between two evaluations, hence the snapshots taken in between.
    """
    low, high = band
    centre = low if high is None else (low + high) / 2

    def distance(c: Candidate) -> float:
        return abs(c.mean - centre)

    within = [c for c in candidates if in_band(c.mean, band)]
    if within:
        return min(within, key=distance), True
    return min(candidates, key=lambda c: min(abs(c.mean - low), abs(c.mean - (high if high is not None else low)))), False


class _StopRequest:
    """Ctrl-C or SIGTERM asks the training loop to stop at its next step.

    Interrupting stable-baselines3 inside a step could leave the replay buffer and the step count
    apart; so the first signal only sets ``requested`` and the callback writes a checkpoint at a step
    boundary. A second signal interrupts at once (the last checkpoint stays).
    """

    def __init__(self) -> None:
        self.requested = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    @contextlib.contextmanager
    def on_signals(self) -> Any:
        if threading.current_thread() is not threading.main_thread():  # handlers belong to the main thread
            yield
            return
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def train_behaviour(
    env_name: str,
    out_dir: Path,
    until: str = "medium",
    seed: int = 0,
    max_steps: int = 1_000_000,
    eval_every: int = 5000,
    eval_episodes: int = 10,
    bands: dict[str, Band] | None = None,
    snapshots: int = 5,
    confirm_episodes: int = 50,
    checkpoint_every: int = 50_000,
    learning_starts: int = 10_000,
    progress: bool = True,
    log: Any = print,
    threads: Any = None,
    suite_every: int = 0,
) -> dict[str, Any]:
    """Train SAC on ``env_name`` until the ``until`` level ("medium" or "expert") is reached.

    A level is reached when a stochastic evaluation gets into its band (:func:`default_bands`).
    ``snapshots`` actor snapshots are kept between evaluations; when an evaluation lands above
    the band, they are evaluated too and the one inside the band is taken. A policy inside the band
    is accepted only if a second evaluation over ``confirm_episodes`` episodes is inside it too:
    10 episodes of a policy that falls now and then are too noisy (walker2d passed at 2862 +- 936
    over 10 episodes and its 1M-step dataset averaged 2164).
    Writes into ``out_dir``: ``<env>-medium.pt`` (and ``<env>-expert.pt``), ``medium_replay.npz``
    (the replay buffer when medium was reached), ``state.json`` and a resumable checkpoint. With
    ``suite_every`` (a multiple of ``eval_every``) the actor is also kept every that many steps in
    ``suite/`` with its evaluation: policies of graded quality for off-policy evaluation.
    A checkpoint is written every ``checkpoint_every`` steps and, on Ctrl-C or SIGTERM, at the next
    step before :class:`KeyboardInterrupt` is raised: the same call resumes from it.
    """
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    from empo.data.envs import make_env

    if env_name not in ENVS:
        raise EmpoError(f"unknown env '{env_name}'; valid: {', '.join(ENVS)}")
    if suite_every < 0 or (suite_every and suite_every % eval_every):
        raise EmpoError(f"--suite-every must be a multiple of --eval-every ({eval_every}), got {suite_every}")
    if until not in ("medium", "expert"):
        raise EmpoError(f"--until must be 'medium' or 'expert', got '{until}'")
    if checkpoint_every < 1:
        raise EmpoError(f"--checkpoint-every must be a positive number of steps, got {checkpoint_every}")
    spec = ENVS[env_name]
    bands = {**default_bands(spec), **(bands or {})}
    check_behaviour_folder(out_dir, env_name)
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path = out_dir / "state.json"
    state: dict[str, Any] = read_state(out_dir)
    state.setdefault("env", env_name)
    state.setdefault("seed", seed)
    state.setdefault("bands", {level: list(band) for level, band in bands.items()})
    state.setdefault("evaluations", [])
    state.setdefault("reached", {})
    state.setdefault("wall_seconds", 0.0)
    levels = ["medium"] + (["expert"] if until == "expert" else [])
    if all(level in state["reached"] for level in levels):
        log(f"{env_name}: already reached {', '.join(levels)} in {out_dir}")
        return state

    ckpt = out_dir / "checkpoint.zip"
    buffer_ckpt = out_dir / "replay_buffer.pkl"
    env = make_env(spec.gym_id)
    if ckpt.is_file() and buffer_ckpt.is_file():
        try:
            model = SAC.load(ckpt, env=env, device="cpu")
            model.load_replay_buffer(buffer_ckpt)
        except Exception as exc:  # stable-baselines3 raises many types for a damaged or foreign file
            raise EmpoError(f"{ckpt}: cannot resume from it ({_first_line(exc)}); remove it and {buffer_ckpt.name} to start again") from None
        # evaluations after the checkpoint are run again
        state["evaluations"] = [e for e in state["evaluations"] if e["step"] <= model.num_timesteps]
        log(f"{env_name}: resuming from step {model.num_timesteps}")
    else:
        model = SAC("MlpPolicy", env, seed=seed, device="cpu", verbose=0, learning_starts=learning_starts,
                    buffer_size=min(1_000_000, max_steps))
    started = time.time()
    wall_before = float(state["wall_seconds"])
    stop = _StopRequest()

    def save_state() -> None:
        state["wall_seconds"] = wall_before + time.time() - started
        atomic_write_text(state_path, json.dumps(state, indent=2))

    def save_checkpoint() -> None:
        # each file through a temporary one: a run killed while saving keeps its last checkpoint whole
        atomic_write(buffer_ckpt, model.save_replay_buffer)
        atomic_write(ckpt, model.save)
        save_state()

    def save_replay(path: Path, drop_last: int) -> None:
        """The replay buffer without its newest ``drop_last`` rows (those after the chosen snapshot)."""
        buf = model.replay_buffer
        n = (buf.buffer_size if buf.full else buf.pos) - drop_last
        dones = buf.dones[:n, 0].astype(bool)
        timeouts = buf.timeouts[:n, 0].astype(bool)
        np.savez_compressed(
            path,
            observations=buf.observations[:n, 0].astype(np.float32),
            actions=buf.actions[:n, 0].astype(np.float32),
            rewards=buf.rewards[:n, 0].astype(np.float32),
            next_observations=buf.next_observations[:n, 0].astype(np.float32),
            terminals=(dones & ~timeouts).astype(np.float32),
            timeouts=timeouts.astype(np.float32),
        )

    class Thresholds(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.snapshots: list[tuple[int, dict[str, torch.Tensor]]] = []
            self.bar = None
            if progress:
                from tqdm import tqdm

                self.bar = tqdm(total=max_steps, initial=model.num_timesteps, desc=f"{env_name} SAC", unit="step")

        def _on_step(self) -> bool:
            if self.bar is not None:
                self.bar.update(1)
            steps = self.num_timesteps
            snapshot_every = max(1, eval_every // max(1, snapshots))
            if snapshots and steps % snapshot_every == 0 and steps % eval_every:
                self.snapshots.append((steps, _actor_state_copy(model)))
                del self.snapshots[:-snapshots]
            if stop.requested:
                save_checkpoint()
                log(f"\n{env_name}: stopped at step {steps}; checkpoint written to {out_dir}; "
                    "the same command resumes from it")
                return False
            if steps % checkpoint_every == 0:
                save_checkpoint()
            if steps % eval_every or steps < model.learning_starts:
                return True
            if threads is not None:  # an empo.threads.ThreadCounter: re-count the free cores
                threads.update()
            actor = PolicyActor(spec.obs_dim, spec.act_dim)
            actor.load_state_dict(_actor_state(model))
            mean, std = evaluate_actor(actor, spec.gym_id, eval_episodes, seed=10_000 + steps)
            state["evaluations"].append({"step": steps, "stochastic_return": mean, "std": std})
            if self.bar is not None:
                self.bar.set_postfix(eval=f"{mean:.0f}")
            if suite_every and steps % suite_every == 0:
                save_policy(
                    out_dir / "suite" / f"{env_name}-step{steps:07d}.pt",
                    _actor_state(model),
                    {"env": env_name, "gym_id": spec.gym_id, "level": "suite", "train_steps": steps,
                     "stochastic_return": mean, "stochastic_return_std": std, "seed": state["seed"]},
                )
            if mean > state.get("best_return", -np.inf):
                # kept so that a run cut short still leaves its best policy behind
                state["best_return"] = mean
                state["best_step"] = steps
                save_policy(
                    out_dir / f"{env_name}-best.pt",
                    _actor_state(model),
                    {"env": env_name, "gym_id": spec.gym_id, "level": "best", "train_steps": steps,
                     "stochastic_return": mean, "stochastic_return_std": std, "seed": state["seed"]},
                )
            current = Candidate(steps, mean, std, _actor_state_copy(model))
            for level in levels:
                low, high = bands[level]
                if level in state["reached"] or mean < low:
                    continue
                candidates = [current]
                if high is not None and mean > high:
                    for snap_step, snap_state in self.snapshots:
                        actor.load_state_dict(snap_state)
                        snap_mean, snap_std = evaluate_actor(actor, spec.gym_id, eval_episodes, seed=10_000 + snap_step)
                        state["evaluations"].append({"step": snap_step, "stochastic_return": snap_mean, "std": snap_std})
                        candidates.append(Candidate(snap_step, snap_mean, snap_std, snap_state))
                chosen, inside = choose_in_band(candidates, (low, high))
                confirmed_mean = confirmed_std = None
                if inside and confirm_episodes > eval_episodes:
                    actor.load_state_dict(chosen.state)
                    confirmed_mean, confirmed_std = evaluate_actor(
                        actor, spec.gym_id, confirm_episodes, seed=20_000 + chosen.step
                    )
                    state["evaluations"].append({"step": chosen.step, "stochastic_return": confirmed_mean,
                                                 "std": confirmed_std, "episodes": confirm_episodes})
                    if not in_band(confirmed_mean, (low, high)):
                        log(f"\n{env_name}: step {chosen.step} scored {chosen.mean:.0f} over {eval_episodes} episodes "
                            f"but {confirmed_mean:.0f} over {confirm_episodes}: not {level} yet, training on")
                        continue
                meta = {
                    "env": env_name,
                    "gym_id": spec.gym_id,
                    "level": level,
                    "train_steps": chosen.step,
                    "stochastic_return": chosen.mean,
                    "stochastic_return_std": chosen.std,
                    "band": [low, high],
                    "in_band": inside,
                    "confirmed_return": confirmed_mean,
                    "confirmed_return_std": confirmed_std,
                    "confirm_episodes": confirm_episodes if confirmed_mean is not None else None,
                    "seed": state["seed"],
                    "wall_seconds": wall_before + time.time() - started,
                }
                save_policy(policy_path(env_name, level, out_dir), chosen.state, meta)
                if level == "medium":
                    save_replay(out_dir / "medium_replay.npz", drop_last=steps - chosen.step)
                state["reached"][level] = meta
                note = "" if inside else f" (no snapshot inside the band {low:.0f}..{high}; closest taken)"
                log(f"\n{env_name}: {level} reached at step {chosen.step}: stochastic return "
                    f"{chosen.mean:.1f} +- {chosen.std:.1f}{note}")
            state["evaluations"].sort(key=lambda e: e["step"])
            self.snapshots = []
            save_state()
            return not all(level in state["reached"] for level in levels)

    callback = Thresholds()
    try:
        # one thread unless a ThreadCounter re-counts the free cores at every evaluation (empo/threads.py)
        with torch_threads(threads.update() if threads is not None else 1), stop.on_signals():
            model.learn(total_timesteps=max_steps - model.num_timesteps, callback=callback, reset_num_timesteps=False)
    finally:
        if callback.bar is not None:
            callback.bar.close()
        save_state()
    if stop.requested and not all(level in state["reached"] for level in levels):
        raise KeyboardInterrupt
    if not all(level in state["reached"] for level in levels):
        missing = [level for level in levels if level not in state["reached"]]
        log(f"{env_name}: stopped at {max_steps} steps without reaching {', '.join(missing)}")
    return state
