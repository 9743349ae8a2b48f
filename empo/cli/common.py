"""Shared pieces of the command-line tools: error handling, device and seed arguments."""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from empo.errors import EmpoError

DEBUG_FLAG = "--debug"
DEBUG_HINT = f"rerun with {DEBUG_FLAG} (or EMPO_DEBUG=1) for the traceback"


def debug_requested(argv: list[str]) -> bool:
    """``--debug`` among the arguments or ``EMPO_DEBUG`` set to anything but empty or 0."""
    return DEBUG_FLAG in argv or os.environ.get("EMPO_DEBUG", "").strip() not in ("", "0")


def one_line(text: str) -> str:
    """``text`` on one line: newlines (e.g. from a library's message) become "; "."""
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


def describe_os_error(exc: OSError) -> str:
    """An OSError as "FILE: reason", e.g. "runs/x/checkpoint.pt.tmp: No space left on device"."""
    reason = exc.strerror or one_line(str(exc)) or type(exc).__name__
    names = [str(name) for name in (exc.filename, exc.filename2) if name is not None]
    if names:
        return f"{' -> '.join(names)}: {reason}"
    return f"{reason} (an operating-system error that names no file; {DEBUG_HINT})"


def cli_entry(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """Wrap a command's ``main`` so that user errors print one line and exit with status 2.

    - :class:`EmpoError` (bad input, found by the commands' checks): ``error: MESSAGE``, status 2;
    - :class:`OSError` (a file that cannot be read or written, a full disk): ``error: FILE: reason``, status 2;
    - any other exception is a bug: ``error: internal error ...`` naming it and where it was
      raised, status 1;
    - Ctrl-C: ``interrupted``, status 130; SIGTERM (a scheduler, ``kill``, a session that ends) is
      handled the same way, status 143, so a training command says where it stopped and how to
      resume instead of dying silently.

    ``--debug`` (anywhere among the arguments; removed before the command parses them) or
    ``EMPO_DEBUG=1`` prints the full traceback above the error line, for bug reports.
    """

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        args = list(sys.argv[1:] if argv is None else argv)
        debug = debug_requested(args)
        args = [arg for arg in args if arg != DEBUG_FLAG]
        terminated = []

        def on_sigterm(signum: int, frame: Any) -> None:
            terminated.append(signum)
            raise KeyboardInterrupt

        # signal handlers belong to the main thread; a command called from another thread keeps the default
        previous = signal.signal(signal.SIGTERM, on_sigterm) if threading.current_thread() is threading.main_thread() else None
        try:
            return main(args)
        except EmpoError as exc:
            if debug:
                traceback.print_exc()
            print(f"error: {one_line(str(exc))}", file=sys.stderr)
            return 2
        except OSError as exc:
            if debug:
                traceback.print_exc()
            print(f"error: {describe_os_error(exc)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted" + (" (SIGTERM)" if terminated else ""), file=sys.stderr)
            return 143 if terminated else 130
        except Exception as exc:  # a bug: say what and where in one line; the traceback on request
            if debug:
                traceback.print_exc()
            frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            where = f" at {Path(frame.filename).name}:{frame.lineno}" if frame else ""
            message = one_line(str(exc))
            print(
                f"error: internal error {type(exc).__name__}{': ' + message if message else ''}{where} "
                f"(a bug; {DEBUG_HINT} and report it)",
                file=sys.stderr,
            )
            return 1
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return wrapper


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose mistakes are one-line :class:`EmpoError` (exit status 2 through
    :func:`cli_entry`) instead of a usage block; its subparsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        raise EmpoError(f"{self.prog}: {message} (see {self.prog} --help)")


#: permission checks as the process's effective user where the system can (as open() itself checks)
_EFFECTIVE: dict[str, bool] = {"effective_ids": True} if os.access in os.supports_effective_ids else {}


def _number(kind: Callable[[str], Any], text: str, what: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {what}") from None


def int_range(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number in [low, high] (either end open when None)."""
    if low is not None and high is not None:
        what = f"a whole number from {low:,} to {high:,}"
    elif low is not None:
        what = f"a whole number of at least {low:,}"
    else:
        what = "a whole number"

    def parse(text: str) -> int:
        value = _number(int, text, what)
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text!r}: expected {what}")
        return value

    parse.__name__ = "int"  # argparse names the type in some messages
    return parse


#: numpy's and torch's generators take seeds in [0, 2**32)
SEED_MAX = 2**32 - 1
seed_int = int_range(0, SEED_MAX)
positive_int = int_range(1)


def add_seed_argument(parser: argparse.ArgumentParser, default: int = 0, help: str = "random seed") -> None:
    parser.add_argument("--seed", type=seed_int, default=default, help=f"{help} (0 to 2**32-1; default: {default})")


def existing_file(path: Path, option: str, what: str = "file") -> Path:
    """``path`` must be a file that can be read: a one-line error naming ``option`` otherwise."""
    if not path.exists():
        raise EmpoError(f"{option} {path}: no such {what}")
    if path.is_dir():
        raise EmpoError(f"{option} {path}: a folder, expected a {what}")
    if not os.access(path, os.R_OK, **_EFFECTIVE):
        raise EmpoError(f"{option} {path}: cannot be read (permission denied)")
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise EmpoError(f"{option} {path}: cannot be read ({exc.strerror or exc})") from None
    if path.stat().st_size == 0:
        raise EmpoError(f"{option} {path}: the file is empty, expected a {what}")
    return path


def existing_folder(path: Path, option: str, what: str = "folder") -> Path:
    """``path`` must be a folder whose entries can be listed."""
    if not path.exists():
        raise EmpoError(f"{option} {path}: no such {what}")
    if not path.is_dir():
        raise EmpoError(f"{option} {path}: a file, expected a {what}")
    try:
        next(iter(path.iterdir()), None)
    except OSError as exc:
        raise EmpoError(f"{option} {path}: cannot be read ({exc.strerror or exc})") from None
    return path


def _writable(path: Path, option: str, shown: Path) -> None:
    """The nearest existing folder at or above ``path`` must be a folder that can be written."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise EmpoError(f"{option} {shown}: {probe} is a file, so nothing can be written below it")
    if not os.access(probe, os.W_OK | os.X_OK, **_EFFECTIVE):
        raise EmpoError(f"{option} {shown}: {probe} cannot be written (permission denied)")


def output_folder(path: Path, option: str) -> Path:
    """``path`` is to be written as a folder: it must be one, or be creatable below a folder that can be written."""
    if path.exists() and not path.is_dir():
        raise EmpoError(f"{option} {path}: a file is there, expected a folder to write into")
    _writable(path, option, path)
    return path


def output_file(path: Path, option: str) -> Path:
    """``path`` is to be written as a file: not a folder, below a folder that can be made and written."""
    if path.is_dir():
        raise EmpoError(f"{option} {path}: a folder is there, expected a file name to write")
    _writable(path.parent, option, path)
    return path


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default="auto",
        help="torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:1, ... (default: auto)",
    )


def resolve_device(name: str):  # -> torch.device
    """The ``--device`` value as a checked torch device: auto, cpu, cuda or cuda:N that exists here
    (empo.pipeline.resolve_device, the one place that checks it; torch loads lazily)."""
    from empo.pipeline import resolve_device as resolve

    return resolve(name)


THREADS_HELP = (
    "torch CPU threads (default: $EMPO_THREADS if set, else the cores other processes leave free, re-counted every epoch; "
    "two threads beside a busy process run 2-6x slower than one, benchmarks/results/threads-cpu.md)"
)


MAX_THREADS = 1024


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int_range(1, MAX_THREADS), metavar="N", help=THREADS_HELP)


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
        if not 1 <= fixed <= MAX_THREADS:
            raise EmpoError(f"EMPO_THREADS={value!r}: expected a whole number of threads from 1 to {MAX_THREADS}")
    counter = ThreadCounter(fixed, log=tqdm.write, source=source)
    counter.update()
    if show:
        print(counter.describe(), file=sys.stderr, flush=True)
    return counter


def seed_everything(seed: int) -> None:
    from empo.pipeline import seed_everything as seed_all

    seed_all(seed)
