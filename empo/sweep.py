"""Sweeps: a grid of runs (tasks x algorithms x seeds x presets) on a process pool or on Ray.

Each run is an ordinary run folder of ``empo.pipeline.train_agent`` under the sweep folder, named
``<task>-<algo>-<preset>-s<seed>``; ``sweep.json`` indexes them (config, status, scores, wall time,
error), rewritten atomically at every state change. Running the same sweep again skips finished
runs and resumes interrupted ones from their checkpoints (the default folder is named after the
grid, :func:`default_sweep_dir`, so the same grid finds its folder); a failing run is recorded with
its error and the others go on. The sweep folder is also a TensorBoard dashboard
(empo/evaluation/dashboard.py). Runs that need the same transition model share it through the model cache,
whose lock (empo/pipeline.py) makes sure one of them fits it and the others wait and load it.

Engines: ``local`` (a pool of ``workers`` processes, each run with ``threads_per_run`` torch
threads) and ``ray`` (each run a Ray task declaring ``threads_per_run`` CPUs and ``gpus_per_run``
GPUs; a local Ray instance, or an existing cluster with ``ray_address``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from empo.config import from_dict, load_yaml
from empo.errors import EmpoError
from empo.utils import atomic_write_text

INDEX = "sweep.json"
SPEC_YAML = "sweep.yaml"
# written into a run's folder by the worker that starts it: how the main process of a pool or Ray
# sweep learns that a queued run is running
STARTED = ".sweep-started"
#: what an interrupted run's log.txt ends with (run_one)
INTERRUPTED_LINE = "interrupted by Ctrl-C or a signal: the run resumes from its last checkpoint when the sweep runs again"


@dataclass
class SweepSpec:
    """A sweep: the grid and how to run it (``empo-sweep SPEC.yaml`` reads one; unknown keys are errors)."""

    tasks: list[str]
    algos: list[str] = field(default_factory=lambda: ["empo", "mopo"])
    seeds: list[int] = field(default_factory=lambda: [0])
    presets: list[str] = field(default_factory=lambda: ["quick"])
    overrides: dict[str, Any] = field(default_factory=dict)  # nested, as empo-train's --set
    engine: Literal["local", "ray"] = "local"
    workers: int = 1
    threads_per_run: int = 1
    gpus_per_run: float = 0.0
    ray_address: str | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("tasks", "algos", "seeds", "presets"):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"{name} must not be empty")
            repeated = sorted({str(v) for v in values if values.count(v) > 1})
            if repeated:  # the same run twice would share one folder (and, with workers, write it at once)
                raise ValueError(f"{name} lists {', '.join(repeated)} more than once")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.threads_per_run < 1:
            raise ValueError(f"threads_per_run must be at least 1, got {self.threads_per_run}")
        if self.gpus_per_run < 0:
            raise ValueError(f"gpus_per_run must be >= 0, got {self.gpus_per_run}")


@dataclass
class RunSpec:
    run_id: str
    task: str
    algo: str
    preset: str
    seed: int
    overrides: dict[str, Any]


def load_spec(path: str | Path) -> SweepSpec:
    return from_dict(SweepSpec, load_yaml(Path(path)), where=str(path))


# Override sections that change how runs run, not what they compute (empo.loop.config.run_settings
# leaves them out too): a sweep resumed with another runtime setting is still the same sweep.
_NOT_GRID = ("runtime", "diagnostics")


def grid_of(spec: SweepSpec) -> dict[str, Any]:
    """What decides which runs a sweep holds: its tasks, algorithms, seeds, presets and overrides.

    Lists are sorted (``--seeds 1 0`` is the grid of ``--seeds 0 1``); the engine, workers, threads
    and device are left out, as are the overrides' ``runtime`` and ``diagnostics`` sections, since a
    run folder resumes under other values of those."""
    overrides = {k: v for k, v in (spec.overrides or {}).items() if k not in _NOT_GRID}
    return {
        "tasks": sorted(spec.tasks),
        "algos": sorted(spec.algos),
        "seeds": sorted(spec.seeds),
        "presets": sorted(spec.presets),
        "overrides": overrides,
    }


def grid_hash(spec: SweepSpec) -> str:
    """Eight hex digits identifying the grid (:func:`grid_of`); the same grid always gives the same."""
    blob = json.dumps(grid_of(spec), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def default_sweep_dir(spec: SweepSpec, root: str | Path = "runs") -> Path:
    """``<root>/sweep-<presets>-<hash8>``: the folder the same grid always gets when no --out is given."""
    presets = re.sub(r"[^A-Za-z0-9._+-]+", "_", "+".join(sorted(spec.presets)))[:40]
    return Path(root) / f"sweep-{presets}-{grid_hash(spec)}"


def find_sweep_dir(spec: SweepSpec, root: str | Path = "runs") -> Path:
    """The folder of this grid under ``root``: :func:`default_sweep_dir` when it exists, else the newest
    other ``sweep-*`` folder whose saved spec has the same grid (sweeps started before the folder was
    named after its grid got ``sweep-<time>``), else :func:`default_sweep_dir` to start in."""
    named = default_sweep_dir(spec, root)
    if named.is_dir() or not Path(root).is_dir():
        return named
    same = []
    for folder in Path(root).glob("sweep-*"):
        if not (folder / SPEC_YAML).is_file():
            continue
        try:
            other = load_spec(folder / SPEC_YAML)
        except (EmpoError, OSError, ValueError):  # a spec of another version or a broken file: not this sweep
            continue
        if grid_of(other) == grid_of(spec):
            same.append(folder)
    return max(same, key=lambda f: (f / INDEX).stat().st_mtime if (f / INDEX).is_file() else 0.0) if same else named


def expand(spec: SweepSpec) -> list[RunSpec]:
    """The grid, every run's config resolved and checked (model settings included) before any run starts.

    Seeds are the outer loop: a sweep stopped part way (hours of CPU per run) has every task,
    algorithm and preset at its first seeds rather than one task at all of them.
    """
    from empo.loop.config import resolve_config
    from empo.pipeline import model_config_for

    runs = []
    for seed in spec.seeds:
        for task in spec.tasks:
            for algo in spec.algos:
                for preset in spec.presets:
                    config = resolve_config(task, algo, preset, seed, spec.overrides or None)
                    model_config_for(config)
                    runs.append(RunSpec(f"{task}-{algo}-{preset}-s{seed}", task, algo, preset, seed, spec.overrides))
    return runs


# In a pool worker: whether the sweep is stopping, and whether a run is in progress (_on_stop).
_stop_requested = False
_run_active = False


def _worker_signals() -> None:
    """Pool worker initializer: the sweep's main process decides when its workers stop.

    A Ctrl-C in a terminal reaches every process of the group, while ``kill -INT`` or a scheduler's
    SIGTERM reaches the main process alone; so workers ignore SIGINT, and the main process sends each
    of them one SIGTERM whichever way it was stopped (``_run_local``).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_stop)


def _on_stop(signum: int, frame: Any) -> None:
    """A worker's SIGTERM: interrupt the run in progress (it keeps its last checkpoint) and start no other."""
    global _stop_requested
    _stop_requested = True
    if _run_active:
        raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_interrupts() -> Any:
    """SIGTERM stops the sweep as Ctrl-C does (a session that ends, ``kill``, a job scheduler)."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers belong to the main thread
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_one(run: RunSpec, sweep_dir: str, threads: int, device: str) -> dict[str, Any]:
    """One run in its folder (new, resumed or already finished); never raises: errors are recorded.

    Runs in a worker process: its output goes to the run folder's ``log.txt``.
    """
    global _run_active
    started = time.perf_counter()
    log_file = None
    try:
        # active first, then the check: a SIGTERM before this line is seen by the check, one after it
        # interrupts the run (_on_stop), so no run starts unnoticed once the sweep is stopping
        _run_active = True
        if _stop_requested:  # a run handed to this worker before the sweep stopped: left for the next sweep
            return {"status": "pending", "error": None, "seconds": 0.0}
        os.environ["EMPO_THREADS"] = str(threads)
        import torch

        from empo.threads import flush_denormals

        flush_denormals()
        torch.set_num_threads(threads)
        from empo.loop.config import resolve_config
        from empo.pipeline import run_or_resume

        run_dir = Path(sweep_dir) / run.run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        log_file = (run_dir / "log.txt").open("a", buffering=1)  # line by line, so that tail -f follows the run
        with contextlib.redirect_stdout(log_file), contextlib.redirect_stderr(log_file):
            config = resolve_config(run.task, run.algo, run.preset, run.seed, run.overrides or None)
            summary, how = run_or_resume(config, run_dir, device=device, progress=False, command=f"empo-sweep {run.run_id}",
                                         on_start=lambda: atomic_write_text(run_dir / STARTED, f"{os.getpid()} {time.time():.3f}\n"))
            status = "skipped (finished before)" if how == "finished before" else "finished"
        return {"status": status, "summary": summary, "seconds": time.perf_counter() - started}
    except BaseException as exc:  # a failing run is recorded; the sweep goes on (KeyboardInterrupt included)
        seconds = time.perf_counter() - started
        if isinstance(exc, KeyboardInterrupt):
            # a stop is not a failure: one line, not a traceback that reads like a crash to whoever tails the log
            if log_file is not None:
                log_file.write(f"{INTERRUPTED_LINE} ({time.strftime('%Y-%m-%d %H:%M:%S')})\n")
            return {"status": "interrupted", "error": "stopped by Ctrl-C or a signal; resumes from its last checkpoint", "seconds": seconds}
        if log_file is not None:
            log_file.write(traceback.format_exc())
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return {"status": "failed", "error": f"{type(exc).__name__}: {message}", "seconds": seconds}
    finally:
        _run_active = False
        if log_file is not None:
            log_file.close()


class SweepIndex:
    """``sweep.json``: the spec and one entry per run, rewritten atomically at every change."""

    def __init__(self, sweep_dir: Path, spec: SweepSpec, runs: list[RunSpec]) -> None:
        self.path = sweep_dir / INDEX
        old: dict[str, Any] = {}
        if self.path.is_file():
            try:
                old = {r["run_id"]: r for r in json.loads(self.path.read_text()).get("runs", [])}
            except (json.JSONDecodeError, AttributeError, KeyError, TypeError):
                old = {}
        self.spec = spec
        self.runs = {
            run.run_id: {**{"status": "pending"}, **old.get(run.run_id, {}), **asdict(run)} for run in runs
        }
        self.write()

    def update(self, run_id: str, **values: Any) -> None:
        self.runs[run_id].update(values)
        self.write()

    def write(self) -> None:
        data = {"spec": asdict(self.spec), "updated": time.strftime("%Y-%m-%d %H:%M:%S"), "runs": list(self.runs.values())}
        atomic_write_text(self.path, json.dumps(data, indent=2) + "\n")


def run_sweep(
    spec: SweepSpec, sweep_dir: str | Path, progress: bool = True, log: Callable[[str], Any] = print
) -> dict[str, Any]:
    """Run (or continue) the sweep in ``sweep_dir``; returns the index data."""
    from tqdm.auto import tqdm

    from empo.evaluation.report import describe_scores

    sweep_dir = Path(sweep_dir)
    runs = expand(spec)
    how = f"engine {spec.engine}, {spec.workers} worker(s) x {spec.threads_per_run} thread(s)"
    started_before = [run for run in runs if (sweep_dir / run.run_id).exists()]
    if (sweep_dir / INDEX).is_file() or started_before:
        finished = sum(_finished(sweep_dir / run.run_id) for run in started_before)
        partial = len(started_before) - finished
        log(
            f"resuming the sweep in {sweep_dir}: {finished} finished run{'s' * (finished != 1)} skipped, "
            f"{len(runs) - finished} of {len(runs)} to run"
            + (f" ({partial} started before)" if partial else "")
            + f"; {how}"
        )
    else:
        log(f"starting a new sweep in {sweep_dir}: {len(runs)} runs, {how}")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    from empo.config import save_yaml

    save_yaml(spec, sweep_dir / SPEC_YAML)
    index = SweepIndex(sweep_dir, spec, runs)
    _write_dashboard(sweep_dir, runs, log)
    bar = tqdm(total=len(runs), desc="sweep", unit="run", disable=not progress)

    def record(run: RunSpec, result: dict[str, Any]) -> None:
        summary = result.get("summary") or {}
        index.update(
            run.run_id, status=result["status"], error=result.get("error"), seconds=round(result["seconds"], 1),
            final_eval_normalized_score=summary.get("final_eval_normalized_score"),
            final_normalized_score=summary.get("final_normalized_score"),
            last10_mean_normalized_score=summary.get("last10_mean_normalized_score"),
            best_normalized_score=summary.get("best_normalized_score"), epochs=summary.get("epochs"),
        )
        note = f" ({describe_scores(summary)})" if summary else ""
        (bar.write if progress else log)(f"{run.run_id}: {result['status']}{note}" + (f" ({result['error']})" if result.get("error") else ""))
        bar.update(1)

    def started(run: RunSpec) -> None:
        index.update(run.run_id, status="running")
        (bar.write if progress else log)(f"{run.run_id}: running")

    try:
        with _sigterm_interrupts():
            if spec.engine == "ray":
                _run_on_ray(spec, runs, str(sweep_dir), index, record, started)
            else:
                _run_local(spec, runs, str(sweep_dir), index, record, started)
    finally:
        bar.close()
    return json.loads(index.path.read_text())


def _write_dashboard(sweep_dir: Path, runs: list[RunSpec], log: Callable[[str], Any]) -> None:
    """The TensorBoard layout of the sweep (a chart per task and algorithm), known from the grid alone;
    a dashboard that cannot be written is said, and the sweep goes on without it."""
    from empo.evaluation.dashboard import algo_label, write_dashboard
    from empo.loop.config import resolve_config

    try:
        configs = [resolve_config(run.task, run.algo, run.preset, run.seed, run.overrides or None) for run in runs]
        write_dashboard(sweep_dir, {(c.task, algo_label(c.algo, c.agent), c.preset) for c in configs})
    except Exception as exc:  # TensorBoard's protos missing or the folder unwritable: the runs matter more
        log(f"note: no TensorBoard dashboard in {sweep_dir} ({type(exc).__name__}: {exc})")


def _finished(run_dir: Path) -> bool:
    from empo.pipeline import finished_summary

    with contextlib.suppress(EmpoError):  # an unreadable summary: run_or_resume names it when the run is tried
        return finished_summary(run_dir) is not None
    return False


class _StartWatch:
    """The queued runs of a pool or Ray sweep, each announced once as running when its worker has
    written its folder's start marker (after this watch was made: older markers are earlier sweeps')."""

    def __init__(self, runs: list[RunSpec], sweep_dir: str, on_start: Callable[[RunSpec], None]) -> None:
        self.waiting = {run.run_id: run for run in runs}
        self.sweep_dir, self.on_start, self.since = Path(sweep_dir), on_start, time.time()

    def ended(self, run: RunSpec) -> None:
        self.waiting.pop(run.run_id, None)  # a run that ended between two looks (a skip) is not announced

    def look(self) -> None:
        for run_id in list(self.waiting):
            with contextlib.suppress(OSError):
                if (self.sweep_dir / run_id / STARTED).stat().st_mtime >= self.since:
                    self.on_start(self.waiting.pop(run_id))


def _run_local(
    spec: SweepSpec, runs: list[RunSpec], sweep_dir: str, index: SweepIndex, record: Callable, started: Callable
) -> None:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    if spec.workers == 1:
        for run in runs:
            if not _finished(Path(sweep_dir) / run.run_id):  # a finished run is only looked at: not announced
                started(run)
            result = run_one(run, sweep_dir, spec.threads_per_run, spec.device)
            record(run, result)
            if result["status"] == "interrupted":  # Ctrl-C: the run kept its last checkpoint; stop the sweep
                raise KeyboardInterrupt
        return
    context = multiprocessing.get_context("spawn")  # fresh interpreters: torch threads and CUDA start clean
    others = {child.pid for child in multiprocessing.active_children()}
    with ProcessPoolExecutor(max_workers=spec.workers, mp_context=context, initializer=_worker_signals) as pool:
        futures = {}
        watch = _StartWatch(runs, sweep_dir, started)
        for run in runs:
            futures[pool.submit(run_one, run, sweep_dir, spec.threads_per_run, spec.device)] = run
            index.update(run.run_id, status="queued")
        recorded: set[Any] = set()
        try:
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                for future in done:
                    watch.ended(futures[future])
                    record(futures[future], future.result())
                    recorded.add(future)
                watch.look()
        except KeyboardInterrupt:
            _stop_pool(pool, futures, recorded, others, index, record)
            raise


def _stop_pool(pool: Any, futures: dict[Any, RunSpec], recorded: set[Any], others: set[int], index: SweepIndex, record: Callable) -> None:
    """Ctrl-C or SIGTERM in the main process: start no more runs, interrupt the running ones (each
    keeps its last checkpoint, losing at most its current epoch) and record them."""
    import multiprocessing

    for future, run in futures.items():
        if future not in recorded and future.cancel():
            index.update(run.run_id, status="pending")
    for child in multiprocessing.active_children():
        if child.pid not in others:  # this pool's workers
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)
    for future, run in futures.items():
        if future in recorded or future.cancelled():
            continue
        try:
            result = future.result()
        except Exception as exc:  # e.g. a worker that died: the run resumes next time
            result = {"status": "interrupted", "error": f"{type(exc).__name__}: {exc}", "seconds": 0.0}
        if result["status"] == "pending":  # handed to a worker, never started
            index.update(run.run_id, status="pending")
        else:
            record(run, result)
    pool.shutdown(wait=True)


def _run_on_ray(
    spec: SweepSpec, runs: list[RunSpec], sweep_dir: str, index: SweepIndex, record: Callable, started: Callable
) -> None:
    try:
        import ray
    except ImportError:
        raise EmpoError('--engine ray needs Ray: pip install "empo[ray]" (or pip install ray)') from None
    started_here = not ray.is_initialized()
    if started_here:
        kwargs: dict[str, Any] = {"address": spec.ray_address} if spec.ray_address else {"num_cpus": spec.workers * spec.threads_per_run}
        ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
    try:
        remote = ray.remote(num_cpus=spec.threads_per_run, num_gpus=spec.gpus_per_run)(run_one)
        pending = {}
        watch = _StartWatch(runs, sweep_dir, started)
        for run in runs:
            pending[remote.remote(run, sweep_dir, spec.threads_per_run, spec.device)] = run
            index.update(run.run_id, status="queued")
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in done:
                    run = pending.pop(ref)
                    watch.ended(run)
                    record(run, ray.get(ref))
                watch.look()
        except KeyboardInterrupt:
            for ref, run in pending.items():  # a running task gets a KeyboardInterrupt and keeps its checkpoint
                ray.cancel(ref)
                index.update(run.run_id, status="pending")
            raise
    finally:
        if started_here:
            ray.shutdown()
