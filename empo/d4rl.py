"""D4RL's dataset calls over this project's datasets, so that a script written for ``d4rl`` changes one import.

``d4rl`` itself no longer installs beside gymnasium 1.x and Python 3.12. This module answers its
three dataset calls from a local build (``empo-data build``), a real D4RL hdf5 file or a local
Minari dataset, never downloading and never building::

    import empo.d4rl as d4rl                      # was: import gym, d4rl; env = gym.make("hopper-medium-v2")

    dataset = d4rl.qlearning_dataset("hopper-medium-v2")   # observations, actions, next_observations, rewards, terminals
    raw = d4rl.get_dataset("hopper-medium")                # observations, actions, rewards, terminals, timeouts
    score = 100 * d4rl.get_normalized_score("hopper-medium-v2", episode_return)

Where D4RL took an env, these take a ``task``: a task of this project (``hopper-medium``), a
D4RL name (``hopper-medium-v2``), a D4RL hdf5 file (named as D4RL names them, or with ``h5path=``)
or a Minari dataset id (``namespace/name-v0``). The semantics, and the two places where they
differ from D4RL's on datasets D4RL never read, are in docs/data.md ("Scripts written for D4RL").
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from empo.data.tasks import ENVS, Task, get_task
from empo.errors import EmpoError

if TYPE_CHECKING:
    from empo.data.transitions import Transitions

__all__ = ["get_dataset", "get_normalized_score", "qlearning_dataset", "reverse_normalized_score"]

#: the episode length D4RL's ``qlearning_dataset`` assumes for datasets without ``timeouts``
#: (``env._max_episode_steps``: 1000 for every locomotion env here)
MAX_EPISODE_STEPS = 1000

EXPECTED = (
    "expected a task such as hopper-medium, a D4RL name such as hopper-medium-v2, "
    "a D4RL hdf5 file (hopper_medium-v2.hdf5) or a local Minari dataset id (namespace/name-v0)"
)


@dataclass(frozen=True)
class _Source:
    """Where a ``task`` argument points: a task (its default dataset), a D4RL file or a Minari id."""

    kind: str  # "task", "file" or "minari"
    task: Task | None  # None only for a Minari id
    path: Path | None = None
    minari_id: str | None = None


def _task_from_d4rl_name(name: str) -> Task:
    """``hopper-medium-v2`` or ``hopper_medium_replay-v2`` (a file's stem) -> the task."""
    match = re.fullmatch(r"(.+)-v(\d+)", name)
    base = (match.group(1) if match else name).replace("_", "-")
    if match and match.group(2) != "2":
        # v0/v1 files differ from v2 (older envs, no timeouts); the local builds follow v2
        raise EmpoError(
            f"'{name}': only D4RL's -v2 datasets are supported (v2's conventions are the ones this project follows)"
        )
    return get_task(base)


def _resolve(task: str | os.PathLike[str], h5path: str | os.PathLike[str] | None = None) -> _Source:
    """Say where ``task`` points, without reading any data."""
    if not isinstance(task, str | os.PathLike):
        raise EmpoError(f"task {task!r} ({type(task).__name__}): {EXPECTED}")
    text = os.fspath(task)
    if h5path is not None:
        return _Source("file", _named_task(text), path=Path(h5path).expanduser())
    path = Path(text).expanduser()
    if isinstance(task, os.PathLike) or path.suffix.lower() in (".hdf5", ".h5") or path.is_file():
        try:
            found = _task_from_d4rl_name(path.stem)
        except EmpoError:
            raise EmpoError(
                f"{path}: the task cannot be told from the file name; name the file as D4RL does "
                f"(hopper_medium-v2.hdf5) or give the task: get_dataset('hopper-medium', h5path='{path}')"
            ) from None
        return _Source("file", found, path=path)
    if "/" in text:
        return _Source("minari", _minari_task(text), minari_id=text)
    return _Source("task", _named_task(text))


def _named_task(text: str) -> Task:
    try:
        return _task_from_d4rl_name(text)
    except EmpoError as exc:
        raise EmpoError(f"{exc}; {EXPECTED}") from None


def _minari_task(dataset_id: str) -> Task | None:
    """The task of one of this project's own builds (``empo/hopper/medium-v0``), else None."""
    parts = dataset_id.split("/")
    if len(parts) == 3 and parts[0] == "empo":
        try:
            return get_task(f"{parts[1]}-{parts[2].rsplit('-v', 1)[0]}")
        except EmpoError:
            return None
    return None


def _load(source: _Source) -> Transitions:
    from empo.data import load_transitions
    from empo.data.d4rl import load_d4rl
    from empo.data.minari_io import is_built, load_minari

    if source.kind == "file":
        return load_d4rl(source.path, source.task)
    if source.kind == "minari":
        try:
            return load_minari(source.minari_id, source.task)
        except EmpoError as exc:
            ours = source.task is not None and not is_built(source.minari_id)
            hint = f"; build it with `empo-data build {source.task.name}`" if ours else ""
            raise EmpoError(f"{exc}{hint}") from None
    # a task name: a D4RL file in $D4RL_DATASET_DIR, else the local build, else an error naming
    # `empo-data build TASK` (no build on demand: that takes minutes and should be asked for)
    return load_transitions(source.task.name)


def _d4rl_file_of(transitions: Transitions) -> Path | None:
    """The D4RL file a dataset was read from, else None."""
    source = transitions.source
    return Path(source.removeprefix("d4rl:")) if source.startswith("d4rl:") else None


def _file_arrays(path: Path, rows: int, only: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The arrays of a D4RL file besides observations, actions and rewards (those in ``only``, else
    all), as stored: timeouts and terminals as the file has them, not as the loader completed them."""
    import h5py

    found: dict[str, Any] = {}

    def visit(name: str, item: Any) -> None:
        wanted = name not in ("observations", "actions", "rewards") and (only is None or name in only)
        if isinstance(item, h5py.Dataset) and wanted:
            found[name] = item[()]

    with h5py.File(path, "r") as handle:
        handle.visititems(visit)
    for key in ("terminals", "timeouts"):  # [N, 1] -> [N], as D4RL squeezes them
        found[key] = np.asarray(found[key]).reshape(rows).astype(bool)
    return found


def get_dataset(task: str | os.PathLike[str], h5path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """D4RL's ``env.get_dataset()``: every step of the dataset, in order, with D4RL's raw keys.

    ``observations`` [N, obs_dim], ``actions`` [N, act_dim] and ``rewards`` [N] as float32;
    ``terminals`` [N] bool (the env's own termination ended the episode after this step);
    ``timeouts`` [N] bool (the episode was cut after this step: the time limit, or the end of
    the data). No ``next_observations``: as in D4RL, step i's successor is row i + 1 within an
    episode. A D4RL file's other arrays (``next_observations``, ``infos/*``, ``metadata/*``)
    come as the file stores them, as D4RL's own returns them; local builds and Minari datasets
    have none, and none are made up.
    """
    source = _resolve(task, h5path)
    transitions = _load(source)
    data: dict[str, Any] = {
        "observations": transitions.observations,
        "actions": transitions.actions,
        "rewards": transitions.rewards,
        "terminals": transitions.terminals > 0.5,
        "timeouts": transitions.timeouts > 0.5,
    }
    path = _d4rl_file_of(transitions)
    if path is not None:
        data.update(_file_arrays(path, len(transitions)))
    return data


def _check_dataset(dataset: Any) -> dict[str, np.ndarray]:
    """A dataset dict given to :func:`qlearning_dataset`: the keys it needs, rows in step."""
    if not isinstance(dataset, dict):
        raise EmpoError(f"dataset: expected a dict of arrays as get_dataset returns, got {type(dataset).__name__}")
    missing = [key for key in ("observations", "actions", "rewards", "terminals") if key not in dataset]
    if missing:
        raise EmpoError(
            f"dataset: missing key(s) {', '.join(missing)}; expected D4RL's observations, actions, rewards, terminals (and timeouts)"
        )
    arrays = {
        key: np.asarray(dataset[key])
        for key in ("observations", "actions", "rewards", "terminals", "timeouts")
        if key in dataset
    }
    rows = arrays["rewards"].shape[0] if arrays["rewards"].ndim else 0
    for key, array in arrays.items():
        if array.ndim == 0 or array.shape[0] != rows:
            raise EmpoError(f"dataset: '{key}' has {array.shape[0] if array.ndim else 0} rows but 'rewards' has {rows}")
    return arrays


def _final_steps_without_timeouts(terminals: np.ndarray) -> np.ndarray:
    """D4RL's rule for old datasets without ``timeouts``: the step that is the episode's 1000th."""
    final = np.zeros(terminals.shape[0], dtype=bool)
    step = 0
    for i, done in enumerate(terminals.tolist()):
        final[i] = step == MAX_EPISODE_STEPS - 1
        step = 0 if (done or final[i]) else step + 1
    return final


def _qlearning_rows(arrays: dict[str, np.ndarray], terminate_on_end: bool) -> dict[str, np.ndarray]:
    """D4RL's rule on rows alone: step i's successor is row i + 1, so the last row has none and
    is dropped, and a step cut by time is dropped too unless ``terminate_on_end``."""
    n = arrays["rewards"].shape[0]
    terminals = arrays["terminals"].reshape(n).astype(bool)
    final = (
        arrays["timeouts"].reshape(n).astype(bool) if "timeouts" in arrays else _final_steps_without_timeouts(terminals)
    )
    keep = np.ones(n, dtype=bool) if terminate_on_end else ~final
    keep[n - 1 :] = False
    index = np.flatnonzero(keep)
    observations = arrays["observations"].astype(np.float32, copy=False)
    return {
        "observations": observations[index],
        "actions": arrays["actions"].astype(np.float32, copy=False)[index],
        "next_observations": observations[index + 1],
        "rewards": arrays["rewards"].reshape(n).astype(np.float32, copy=False)[index],
        "terminals": terminals[index],
    }


def qlearning_dataset(
    task: str | os.PathLike[str] | None = None,
    dataset: dict[str, Any] | None = None,
    terminate_on_end: bool = False,
    h5path: str | os.PathLike[str] | None = None,
) -> dict[str, np.ndarray]:
    """D4RL's ``d4rl.qlearning_dataset(env)``: one row per (s, a, r, s', done) transition.

    ``observations``, ``actions``, ``next_observations`` and ``rewards`` as float32; ``terminals``
    as bool (the env's termination, not the time limit). A step cut by time is dropped (its
    successor is not a state the env went on to), unless ``terminate_on_end``; then it is kept
    with ``terminals`` False, as D4RL's code keeps it (its docstring promises True; its code
    never sets it). Terminal steps are always kept.

    For a real D4RL file, and for a ``dataset`` dict given as D4RL allowed, the result is the one
    D4RL's own function gives: successors are the following rows, so the last row is dropped.
    Local builds and Minari datasets store each step's true successor, which is used instead: the
    same rows, and the same successors within an episode; where D4RL's rule takes the next
    episode's first state, a terminal step has the state it ended in, a time-limit step kept by
    ``terminate_on_end`` the state after it, and a terminal last row is kept."""
    if dataset is not None:
        if task is not None:
            _resolve(task, h5path)  # a misspelt task is still an error, though the data are given
        return _qlearning_rows(_check_dataset(dataset), terminate_on_end)
    if task is None:
        raise EmpoError(f"qlearning_dataset needs a task or a dataset: {EXPECTED}")
    transitions = _load(_resolve(task, h5path))
    path = _d4rl_file_of(transitions)
    if path is not None:
        flags = _file_arrays(path, len(transitions), only=("terminals", "timeouts"))
        rows = {
            "observations": transitions.observations,
            "actions": transitions.actions,
            "rewards": transitions.rewards,
        }
        return _qlearning_rows({**rows, **flags}, terminate_on_end)
    kept = transitions if terminate_on_end else transitions.qlearning()  # the loaders' own timeout rule
    return {
        "observations": kept.observations,
        "actions": kept.actions,
        "next_observations": kept.next_observations,
        "rewards": kept.rewards,
        "terminals": kept.terminals > 0.5,
    }


def _reference_scores(task: str | os.PathLike[str]) -> tuple[float, float]:
    """(random return, expert return) that D4RL normalises with, for ``task``."""
    source = _resolve(task)
    if source.task is not None:
        return source.task.env.ref_min_score, source.task.env.ref_max_score
    # a Minari id from elsewhere: the reference scores in its metadata, else its env's
    from empo.data.minari_io import dataset_path, is_built

    if not is_built(source.minari_id):
        raise EmpoError(
            f"Minari dataset '{source.minari_id}' is not on disk (looked in {dataset_path(source.minari_id)})"
        )
    meta_path = dataset_path(source.minari_id) / "data" / "metadata.json"
    try:
        meta = json.loads(meta_path.read_text())
        env_id = json.loads(meta["env_spec"]).get("id") if meta.get("env_spec") else None
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise EmpoError(f"{meta_path}: cannot be read ({exc})") from None
    if meta.get("ref_min_score") is not None and meta.get("ref_max_score") is not None:
        return float(meta["ref_min_score"]), float(meta["ref_max_score"])
    for spec in ENVS.values():
        if env_id is not None and env_id.split("-v")[0] == spec.gym_id.split("-v")[0]:
            return spec.ref_min_score, spec.ref_max_score
    raise EmpoError(
        f"Minari dataset '{source.minari_id}' ({env_id}): no reference scores in its metadata, and its env is not one of this project's"
    )


def get_normalized_score(task: str | os.PathLike[str], score: Any) -> Any:
    """D4RL's ``d4rl.get_normalized_score(env_name, score)``: (score - random) / (expert - random).

    A fraction, as D4RL's: 0 is the random policy's return, 1 the expert's; scripts multiply by
    100. ``score`` may be a number (a float comes back) or an array (an array comes back).
    """
    ref_min, ref_max = _reference_scores(task)
    value = (np.asarray(score, dtype=np.float64) - ref_min) / (ref_max - ref_min)
    return float(value) if value.ndim == 0 else value


def reverse_normalized_score(task: str | os.PathLike[str], score: Any) -> Any:
    """D4RL's ``d4rl.reverse_normalized_score``: the return whose normalised score is ``score``."""
    ref_min, ref_max = _reference_scores(task)
    value = np.asarray(score, dtype=np.float64) * (ref_max - ref_min) + ref_min
    return float(value) if value.ndim == 0 else value
