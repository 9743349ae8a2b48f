"""Small shared helpers."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def empo_home() -> Path:
    """Where models and behaviour runs are kept: ``$EMPO_HOME``, else ``~/.empo`` (the one place that reads it)."""
    return Path(os.environ.get("EMPO_HOME") or Path.home() / ".empo").expanduser()


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


#: free bytes below which a failed write is taken for a full disk (writers such as torch.save
#: report it as an error of their own, e.g. RuntimeError "unexpected pos")
FULL_DISK_BYTES = 1 << 20
#: what torch.save's writer says when a write to the file fails
WRITER_FAILURES = ("unexpected pos", "PytorchStreamWriter failed writing")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through ``write(tmp)`` to a temporary file beside ``path``, then rename it into place,
    so that an interruption never leaves a half-written file that reads as complete.

    When the write fails, the partial temporary file is removed (``path`` keeps its last complete
    version); a failure on a full disk is raised as ``OSError(ENOSPC)`` naming ``path`` whatever
    the writer raised, so that commands report it in one line."""
    import errno
    import shutil

    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
    except Exception as exc:
        try:
            full = shutil.disk_usage(tmp.parent).free < FULL_DISK_BYTES
        except OSError:
            full = False
        tmp.unlink(missing_ok=True)
        if full or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from exc
        if isinstance(exc, RuntimeError) and any(sign in str(exc) for sign in WRITER_FAILURES):
            from empo.errors import EmpoError

            raise EmpoError(f"{path}: the file could not be written (is the disk full?); any earlier complete version is kept") from exc
        raise
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text))


def git_commit(mark_dirty: bool = True) -> str | None:
    """The checkout's short commit, "(with uncommitted changes)" appended when the tree is dirty
    and ``mark_dirty``; None outside a git checkout. Recorded with runs and benchmark results."""
    import subprocess

    here = Path(__file__).parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5, cwd=here)
        if head.returncode != 0 or not head.stdout.strip():
            return None
        commit = head.stdout.strip()
        if mark_dirty:
            status = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, timeout=5, cwd=here)
            if status.stdout.strip():
                commit += " (with uncommitted changes)"
        return commit
    except (OSError, subprocess.SubprocessError):
        return None


def device_name(device: str = "cpu") -> str:
    """A readable name of the device that figures were measured on: the GPU's, or the CPU's model."""
    import platform

    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "cpu"


@contextmanager
def exclusive_lock(guarded: Path, on_wait: Callable[[], object] = lambda: None) -> Iterator[None]:
    """An exclusive lock on ``guarded`` (a file ``<guarded>.lock`` beside it) for the block: a second
    process calls ``on_wait`` once and waits its turn. What a sweep's workers would otherwise do twice
    at once (fit one cached model, build one dataset) runs under it. Without fcntl (Windows): no lock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        yield
        return
    lock_path = guarded.with_name(guarded.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def named_path(expected: str = "NAME=PATH") -> Callable[[str], tuple[str, Path]]:
    """An argparse ``type=`` for ``NAME=PATH`` values -> (name, path with ``~`` expanded); a value
    without both parts is refused with "expected ``expected``"."""

    def parse(text: str) -> tuple[str, Path]:
        name, sep, path = text.partition("=")
        if not sep or not name or not path:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return name, Path(path).expanduser()

    return parse
