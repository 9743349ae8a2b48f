"""Small shared helpers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run a block with ``count`` torch CPU threads, then restore the previous count.

    Tiny networks (behaviour actors, SAC on 256x256) run fastest on one thread; more threads
    oversubscribe a loaded 2-core machine and can be many times slower.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
