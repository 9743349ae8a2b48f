"""Shared pieces of the command-line tools: error handling, device and seed arguments."""

from __future__ import annotations

import argparse
import functools
import os
import random
import sys
from collections.abc import Callable
from typing import Any

from empo.errors import EmpoError


def cli_entry(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a command's ``main`` so that user errors print one line and exit with status 2.

    Keyword arguments (injected components, e.g. ``empo-train``'s ``obtain``) pass through."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None, **kwargs: Any) -> int:
        try:
            return main(argv, **kwargs)
        except EmpoError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default="auto",
        help="torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:1, ... (default: auto)",
    )


def resolve_device(name: str):  # -> torch.device
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise EmpoError(f"--device: '{name}' is not a torch device (try cpu, cuda or auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EmpoError(f"--device {name}: CUDA is not available on this machine")
    return device


THREADS_HELP = (
    "torch CPU threads (default: $EMPO_THREADS if set, else the cores other processes leave free, re-counted every epoch; "
    "two threads beside a busy process run 2-6x slower than one, benchmarks/results/threads-cpu.md)"
)


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, metavar="N", help=THREADS_HELP)


def start_threads(fixed: int | None, show: bool = True):  # -> empo.threads.ThreadCounter
    """Set torch's CPU threads for a command; say which on stderr.

    ``--threads N`` (``fixed``) wins, then the environment variable ``EMPO_THREADS``, else the
    cores that other processes leave free (empo/threads.py).

    On stderr so that a command's JSON output on stdout stays clean."""
    from tqdm.auto import tqdm

    from empo.threads import ThreadCounter

    source = "--threads"
    if fixed is None and os.environ.get("EMPO_THREADS"):
        source = "EMPO_THREADS"
        value = os.environ["EMPO_THREADS"]
        try:
            fixed = int(value)
        except ValueError:
            raise EmpoError(f"EMPO_THREADS={value!r}: expected a whole number of threads (at least 1)") from None
        if fixed < 1:
            raise EmpoError(f"EMPO_THREADS={value!r}: expected at least 1 thread")
    counter = ThreadCounter(fixed, log=tqdm.write, source=source)
    counter.update()
    if show:
        print(counter.describe(), file=sys.stderr, flush=True)
    return counter


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
