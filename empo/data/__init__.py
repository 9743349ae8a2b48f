"""Datasets: the task registry, ``Transitions``, and the sources that yield them.

Sources, in the order :func:`load_transitions` tries them when none is named:
a real D4RL file (``$D4RL_DATASET_DIR`` or ``~/.d4rl/datasets``, D4RL's file names), then the
dataset ``empo-data build`` stored for the task in the Minari root.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from empo.data.tasks import LEVELS, Task, get_task, normalized_score, task_names
from empo.data.transitions import Transitions
from empo.errors import EmpoError

__all__ = [
    "LEVELS",
    "Task",
    "Transitions",
    "ensure_dataset",
    "get_task",
    "load_transitions",
    "normalized_score",
    "task_names",
]


def load_transitions(
    task_name: str, d4rl_path: str | Path | None = None, minari_id: str | None = None
) -> Transitions:
    """Load ``task_name``'s dataset; a named D4RL file or Minari id wins over the defaults."""
    from empo.data.d4rl import find_d4rl_file, load_d4rl
    from empo.data.minari_io import is_built, load_minari

    task = get_task(task_name)
    if d4rl_path is not None and minari_id is not None:
        raise EmpoError("give either --d4rl-path or --minari-id, not both")
    if d4rl_path is not None:
        return load_d4rl(d4rl_path, task)
    if minari_id is not None:
        return load_minari(minari_id, task)
    found = find_d4rl_file(task)
    if found is not None:
        return load_d4rl(found, task)
    if is_built(task.minari_id):
        return load_minari(task.minari_id, task)
    raise EmpoError(
        f"no dataset for {task.name}: not built (run `empo-data build {task.name}`), no D4RL file "
        f"{task.d4rl_filename} in $D4RL_DATASET_DIR or ~/.d4rl/datasets, and no --d4rl-path/--minari-id given"
    )


def ensure_dataset(task_name: str, log: Callable[[str], Any] = print, **build_kwargs: Any) -> Transitions:
    """Load ``task_name``'s dataset, building it first (and saying so) when none is on disk."""
    from empo.data.build import build_dataset
    from empo.data.d4rl import find_d4rl_file
    from empo.data.minari_io import dataset_path, is_built
    from empo.utils import exclusive_lock

    task = get_task(task_name)
    if find_d4rl_file(task) is None and not is_built(task.minari_id):
        # a sweep's workers on one unbuilt task: one builds, the others wait and load its dataset
        with exclusive_lock(dataset_path(task.minari_id), lambda: log(f"{task.name}: waiting for another process that is building it")):
            if not is_built(task.minari_id):
                log(f"{task.name}: no dataset on disk, building it now (empo-data build {task.name})")
                build_dataset(task, log=log, **build_kwargs)
    return load_transitions(task_name)
