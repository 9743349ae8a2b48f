"""Reading real D4RL hdf5 files (h5py) with D4RL's qlearning semantics (docs/method.md, "D4RL files").

The ``d4rl`` package itself is not a dependency: it no longer installs beside gymnasium 1.x.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from empo.data.tasks import Task
from empo.data.transitions import Transitions
from empo.errors import EmpoError

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")


def d4rl_dataset_dir() -> Path:
    """``$D4RL_DATASET_DIR`` or D4RL's default ``~/.d4rl/datasets``."""
    return Path(os.environ.get("D4RL_DATASET_DIR", Path.home() / ".d4rl" / "datasets")).expanduser()


def find_d4rl_file(task: Task) -> Path | None:
    path = d4rl_dataset_dir() / task.d4rl_filename
    return path if path.is_file() else None


def _read_array(handle, key: str, path: Path) -> np.ndarray:
    """One numeric hdf5 dataset as an array; an error naming the file and key otherwise."""
    import h5py

    item = handle[key]
    if not isinstance(item, h5py.Dataset):
        raise EmpoError(f"{path}: '{key}' is an hdf5 {type(item).__name__.lower()}, expected a dataset (an array)")
    try:
        array = np.asarray(item[()])
    except OSError as exc:  # a truncated or damaged file fails when its data are read
        raise EmpoError(f"{path}: '{key}' cannot be read ({exc})") from None
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise EmpoError(f"{path}: '{key}' holds {array.dtype} values, expected numbers")
    return array


def load_d4rl(path: str | Path, task: Task) -> Transitions:
    """Read a D4RL hdf5 file into :class:`Transitions`, checked against ``task``.

    With ``next_observations`` in the file they are used as they are. Without, the successor of
    step i is ``observations[i+1]``, and the last step (which has none) is marked as a timeout so
    that :meth:`Transitions.qlearning` drops it, as D4RL's own ``qlearning_dataset`` does.
    """
    import h5py

    path = Path(path).expanduser()
    if path.is_dir():
        raise EmpoError(f"{path}: a folder, expected a D4RL hdf5 file")
    if not path.is_file():
        raise EmpoError(f"D4RL file not found: {path}")
    if path.stat().st_size == 0:
        raise EmpoError(f"{path}: the file is empty, expected a D4RL hdf5 file")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise EmpoError(f"{path}: not a readable hdf5 file ({exc})") from None
    with handle:
        missing = [key for key in REQUIRED_KEYS if key not in handle]
        if missing:
            raise EmpoError(
                f"{path}: missing hdf5 key(s) {', '.join(missing)}; a D4RL file needs {', '.join(REQUIRED_KEYS)}"
            )
        keys = REQUIRED_KEYS + (("next_observations",) if "next_observations" in handle else ())
        arrays = {key: _read_array(handle, key, path) for key in keys}
        next_obs = arrays.pop("next_observations", None)

    n = arrays["observations"].shape[0] if arrays["observations"].ndim else 0
    for key in REQUIRED_KEYS[1:]:
        if arrays[key].shape[:1] != (n,):
            raise EmpoError(
                f"{path}: '{key}' has {arrays[key].shape[0] if arrays[key].ndim else 0} rows but 'observations' has {n}; "
                "all arrays must have the same length"
            )
    if n == 0:
        raise EmpoError(f"{path}: 'observations' is empty")
    rewards = arrays["rewards"].reshape(n)
    terminals = arrays["terminals"].reshape(n).astype(bool)
    timeouts = arrays["timeouts"].reshape(n).astype(bool)
    observations = arrays["observations"]
    if next_obs is None:
        next_obs = np.concatenate([observations[1:], observations[-1:]], axis=0)
        if not terminals[-1]:
            timeouts = timeouts.copy()
            timeouts[-1] = True  # no successor stored for the last step
    elif next_obs.shape[:1] != (n,):
        raise EmpoError(
            f"{path}: 'next_observations' has {next_obs.shape[0]} rows but 'observations' has {n}; "
            "all arrays must have the same length"
        )
    ends = np.flatnonzero(terminals | timeouts)
    starts = np.concatenate([[0], ends[ends < n - 1] + 1])
    transitions = Transitions(
        observations=observations,
        actions=arrays["actions"],
        rewards=rewards,
        next_observations=next_obs,
        terminals=terminals,
        timeouts=timeouts,
        episode_starts=starts,
        metadata={
            "source": f"d4rl:{path}",
            "task": task.name,
            "env_id": task.gym_id,
            "ref_min_score": task.env.ref_min_score,
            "ref_max_score": task.env.ref_max_score,
        },
    )
    return transitions.validate(task, origin=str(path))
