"""How many torch CPU threads a command uses: the cores that other processes leave free.

Measured on the project's 2-core machine (benchmarks/results/threads-cpu.md): two torch threads
are about 1.6x faster than one on an idle machine, and 2-3x slower than one while another
single-threaded process runs beside them (OpenMP threads spin waiting for the core the other
process holds). ``OMP_WAIT_POLICY=PASSIVE`` removes that collapse but makes small SAC updates
slower than one thread even on an idle machine, so it is not used.

So every command counts, by default, the cores that other processes keep busy and uses the rest
(at least one), and counts again at every epoch boundary of a model fit or an agent run, where
a changed count is printed: a run started on an idle machine drops to one thread when a second
run starts beside it. ``--threads N`` fixes the count instead. The count uses Linux's
/proc/stat; elsewhere the default is torch's own choice.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from empo.errors import EmpoError

_PROC_STAT = Path("/proc/stat")
_SELF_STAT = Path("/proc/self/stat")


def flush_denormals() -> bool:
    """Treat denormal floats as zero on the CPU (torch.set_flush_denormal), in this thread and in
    the torch threads started after it (they inherit the setting, so call it before the first op).

    Why: weight decay drives the weights of dead ReLU units into the denormal range, where x86
    arithmetic takes a slow path. In the walker2d-medium learn ETM, 6,254 of one hidden layer's
    81,920 weights were denormal after 2,720 updates; one batched matmul with them took 70x as long
    (702 ms against 10 ms), and from about the 1,600th update every learn ETM fit's sampler slowed
    5-8x (benchmarks/results/denormals-cpu.md). Values below 1.2e-38 become 0; nothing else changes.
    Returns False where the CPU cannot (torch supports x86 with SSE3 and AArch64).
    """
    return bool(torch.set_flush_denormal(True))


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _busy_ticks() -> tuple[int, int] | None:
    """(non-idle clock ticks of the whole machine, of this process) since boot, or None off Linux."""
    try:
        fields = _PROC_STAT.read_text().splitlines()[0].split()[1:]
        own = _SELF_STAT.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    values = [int(v) for v in fields]
    # user nice system idle iowait irq softirq steal (guest time is already inside user)
    machine = sum(values[:8]) - values[3] - values[4]
    process = int(own[11]) + int(own[12])  # utime, stime (fields 14 and 15 of /proc/self/stat)
    return machine, process


class ThreadCounter:
    """Sets torch's thread count: ``fixed`` if given, else the cores other processes leave free.

    ``update()`` measures the other processes' load since the previous call (the first call
    samples for ``probe_s``), sets ``torch.set_num_threads`` and returns the count; ``describe()``
    says what was chosen and why, for the command's first lines.
    """

    def __init__(
        self,
        fixed: int | None = None,
        probe_s: float = 0.25,
        log: Callable[[str], object] | None = None,
        source: str = "--threads",
    ) -> None:
        if fixed is not None and fixed < 1:
            raise EmpoError(f"{source} must be at least 1, got {fixed}")
        flush_denormals()  # before the thread pool starts, so that its threads inherit it
        self.fixed, self.source = fixed, source  # source: where a fixed count came from, for messages
        self.cores = available_cores()
        self.probe_s = probe_s
        self.log = log
        self.threads: int | None = None
        self.others_busy: float | None = None
        self._last: tuple[float, tuple[int, int]] | None = None

    def _measure_others(self) -> float | None:
        now, ticks = time.monotonic(), _busy_ticks()
        if ticks is None:
            return None
        if self._last is None:
            time.sleep(self.probe_s)
            self._last = (now, ticks)
            now, ticks = time.monotonic(), _busy_ticks()
            if ticks is None:
                return None
        then, before = self._last
        self._last = (now, ticks)
        elapsed = now - then
        if elapsed <= 0:
            return None
        hz = os.sysconf("SC_CLK_TCK")
        others = ((ticks[0] - before[0]) - (ticks[1] - before[1])) / hz / elapsed
        return max(0.0, others)

    def choose(self) -> int:
        """The thread count for now, without setting it."""
        if self.fixed is not None:
            return self.fixed
        others = self._measure_others()
        self.others_busy = others
        if others is None:
            return torch.get_num_threads()
        # a core counts as taken from half a core's load on (one busy process shows as ~1.0)
        return max(1, self.cores - int(others + 0.5))

    def update(self) -> int:
        """Choose and apply the count; say so through ``log`` when it changes after the first time."""
        threads = self.choose()
        if threads != self.threads:
            if self.threads is not None and self.log is not None:
                self.log(f"threads: {self.threads} -> {threads} ({self._reason()})")
            torch.set_num_threads(threads)
            self.threads = threads
        return threads

    def _reason(self) -> str:
        if self.fixed is not None:
            return self.source
        if self.others_busy is None:
            return "torch's default; the machine's load is not readable here"
        return f"{self.cores} cores, other processes busy on {self.others_busy:.1f}"

    def describe(self) -> str:
        """One line for the start of a command, e.g. 'threads: 1 (2 cores, other processes busy on 1.0; ...)'."""
        if self.threads is None:
            self.update()
        hint = "" if self.fixed is not None else "; re-counted every epoch, --threads N fixes it"
        return f"threads: {self.threads} ({self._reason()}{hint})"
