"""Replay buffers that live on the device (docs/training.md, "The loop").

``TransitionBuffer`` is a ring buffer of preallocated tensors: adding a batch writes in place
(wrapping at the end) and sampling draws indices with the buffer's own ``torch.Generator``. The
fill level is a Python int kept alongside, so sampling never asks the device how full it is.
The real buffer holds the dataset; the model buffer keeps the last K rollouts. ``penalties``
holds each transition's raw uncertainty penalty (zero for real data), which EMPO subtracts inside
the critic target at every update.
"""

from __future__ import annotations

from typing import Any

import torch

from empo.errors import EmpoError

KEYS: tuple[str, ...] = ("observations", "actions", "rewards", "next_observations", "terminals", "penalties")
OPTIONAL_KEYS: tuple[str, ...] = ("penalties",)  # zero when a batch or an older checkpoint lacks them


class TransitionBuffer:
    """A fixed-capacity FIFO of transitions on ``device``; old rows are overwritten first."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: str | torch.device = "cpu") -> None:
        if capacity <= 0:
            raise EmpoError(f"buffer capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.device = torch.device(device)
        self.storage: dict[str, torch.Tensor] = {
            "observations": torch.zeros(capacity, obs_dim, device=self.device),
            "actions": torch.zeros(capacity, act_dim, device=self.device),
            "rewards": torch.zeros(capacity, device=self.device),
            "next_observations": torch.zeros(capacity, obs_dim, device=self.device),
            "terminals": torch.zeros(capacity, device=self.device),
            "penalties": torch.zeros(capacity, device=self.device),
        }
        self.position = 0  # next row to write
        self.size = 0  # rows holding data

    def __len__(self) -> int:
        return self.size

    @classmethod
    def from_tensors(cls, data: dict[str, torch.Tensor], device: str | torch.device | None = None) -> TransitionBuffer:
        """A buffer holding exactly ``data`` (e.g. the dataset: the real buffer)."""
        n = int(data["observations"].shape[0])
        device = device if device is not None else data["observations"].device
        buffer = cls(max(n, 1), int(data["observations"].shape[1]), int(data["actions"].shape[1]), device)
        buffer.add(data)
        return buffer

    def add(self, batch: dict[str, torch.Tensor]) -> None:
        """Append ``batch`` (the storage's keys; ``penalties`` may be left out: zero), wrapping around."""
        n = int(batch["observations"].shape[0])
        if n == 0:
            return
        if n > self.capacity:  # only the newest rows fit
            batch = {key: value[-self.capacity :] for key, value in batch.items()}
            n = self.capacity
        first = min(n, self.capacity - self.position)
        for key in KEYS:
            if key not in batch and key in OPTIONAL_KEYS:
                value = torch.zeros(n, device=self.device)
            else:
                value = batch[key].to(self.device, torch.float32)
            target = self.storage[key]
            target[self.position : self.position + first] = value[:first]
            if first < n:
                target[: n - first] = value[first:]
        self.position = (self.position + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        if self.size == 0:
            raise EmpoError("cannot sample from an empty buffer")
        index = torch.randint(0, self.size, (batch_size,), device=self.device, generator=generator)
        return {key: value[index] for key, value in self.storage.items()}

    # checkpoints keep only the filled rows, in storage order, with the write position
    def state_dict(self) -> dict[str, Any]:
        return {
            "capacity": self.capacity,
            "position": self.position,
            "size": self.size,
            "storage": {key: value[: self.size].clone() for key, value in self.storage.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["capacity"] != self.capacity:
            raise EmpoError(
                f"buffer checkpoint has capacity {state['capacity']}, this buffer {self.capacity}; "
                "the rollout settings changed since the checkpoint was written"
            )
        size = int(state["size"])
        for key in KEYS:
            if key in state["storage"]:
                self.storage[key][:size] = state["storage"][key].to(self.device)
            elif key in OPTIONAL_KEYS:  # a checkpoint from before the key existed
                self.storage[key][:size] = 0.0
            else:
                raise EmpoError(f"buffer checkpoint lacks '{key}'")
        self.position, self.size = int(state["position"]), size


def real_row_count(model_buffer: TransitionBuffer, batch_size: int, real_ratio: float) -> int:
    """How many of a mixed batch's first rows are real: all of them while the model buffer is empty."""
    return batch_size if len(model_buffer) == 0 else int(batch_size * real_ratio)


def sample_mixed(
    real_buffer: TransitionBuffer,
    model_buffer: TransitionBuffer,
    batch_size: int,
    real_ratio: float,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """A batch of ``int(batch_size * real_ratio)`` real rows followed by model rows.

    With an empty model buffer (before the first rollout) the whole batch is real.
    """
    real_count = real_row_count(model_buffer, batch_size, real_ratio)
    model_count = batch_size - real_count
    if model_count == 0:
        return real_buffer.sample(batch_size, generator)
    if real_count == 0:
        return model_buffer.sample(batch_size, generator)
    real = real_buffer.sample(real_count, generator)
    fake = model_buffer.sample(model_count, generator)
    return {key: torch.cat([real[key], fake[key]], dim=0) for key in KEYS}
