"""Denormal weights and CPU speed: how many a fitted model holds, and what they cost a matmul.

Weight decay drives the weights of dead ReLU units towards zero until they are denormal (below
1.2e-38), where x86 arithmetic takes a slow path. empo.threads.flush_denormals (called by every
command, sweep worker, model fit and agent run) makes the CPU read them as zero. This script
counts the denormal entries of every weight of a fit's checkpoint (or model.pt) and times one
batched matmul per 3-D weight, [members, rows, in] x [members, in, out], with the setting off and
on, side by side in one process on one thread.

    python benchmarks/bench_denormals.py --checkpoint ~/.empo/models/<fit>/checkpoint.pt --out benchmarks/results/denormals-cpu.md
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import time
from pathlib import Path

import torch


def model_weights(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a fit's checkpoint.pt; a model.pt is the state dict itself
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()}


def denormal_count(tensor: torch.Tensor) -> int:
    return int(((tensor.abs() < torch.finfo(tensor.dtype).tiny) & (tensor != 0)).sum())


def matmul_ms(weight: torch.Tensor, rows: int, repeats: int, generator: torch.Generator) -> float:
    x = torch.rand(weight.shape[0], rows, weight.shape[1], generator=generator)
    torch.bmm(x, weight)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.bmm(x, weight)
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a fit's checkpoint.pt or model.pt")
    parser.add_argument("--rows", type=int, default=2048, help="rows per member (a Langevin step of 256 x 8 chains)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    args = parser.parse_args()
    if not args.checkpoint.is_file():
        raise SystemExit(f"--checkpoint {args.checkpoint}: no such file (a fit folder's checkpoint.pt or model.pt)")
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    weights = model_weights(args.checkpoint)
    rows = []
    for name, weight in weights.items():
        if weight.dim() != 3 or name.endswith("bias"):
            continue
        torch.set_flush_denormal(False)  # on, the CPU reads denormals as zero and the count would be 0
        count = denormal_count(weight)
        slow = matmul_ms(weight, args.rows, args.repeats, generator)
        torch.set_flush_denormal(True)
        fast = matmul_ms(weight, args.rows, args.repeats, generator)
        rows.append((name, tuple(weight.shape), count, weight.numel(), slow, fast))
        print(f"{name} {tuple(weight.shape)}: {count} denormal of {weight.numel()}; matmul {slow:.2f} ms, flushed {fast:.2f} ms ({slow / fast:.1f}x)")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [
        "# Denormal weights and CPU speed",
        "",
        f"- command: `python benchmarks/bench_denormals.py --checkpoint {args.checkpoint} --rows {args.rows} --repeats {args.repeats}`",
        f"- device: {platform.processor() or platform.machine()}, 1 torch thread, torch {torch.__version__}; "
        f"date {time.strftime('%Y-%m-%d %H:%M')}; commit {commit}",
        f"- one batched matmul per weight, [members, {args.rows}, in] x the weight, mean of {args.repeats}; "
        "'flushed': torch.set_flush_denormal(True), as every empo command now runs",
        "",
        "| weight | shape | denormal entries | matmul (ms) | flushed (ms) | ratio |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {n} | {s} | {c} of {t} | {a:.2f} | {b:.2f} | {a / b:.1f}x |" for n, s, c, t, a, b in rows]
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
