"""The loop's runtime options on a GPU: TF32, the SAC step as a CUDA graph, and a sync check.

Hand-written because the loop's SAC step is tiny (256 x 256 networks, batch 256): on an H100 it
is bound by kernel launches and Python, not arithmetic (168-184 updates/s eager, 1,394 as a graph,
benchmarks/results/device-benchmark-gpu.md). Captured once as a CUDA graph, one step is one
replay. Options live in ``TrainConfig.runtime`` (empo/loop/config.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

from empo.agents.sac import SAC
from empo.errors import EmpoError
from empo.loop.buffers import TransitionBuffer, real_row_count, sample_mixed
from empo.loop.config import RuntimeConfig


def check_runtime(runtime: RuntimeConfig, device: torch.device) -> None:
    """Options that need CUDA are errors on other devices (named, before any slow work)."""
    for name in ("cuda_graph", "sync_debug"):
        if getattr(runtime, name) and device.type != "cuda":
            raise EmpoError(f"runtime.{name}=true needs a CUDA device, but the run is on {device}")


def apply_tf32(runtime: RuntimeConfig, device: torch.device) -> None:
    """TF32 matmuls on a CUDA device as ``runtime.tf32`` says (no effect elsewhere)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = bool(runtime.tf32)
        torch.backends.cudnn.allow_tf32 = bool(runtime.tf32)


@contextlib.contextmanager
def sync_debug(enabled: bool) -> Iterator[None]:
    """Make any host synchronisation inside the block an error (``torch.cuda.set_sync_debug_mode``)."""
    if not enabled:
        yield
        return
    before = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(before)


class SACStep:
    """The loop's SAC step: a mixed batch, one update, the metrics added into ``metric_sums``."""

    def __init__(
        self,
        agent: SAC,
        real_buffer: TransitionBuffer,
        model_buffer: TransitionBuffer,
        batch_size: int,
        real_ratio: float,
        generator: torch.Generator,
        metric_names: Sequence[str],
        metric_sums: torch.Tensor,
    ) -> None:
        self.agent, self.real_buffer, self.model_buffer = agent, real_buffer, model_buffer
        self.batch_size, self.real_ratio, self.generator = batch_size, real_ratio, generator
        self.metric_names = tuple(metric_names)
        self.metric_sums = metric_sums  # updated in place by every step

    def _step(self) -> None:
        batch = sample_mixed(self.real_buffer, self.model_buffer, self.batch_size, self.real_ratio, self.generator)
        metrics = self.agent.update(batch, real_rows=real_row_count(self.model_buffer, self.batch_size, self.real_ratio))
        self.metric_sums += torch.stack([metrics[name] for name in self.metric_names])

    def __call__(self) -> None:
        self._step()


class GraphedSACStep(SACStep):
    """The loop's SAC step replayed as a captured CUDA graph.

    The first ``warmup`` calls run eagerly on a side stream (they create the optimisers' state and
    the library handles capture needs); then the step is captured and each call replays it. The
    graph bakes in the buffers' fill levels, so it is captured again when they change, which
    happens only at rollouts and stops once the model buffer is full. Every call is one real
    update. Random draws come from the same generators as the eager step, registered with the
    graph; whether they equal the eager draws number for number is not promised.
    """

    def __init__(
        self,
        agent: SAC,
        real_buffer: TransitionBuffer,
        model_buffer: TransitionBuffer,
        batch_size: int,
        real_ratio: float,
        generator: torch.Generator,
        metric_names: Sequence[str],
        metric_sums: torch.Tensor,
        warmup: int = 3,
    ) -> None:
        if agent.device.type != "cuda":
            raise EmpoError(f"a CUDA graph needs a CUDA device, the agent is on {agent.device}")
        super().__init__(agent, real_buffer, model_buffer, batch_size, real_ratio, generator, metric_names, metric_sums)
        self.warmup_left = warmup
        self.graph: torch.cuda.CUDAGraph | None = None
        self.key: tuple[int, int] | None = None
        self.captures = 0
        self.side_stream = torch.cuda.Stream(device=agent.device)

    def _capture(self) -> None:
        self.graph = None  # free the old graph's memory pool first
        graph = torch.cuda.CUDAGraph()
        register = getattr(graph, "register_generator_state", None)
        if register is None:
            raise EmpoError(
                f"runtime.cuda_graph needs torch.cuda.CUDAGraph.register_generator_state (torch >= 2.5); torch {torch.__version__}"
            )
        for gen in (self.generator, self.agent.generator):
            register(gen)
        with torch.cuda.graph(graph):
            self._step()
        self.graph = graph
        self.captures += 1

    def __call__(self) -> None:
        if self.warmup_left > 0:
            self.side_stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side_stream):
                self._step()
            torch.cuda.current_stream().wait_stream(self.side_stream)
            self.warmup_left -= 1
            return
        key = (len(self.real_buffer), len(self.model_buffer))
        if key != self.key or self.graph is None:
            self._capture()
            self.key = key
        assert self.graph is not None
        self.graph.replay()
