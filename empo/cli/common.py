"""Shared pieces of the command-line tools: error handling, device and seed arguments."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable

from empo.errors import EmpoError


def cli_entry(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """Wrap a command's ``main`` so that user errors print one line and exit with status 2."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
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
    """The ``--device`` value as a checked torch device (empo.pipeline.resolve_device; torch loads lazily)."""
    from empo.pipeline import resolve_device as resolve

    return resolve(name)


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
    from empo.pipeline import seed_everything as seed_all

    seed_all(seed)
