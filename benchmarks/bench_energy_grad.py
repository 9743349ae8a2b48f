"""CPU benchmark of the ETM's Langevin loop: autograd's dE/dy against the analytic gradient.

    python benchmarks/bench_energy_grad.py [--threads 1] [--batch 5000] [--members 5]
        [--hidden-size 200] [--hidden-layers 4] [--steps 30] [--repeats 3] [--out FILE]

Times, with the given torch threads: (a) a 4096 x 4096 sgemm, the attainable matmul rate;
(b) a rollout-like Langevin loop (hopper shapes: input 14, target 12; one zero-start chain;
the rollout sampler's step rule) taking dE/dy from autograd, and (c) the same loop with
:func:`empo.models.energy_grad.energy_and_grad`. Reports transitions / s (batch / seconds for
the whole loop), GFLOP/s by :func:`langevin_flops_per_step` (matmuls only) and the ratios.
Medians over ``--repeats`` runs after one warm-up run. Prints markdown; writes it to ``--out``
when given.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from empo.models.energy_grad import energy_grad_fn, langevin_flops_per_step
from empo.models.etm import EnergyEnsemble
from empo.utils import device_name, git_commit

INPUT_DIM, TARGET_DIM = 14, 12  # hopper: obs 11 + act 3 -> (Delta s 11, r)
SGEMM_N = 4096
# the rollout sampler's settings (configs/models/paper.yaml, rollout_langevin)
NOISE, STEP_START, STEP_END, STEP_POWER = 0.5, 0.1, 1e-5, 2.0
GRAD_SCALE, GRAD_CLIP, MOVE_CLIP, BOUND = 0.5, 0.5, 0.5, 1.1

GradFn = Callable[[Tensor], Tensor]


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sgemm_gflops(repeats: int) -> float:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(SGEMM_N, SGEMM_N, generator=gen)
    b = torch.randn(SGEMM_N, SGEMM_N, generator=gen)
    c = torch.empty(SGEMM_N, SGEMM_N)
    seconds = median_seconds(lambda: torch.mm(a, b, out=c), repeats)
    return 2 * SGEMM_N**3 / seconds / 1e9


def step_sizes(steps: int) -> list[float]:
    span = max(steps - 1, 1)
    return [(STEP_START - STEP_END) * (1.0 - t / span) ** STEP_POWER + STEP_END for t in range(steps)]


def langevin_loop(grad_fn: GradFn, shape: tuple[int, ...], steps: int, seed: int = 0) -> Tensor:
    """The rollout sampler's update from y = 0, with dE/dy from ``grad_fn``; returns the last y."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.zeros(shape)
    for eta in step_sizes(steps):
        grad = grad_fn(y)
        with torch.no_grad():
            move = GRAD_SCALE * grad.clamp(-GRAD_CLIP, GRAD_CLIP) + NOISE * torch.randn(shape, generator=gen)
            y = (y - (eta * move).clamp(-MOVE_CLIP, MOVE_CLIP)).clamp(-BOUND, BOUND)
    return y


def autograd_grad_fn(net: EnergyEnsemble, code: Tensor) -> GradFn:
    def fn(y: Tensor) -> Tensor:
        with torch.enable_grad():
            y = y.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(net.energy_from_code(code, y).sum(), y)
        return grad

    return fn


def analytic_grad_fn(net: EnergyEnsemble, code: Tensor) -> GradFn:
    fn = energy_grad_fn(net, code)
    return lambda y: fn(y)[1]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--batch", type=int, default=5000, help="inputs (s, a) per loop (default 5000)")
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--hidden-size", type=int, default=200)
    parser.add_argument("--hidden-layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=30, help="Langevin steps per loop (default 30)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure, median taken (default 3)")
    parser.add_argument("--out", type=Path, help="also write the markdown report here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    name = f"{device_name('cpu')} ({torch.get_num_threads()} torch threads)"
    print(f"device: {name}", flush=True)

    sgemm = sgemm_gflops(args.repeats)
    print(f"sgemm {SGEMM_N}: {sgemm:.1f} GFLOP/s", flush=True)

    torch.manual_seed(0)
    net = EnergyEnsemble(args.members, INPUT_DIM, TARGET_DIM, args.hidden_size, args.hidden_layers)
    x = torch.randn(args.batch, INPUT_DIM, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        code = net.encode(x)
    shape = (args.members, args.batch, 1, TARGET_DIM)
    flops = args.steps * langevin_flops_per_step(net, args.members * args.batch)

    results = {}
    finals = {}
    for label, make in (("autograd", autograd_grad_fn), ("analytic", analytic_grad_fn)):
        grad_fn = make(net, code)
        seconds = median_seconds(lambda grad_fn=grad_fn: langevin_loop(grad_fn, shape, args.steps), args.repeats)
        finals[label] = langevin_loop(grad_fn, shape, args.steps)
        results[label] = seconds
        print(f"{label}: {seconds:.3f} s per {args.steps}-step loop", flush=True)
    max_diff = (finals["autograd"] - finals["analytic"]).abs().max().item()

    rows = []
    for label, seconds in results.items():
        gflops = flops / seconds / 1e9
        rows.append([
            label,
            f"{seconds:.3f}",
            f"{args.batch / seconds:,.0f}",
            f"{gflops:.1f}",
            f"{100 * gflops / sgemm:.0f}%",
        ])
    speedup = results["autograd"] / results["analytic"]
    command = " ".join(["python", f"benchmarks/{Path(__file__).name}", *(argv if argv is not None else sys.argv[1:])])
    lines = [
        "# Energy gradient in the Langevin loop: autograd vs analytic (CPU)",
        "",
        f"- command: `{command}`",
        f"- device: {name}",
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- git commit: {git_commit()}",
        f"- torch {torch.__version__}",
        "",
        f"Network: {args.members} members, {args.hidden_layers} ReLU layers x {args.hidden_size}, "
        f"input {INPUT_DIM}, target {TARGET_DIM} (hopper); batch {args.batch:,}, 1 zero-start chain, "
        f"{args.steps} steps; {flops / 1e9:.1f} GFLOP per loop (matmuls only, forward + dE/dy).",
        "",
        f"sgemm {SGEMM_N} x {SGEMM_N}: {sgemm:.1f} GFLOP/s",
        "",
        markdown_table(["dE/dy", "s / loop", "transitions / s", "GFLOP/s", "% of sgemm"], rows),
        "",
        f"Analytic / autograd (transitions / s): {speedup:.2f}x. "
        f"Max |y_autograd - y_analytic| after the loop (same noise): {max_diff:.2e}.",
        "",
        "Notes: medians of the repeats after one warm-up run; the loop includes the noise draws and "
        "the clamped updates; `net.encode` is done once, outside the timing. The parameters require "
        "grad (as in rollouts); autograd differentiates w.r.t. y only.",
    ]
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
