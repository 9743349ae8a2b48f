"""Minari storage: reading any local dataset, and writing built ones so that a half-written
dataset never reads as complete (written in a staging root, then moved into place by rename)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from empo.data.tasks import Task
from empo.data.transitions import Transitions, from_episodes
from empo.errors import EmpoError


def minari_root() -> Path:
    """``$MINARI_DATASETS_PATH`` or Minari's default ``~/.minari/datasets``."""
    return Path(os.environ.get("MINARI_DATASETS_PATH", Path.home() / ".minari" / "datasets")).expanduser()


def dataset_path(dataset_id: str) -> Path:
    return minari_root() / dataset_id


def is_built(dataset_id: str) -> bool:
    return (dataset_path(dataset_id) / "data" / "metadata.json").is_file()


def load_minari(dataset_id: str, task: Task | None = None) -> Transitions:
    """Read a local Minari dataset (never downloads) into :class:`Transitions`."""
    import minari

    if not is_built(dataset_id):
        raise EmpoError(
            f"Minari dataset '{dataset_id}' is not on disk (looked in {dataset_path(dataset_id)}; "
            "set $MINARI_DATASETS_PATH to use another root)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = minari.load_dataset(dataset_id)
    except Exception as exc:  # minari raises several types for a broken dataset
        raise EmpoError(f"Minari dataset '{dataset_id}' could not be read: {exc}") from None
    try:
        meta, episodes = _read_episodes(dataset, dataset_id)
        env_id = json.loads(meta["env_spec"]).get("id") if meta.get("env_spec") else None
    except EmpoError:
        raise
    except Exception as exc:  # h5py, json and Minari raise many types for damaged data files
        raise EmpoError(f"Minari dataset '{dataset_id}' ({dataset_path(dataset_id)}) could not be read: {exc}") from None
    metadata: dict[str, Any] = {
        "source": f"minari:{dataset_id}",
        "env_id": env_id,
        "ref_min_score": meta.get("ref_min_score"),
        "ref_max_score": meta.get("ref_max_score"),
        "algorithm_name": meta.get("algorithm_name"),
        "description": meta.get("description"),
    }
    if task is not None:
        metadata["task"] = task.name
        if env_id is not None and env_id.split("-v")[0] != task.gym_id.split("-v")[0]:
            raise EmpoError(f"Minari dataset '{dataset_id}' was collected in {env_id}, but task {task.name} uses {task.gym_id}")
    try:
        transitions = from_episodes(episodes, metadata)
    except EmpoError as exc:
        raise EmpoError(f"Minari dataset '{dataset_id}': {exc}") from None
    return transitions.validate(task, origin=f"Minari dataset '{dataset_id}'")


def _read_episodes(dataset: Any, dataset_id: str) -> tuple[dict[str, Any], list[dict[str, np.ndarray]]]:
    meta = dataset.storage.metadata
    episodes = []
    for episode in dataset.iterate_episodes():
        if not isinstance(episode.observations, np.ndarray) or not isinstance(episode.actions, np.ndarray):
            raise EmpoError(
                f"Minari dataset '{dataset_id}': observations and actions must be flat Box arrays "
                f"(got {type(episode.observations).__name__})"
            )
        episodes.append(
            {
                "observations": episode.observations,
                "actions": episode.actions,
                "rewards": episode.rewards,
                "terminations": episode.terminations,
                "truncations": episode.truncations,
            }
        )
    return meta, episodes


@contextmanager
def _minari_root_at(root: Path) -> Iterator[None]:
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield
    finally:
        if previous is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous


def write_minari(
    dataset_id: str,
    episodes: list[dict[str, np.ndarray]],
    task: Task,
    algorithm_name: str,
    description: str,
) -> Path:
    """Write ``episodes`` (Minari layout: observations has T+1 rows) as dataset ``dataset_id``.

    The dataset is created under a staging root beside the real one and renamed into place
    only when complete; an existing dataset with that id is replaced.
    """
    import minari
    from minari.data_collector import EpisodeBuffer

    from empo.data.envs import route_mujoco_warnings

    route_mujoco_warnings()  # Minari builds the env to record its spec
    root = minari_root()
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".empo-staging-{os.getpid()}-", dir=root.parent))
    try:
        buffers = [
            EpisodeBuffer(
                id=i,
                observations=np.asarray(ep["observations"], dtype=np.float64),
                actions=np.asarray(ep["actions"], dtype=np.float32),
                rewards=np.asarray(ep["rewards"], dtype=np.float64),
                terminations=np.asarray(ep["terminations"], dtype=bool),
                truncations=np.asarray(ep["truncations"], dtype=bool),
                infos={},
            )
            for i, ep in enumerate(episodes)
        ]
        with _minari_root_at(staging), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            minari.create_dataset_from_buffers(
                dataset_id,
                buffers,
                env=task.gym_id,
                algorithm_name=algorithm_name,
                description=description,
                author="empo-data build",
                code_permalink="empo (this package)",
                ref_min_score=task.env.ref_min_score,
                ref_max_score=task.env.ref_max_score,
            )
        target = root / dataset_id
        target.parent.mkdir(parents=True, exist_ok=True)
        # namespace metadata files that Minari keeps beside datasets
        rel = Path(dataset_id).parent
        while str(rel) not in ("", "."):
            src = staging / rel / "namespace_metadata.json"
            dst = root / rel / "namespace_metadata.json"
            if src.is_file() and not dst.is_file():
                shutil.copy2(src, dst)
            rel = rel.parent
        old = None
        if target.exists():
            old = target.with_name(target.name + ".old-" + staging.name)
            target.rename(old)
        (staging / dataset_id).rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def clean_stale_staging() -> None:
    """Remove staging folders left by interrupted builds (those whose process is gone)."""
    parent = minari_root().parent
    if not parent.is_dir():
        return
    for stale in parent.glob(".empo-staging-*"):
        try:
            pid = int(stale.name.split("-")[2])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError):
            shutil.rmtree(stale, ignore_errors=True)
        except PermissionError:
            pass  # another user's live build
