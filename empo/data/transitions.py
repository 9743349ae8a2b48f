"""``Transitions``: the one dataset type every source yields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from empo.errors import EmpoError

if TYPE_CHECKING:
    import torch

    from empo.data.tasks import Task

FIELDS: tuple[str, ...] = (
    "observations",
    "actions",
    "rewards",
    "next_observations",
    "terminals",
    "timeouts",
)


@dataclass
class Transitions:
    """Steps of a dataset in episode order, as float32 arrays.

    ``terminals[i] = 1`` when step i ended the episode by the environment's own rule;
    ``timeouts[i] = 1`` when the episode was cut after step i (time limit or end of data).
    ``episode_starts`` holds the index of each episode's first step. Every step is kept here;
    :meth:`qlearning` applies D4RL's qlearning semantics (timeout steps dropped).
    ``episode_returns`` are the full episodes' undiscounted returns.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    episode_starts: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in FIELDS:
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.float32))
        self.episode_starts = np.asarray(self.episode_starts, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.observations.shape[0])

    @property
    def source(self) -> str:
        return str(self.metadata.get("source", "unknown"))

    @property
    def num_episodes(self) -> int:
        return int(self.episode_starts.shape[0])

    @property
    def episode_returns(self) -> np.ndarray:
        if len(self) == 0:
            return np.zeros(0, dtype=np.float64)
        return np.add.reduceat(self.rewards.astype(np.float64), self.episode_starts)

    def qlearning(self) -> Transitions:
        """D4RL's qlearning semantics: drop steps flagged as timeouts, keep terminals."""
        return self.select(self.qlearning_mask())

    def qlearning_mask(self) -> np.ndarray:
        """The rows ``qlearning`` keeps (bool, one per row), for callers that need only which or how many."""
        return self.timeouts < 0.5

    def select(self, mask_or_index: np.ndarray) -> Transitions:
        """A subset of rows (episode boundaries follow the kept rows; returns are recomputed)."""
        index = np.arange(len(self))[mask_or_index]
        starts = np.zeros(len(self), dtype=bool)
        starts[self.episode_starts] = True
        new_starts = np.flatnonzero(starts[index])
        if index.size and (new_starts.size == 0 or new_starts[0] != 0):
            new_starts = np.insert(new_starts, 0, 0)
        return Transitions(
            **{name: getattr(self, name)[index] for name in FIELDS},
            episode_starts=new_starts,
            metadata=dict(self.metadata),
        )

    def validate(self, task: Task | None = None, origin: str = "dataset") -> Transitions:
        """Check lengths, shapes and finiteness; raise :class:`EmpoError` naming what is wrong."""
        n = len(self)
        if self.observations.ndim != 2:
            raise EmpoError(f"{origin}: 'observations' must be 2-D (steps x obs_dim), got shape {self.observations.shape}")
        if self.actions.ndim != 2:
            raise EmpoError(f"{origin}: 'actions' must be 2-D (steps x act_dim), got shape {self.actions.shape}")
        for name in FIELDS:
            arr = getattr(self, name)
            if arr.shape[0] != n:
                raise EmpoError(
                    f"{origin}: '{name}' has {arr.shape[0]} rows but 'observations' has {n}; all arrays must have the same length"
                )
            if not np.all(np.isfinite(arr)):
                bad = int(np.flatnonzero(~np.isfinite(arr).reshape(n, -1).all(axis=1))[0])
                raise EmpoError(f"{origin}: '{name}' contains NaN or inf (first at row {bad})")
        if self.next_observations.shape != self.observations.shape:
            raise EmpoError(
                f"{origin}: 'next_observations' has shape {self.next_observations.shape}, expected {self.observations.shape}"
            )
        for name in ("rewards", "terminals", "timeouts"):
            if getattr(self, name).ndim != 1:
                raise EmpoError(f"{origin}: '{name}' must be 1-D, got shape {getattr(self, name).shape}")
        if task is not None:
            if self.observations.shape[1] != task.obs_dim:
                raise EmpoError(
                    f"{origin}: observations have {self.observations.shape[1]} dimensions, "
                    f"but task {task.name} ({task.gym_id}) expects {task.obs_dim}"
                )
            if self.actions.shape[1] != task.act_dim:
                raise EmpoError(
                    f"{origin}: actions have {self.actions.shape[1]} dimensions, "
                    f"but task {task.name} ({task.gym_id}) expects {task.act_dim}"
                )
        return self

    def to_tensors(self, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """The six arrays as float32 tensors on ``device`` (one copy, made once)."""
        import torch

        return {name: torch.as_tensor(getattr(self, name), device=device) for name in FIELDS}

    def checksum(self) -> str:
        """A SHA-256 of the six arrays' bytes (first 16 hex digits): two builds of a task on two
        machines hold the same steps exactly when their checksums agree."""
        import hashlib

        digest = hashlib.sha256()
        for name in FIELDS:
            array = np.ascontiguousarray(getattr(self, name), dtype=np.float32)
            digest.update(f"{name}{array.shape}".encode())
            digest.update(array.tobytes())
        return digest.hexdigest()[:16]

    def summary(self, task: Task | None = None) -> dict[str, Any]:
        """The figures ``empo-data info`` prints."""
        returns = self.episode_returns
        return {
            "checksum": self.checksum(),
            "transitions": len(self.qlearning()) if len(self) else 0,
            "episodes": self.num_episodes,
            "terminals": int(self.terminals.sum()),
            "timeouts": int(self.timeouts.sum()),
            "mean_return": float(returns.mean()) if returns.size else float("nan"),
            "std_return": float(returns.std()) if returns.size else float("nan"),
            "normalized_score": self.normalized_score(task),
            "source": self.source,
        }

    def normalized_score(self, task: Task | None = None) -> float | None:
        """The episodes' mean return, normalised by the task's reference scores (else the metadata's);
        None without reference scores or episodes."""
        returns = self.episode_returns
        ref_min = self.metadata.get("ref_min_score")
        ref_max = self.metadata.get("ref_max_score")
        if task is not None:
            ref_min, ref_max = task.env.ref_min_score, task.env.ref_max_score
        if ref_min is None or ref_max is None or not returns.size:
            return None
        from empo.data.tasks import normalized_score

        return normalized_score(float(returns.mean()), float(ref_min), float(ref_max))


def from_episodes(
    episodes: list[dict[str, np.ndarray]], metadata: dict[str, Any] | None = None
) -> Transitions:
    """Concatenate episodes given Minari-style: ``observations`` has T+1 rows, the rest T."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in FIELDS}
    starts = []
    offset = 0
    for ep in episodes:
        obs = np.asarray(ep["observations"], dtype=np.float32)
        steps = obs.shape[0] - 1
        if steps <= 0:
            continue
        starts.append(offset)
        offset += steps
        parts["observations"].append(obs[:-1])
        parts["next_observations"].append(obs[1:])
        parts["actions"].append(np.asarray(ep["actions"], dtype=np.float32).reshape(steps, -1))
        parts["rewards"].append(np.asarray(ep["rewards"], dtype=np.float32).reshape(steps))
        parts["terminals"].append(np.asarray(ep["terminations"], dtype=np.float32).reshape(steps))
        parts["timeouts"].append(np.asarray(ep["truncations"], dtype=np.float32).reshape(steps))
    if not starts:
        raise EmpoError("dataset has no episodes with at least one step")
    return Transitions(
        **{name: np.concatenate(arrs) for name, arrs in parts.items()},
        episode_starts=np.asarray(starts),
        metadata=dict(metadata or {}),
    )
