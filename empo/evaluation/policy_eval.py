"""Evaluate a policy in the real gymnasium environment (docs/method.md, "Offline RL score").

The deterministic policy runs ``episodes`` episodes at once in a vectorised env (one sub-env per
episode, one batched forward pass per step); the score is the D4RL-normalised mean return.
Evaluation is outside the training hot loop, so observations cross to the host here.

With ``video_dir`` the first episode (sub-env 0, seeded ``seed``) is also recorded as an mp4 by
gymnasium's ``RecordVideo`` while the evaluation runs; the other episodes are not rendered, and the
figures do not change. ``check_video_support`` says in one line what is missing before any
episode runs: moviepy, or an OpenGL context for MuJoCo's offscreen renderer (``MUJOCO_GL``).

Every action is checked before it reaches the env: a NaN or inf stops the evaluation with a
:class:`NonFiniteActionError` naming the policy, the episode and the step (``check_actions``,
which empo-ope's real episodes use too), instead of a return of nan.
"""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from empo.data.envs import make_env
from empo.data.tasks import Task
from empo.errors import EmpoError


class NonFiniteActionError(EmpoError):
    """A policy gave a NaN or infinite action; the commands print it as one line, exit status 2."""

    def __init__(
        self, policy: str, episode: int, step: int, action: np.ndarray, seed: int | None = None, env: str | None = None
    ):
        self.policy, self.episode, self.step, self.seed = policy, episode, step, seed
        shown = "[" + ", ".join(f"{value:.4g}" for value in np.asarray(action, dtype=np.float64).ravel()) + "]"
        seeded = f" (seed {seed})" if seed is not None else ""
        where = f" of {env}" if env else ""
        super().__init__(
            f"policy {policy} gave a non-finite action {shown} in episode {episode}{seeded}{where} at step {step} "
            "(steps counted from 0); a policy must give finite actions"
        )


def check_actions(
    actions: np.ndarray,
    policy: str,
    step: int,
    episodes: np.ndarray | None = None,
    seeds: np.ndarray | None = None,
    env: str | None = None,
) -> None:
    """Raise :class:`NonFiniteActionError` for the first row of ``actions`` with a NaN or inf.

    Row i is episode ``episodes[i]`` (default i), seeded ``seeds[i]`` when given, at ``step``."""
    actions = np.asarray(actions)
    if actions.size == 0 or np.isfinite(actions).all():
        return
    row = int(np.flatnonzero(~np.isfinite(actions.reshape(actions.shape[0], -1)).all(axis=1))[0])
    episode = int(episodes[row]) if episodes is not None else row
    seed = int(seeds[row]) if seeds is not None else None
    raise NonFiniteActionError(policy, episode, step, actions[row], seed, env)


def policy_label(policy: Callable[..., Any], name: str | None = None) -> str:
    """What an error calls ``policy``: ``name`` when given, else its ``name`` attribute or its type."""
    if name:
        return name
    own = getattr(policy, "name", None)
    return str(own) if isinstance(own, str) and own else f"<{type(policy).__name__}>"


@dataclass
class EvalResult:
    returns: list[float]
    lengths: list[int]
    normalized_scores: list[float]
    video: Path | None = None  # the recorded first episode, when the evaluator recorded one
    # per episode: the return discounted by ``gamma``, and the return and length over the first
    # ``prefix_steps`` steps (what the loop's diagnostics set against a model rollout that long)
    discounted_returns: list[float] | None = None
    prefix_returns: list[float] | None = None
    prefix_lengths: list[int] | None = None

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
    """Holds ``episodes`` real envs of ``task`` and runs a policy in them on demand.

    ``video_dir``: record the first episode of every ``evaluate`` call there (see the module's
    docstring); call :func:`check_video_support` first for a one-line error instead of a traceback.
    """

    def __init__(
        self,
        task: Task,
        episodes: int = 10,
        device: str | torch.device = "cpu",
        max_steps: int | None = None,
        video_dir: str | Path | None = None,
    ):
        import gymnasium as gym

        if episodes < 1:
            raise EmpoError(f"evaluation needs at least one episode, got {episodes}")
        self.task = task
        self.episodes = episodes
        self.device = torch.device(device)
        self.max_steps = max_steps
        self.recorder = None  # the RecordVideo wrapper around sub-env 0, with video_dir
        self._record_next = False
        self._video_path: Path | None = None

        def make(index: int):
            if video_dir is None or index > 0:
                return make_env(task.gym_id)  # MuJoCo's warnings routed to Python's, not printed per env
            from gymnasium.wrappers import RecordVideo

            with warnings.catch_warnings():  # an existing folder is fine: files are named by task, seed and episode
                warnings.filterwarnings("ignore", message=".*Overwriting existing videos")
                self.recorder = RecordVideo(
                    make_env(task.gym_id, render_mode="rgb_array"),
                    str(video_dir),
                    episode_trigger=self._take_video_turn,
                    name_prefix=task.name,
                    disable_logger=True,
                )
            return self.recorder

        try:
            self.envs = gym.vector.SyncVectorEnv([lambda i=i: make(i) for i in range(episodes)])
        except Exception as exc:  # gymnasium/mujoco missing or broken: say which env
            raise EmpoError(f"cannot create the evaluation env {task.gym_id}: {exc}") from None

    def _take_video_turn(self, episode_id: int) -> bool:
        """RecordVideo's episode trigger: only the first reset of sub-env 0 in each ``evaluate``."""
        take, self._record_next = self._record_next, False
        if take:
            self._video_path = Path(self.recorder.video_folder) / f"{self.recorder.name_prefix}-episode-{episode_id}.mp4"
        return take

    def close(self) -> None:
        self.envs.close()

    @torch.no_grad()
    def evaluate(
        self,
        policy: Callable[[torch.Tensor], torch.Tensor],
        seed: int,
        gamma: float = 0.99,
        prefix_steps: int | None = None,
        name: str | None = None,
    ) -> EvalResult:
        """Run each sub-env for one episode (episode i seeded ``seed + i``); returns per-episode figures
        (the discounted returns with ``gamma``; the prefix figures over ``prefix_steps``, default all).

        A NaN or inf action raises :class:`NonFiniteActionError`, naming the policy as ``name``
        (default: its ``name`` attribute or its type), before it reaches the env."""
        label = policy_label(policy, name)
        episode_ids = np.arange(self.episodes)
        if self.recorder is not None:
            self.recorder.name_prefix = f"{self.task.name}-seed{seed}"
            self._record_next, self._video_path = True, None
        obs, _ = self.envs.reset(seed=[seed + i for i in range(self.episodes)])
        returns = np.zeros(self.episodes)
        discounted = np.zeros(self.episodes)
        prefix_returns = np.zeros(self.episodes)
        lengths = np.zeros(self.episodes, dtype=np.int64)
        running = np.ones(self.episodes, dtype=bool)
        steps = 0
        while running.any():
            obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
            action = policy(obs_t).cpu().numpy()
            # finished sub-envs are auto-reset and ignore their action; only running episodes count
            check_actions(
                action[running], label, steps, episode_ids[running], seed + episode_ids[running], self.task.gym_id
            )
            obs, reward, terminated, truncated, _ = self.envs.step(action)
            # sub-envs that already finished are auto-reset; their further steps do not count
            counted = np.where(running, reward, 0.0)
            returns += counted
            discounted += gamma**steps * counted
            if prefix_steps is None or steps < prefix_steps:
                prefix_returns += counted
            lengths += running
            running &= ~(terminated | truncated)
            steps += 1
            if self.max_steps is not None and steps >= self.max_steps:
                break
        video = None
        if self.recorder is not None:
            if self.recorder.recording:  # episode 0 ended last (or max_steps cut it): write it now
                self.recorder.stop_recording()
            video = self._video_path if self._video_path is not None and self._video_path.is_file() else None
        scores = [self.task.normalized_score(r) for r in returns]
        prefix_lengths = lengths if prefix_steps is None else np.minimum(lengths, prefix_steps)
        return EvalResult([float(r) for r in returns], [int(n) for n in lengths], scores, video,
                          discounted.tolist(), prefix_returns.tolist(), [int(n) for n in prefix_lengths])


def evaluate_policy(
    policy: Callable[[torch.Tensor], torch.Tensor],
    task: Task,
    episodes: int = 10,
    seed: int = 0,
    device: str | torch.device = "cpu",
    video_dir: str | Path | None = None,
    name: str | None = None,
) -> EvalResult:
    """One-off evaluation: build the envs, run ``episodes`` deterministic episodes, close.

    ``video_dir``: also record the first episode there (``EvalResult.video``); ``name``: what a
    :class:`NonFiniteActionError` calls the policy (a path, a run)."""
    evaluator = PolicyEvaluator(task, episodes, device, video_dir=video_dir)
    try:
        return evaluator.evaluate(policy, seed, name=name)
    finally:
        evaluator.close()


RENDER_FIX = (
    "set MUJOCO_GL=egl (needs libEGL: a GPU driver, or Mesa's: apt install libegl1 libgl1-mesa-dri) "
    "or MUJOCO_GL=osmesa (needs apt install libosmesa6)"
)

# Run in a child process: a failed OpenGL start leaves tracebacks from destructors behind, and
# PyOpenGL keeps the first platform it loads for the rest of the process.
_RENDER_PROBE = """
import os, sys
try:
    import gymnasium as gym
    env = gym.make(sys.argv[1], render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    env.close()
    shape = getattr(frame, "shape", ())
    result = "OK" if len(shape) == 3 and shape[-1] == 3 else f"FAIL render() gave {type(frame).__name__} {shape}"
except BaseException as exc:
    try:
        text = str(exc).strip().splitlines()[0]
    except Exception:
        text = ""
    result = "FAIL " + type(exc).__name__ + (": " + text if text else "")
print(result, flush=True)
os._exit(0 if result == "OK" else 1)
"""


def offscreen_render_problem(gym_id: str, timeout: float = 120.0) -> str | None:
    """Why MuJoCo cannot render ``gym_id`` offscreen (``render_mode="rgb_array"``) here, or None when it can.

    Tries one frame in a child process with this process's environment (``MUJOCO_GL`` included)."""
    backend = os.environ.get("MUJOCO_GL")
    if backend is not None and backend not in ("egl", "osmesa", "glfw"):
        return f"MUJOCO_GL={backend!r} is not one of egl, osmesa, glfw"
    try:
        probe = subprocess.run(
            [sys.executable, "-c", _RENDER_PROBE, gym_id], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        detail = f"rendering one frame did not finish in {timeout:.0f} s"
    else:
        lines = [line for line in probe.stdout.splitlines() if line.startswith(("OK", "FAIL"))]
        if lines and lines[-1] == "OK" and probe.returncode == 0:
            return None
        detail = lines[-1].removeprefix("FAIL ") if lines else f"the render check crashed (exit status {probe.returncode})"
        if len(detail) > 160:
            detail = detail[:157] + "..."
    if backend is None:
        return f"MUJOCO_GL is not set and no OpenGL backend (glfw, egl, osmesa) started: {detail}"
    # the likely cause, said plainly (only after the probe failed: find_library misses some installs)
    library = {"egl": "EGL", "osmesa": "OSMesa"}.get(backend)
    if library is not None and ctypes.util.find_library(library) is None:
        return f"MUJOCO_GL={backend}: the system library lib{library} was not found ({detail})"
    return f"MUJOCO_GL={backend}: {detail}"


def check_video_support(gym_id: str) -> None:
    """Raise a one-line EmpoError unless episodes of ``gym_id`` can be recorded here."""
    try:
        import moviepy  # noqa: F401  (RecordVideo writes the mp4 with it)
    except ImportError:
        raise EmpoError("recording videos needs moviepy: pip install moviepy (or pip install 'empo[video]')") from None
    problem = offscreen_render_problem(gym_id)
    if problem is not None:
        raise EmpoError(f"cannot record videos: MuJoCo cannot render offscreen here ({problem}); {RENDER_FIX}")
