"""CPU threads on a busy machine: each phase at 1 and 2 torch threads, idle and beside busy processes.

Every cell runs in a fresh process (the OpenMP wait policy is read when torch loads its thread
pool), after a warm-up, on a fixed amount of work, so the figures are seconds for the same work:

- ``etm_fit``: quick-preset ETM training steps (InfoNCE with Langevin negatives + Adam), hopper shapes;
- ``ftm_fit``: quick-preset FTM training steps (Gaussian NLL + Adam);
- ``rollout``: quick-preset ETM rollout steps (30 Langevin steps, 5 members) on 2,500 start states;
- ``sac``: the loop's SAC updates (256 x 256 networks, batch 256);
- ``eval``: Hopper-v5 steps with the SAC actor choosing each action (what policy evaluation does).

Loads: idle, and beside 1 or 2 busy processes, each a single-threaded torch matmul loop (what
another ``--threads 1`` run is). Wait policies: torch's default and ``OMP_WAIT_POLICY=PASSIVE``.
Pause other jobs first: the benchmark itself checks nothing about the machine's load.

    python benchmarks/bench_threads.py [--phases etm_fit,sac] [--loads 0,1,2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PHASES = ("etm_fit", "ftm_fit", "rollout", "sac", "eval")
POLICIES = ("default", "passive")
# Work per phase, sized for about 1-4 s each on one idle thread of the 2-core machine.
WORK = {"etm_fit": 3, "ftm_fit": 80, "rollout": 3, "sac": 300, "eval": 12000}


def _worker(phase: str, threads: int) -> dict:
    """Run one phase's fixed work after a warm-up; return seconds and what torch was set to."""
    import torch

    if threads == 0:  # "auto": the commands' default (empo/threads.py)
        from empo.threads import ThreadCounter

        ThreadCounter().update()
    else:
        torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    work = WORK[phase]
    if phase in ("etm_fit", "ftm_fit", "rollout"):
        from empo.models import build_model, load_model_config

        kind = "ftm" if phase == "ftm_fit" else "etm"
        config = load_model_config(kind, "quick")
        model = build_model(kind, 11, 3, "hopper", config)
        if phase == "rollout":
            obs, act = torch.randn(2500, 11, generator=generator), torch.rand(2500, 3, generator=generator) * 2 - 1

            def unit() -> None:
                model.step(obs, act, generator)
        else:
            sub = config.etm if kind == "etm" else config.ftm
            net = model.energy if kind == "etm" else model.net
            optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
            x = torch.randn(sub.ensemble_size, sub.batch_size, 14, generator=generator)
            y = torch.rand(sub.ensemble_size, sub.batch_size, 12, generator=generator) * 2 - 1

            if kind == "etm":
                from empo.models.etm import infonce_loss

                def loss_fn():
                    return infonce_loss(net, x, y, sub, generator)[0]
            else:
                from empo.models.ftm import gaussian_nll_loss

                def loss_fn():
                    return gaussian_nll_loss(net, x, y, sub.logvar_loss_coef)[0]

            def unit() -> None:
                optimizer.zero_grad(set_to_none=True)
                loss_fn().backward()
                optimizer.step()
    elif phase == "sac":
        from empo.agents import SAC, SACConfig
        from empo.loop.buffers import TransitionBuffer

        fill = 20_000
        buffer = TransitionBuffer.from_tensors(
            {
                "observations": torch.randn(fill, 11, generator=generator),
                "actions": torch.rand(fill, 3, generator=generator) * 2 - 1,
                "rewards": torch.randn(fill, generator=generator),
                "next_observations": torch.randn(fill, 11, generator=generator),
                "terminals": torch.zeros(fill),
            },
            torch.device("cpu"),
        )
        agent = SAC(11, 3, SACConfig(), device=torch.device("cpu"), seed=0, total_lr_steps=10)

        def unit() -> None:
            agent.update(buffer.sample(256, generator))
    elif phase == "eval":
        import gymnasium as gym

        from empo.agents import SAC, SACConfig

        agent = SAC(11, 3, SACConfig(), device=torch.device("cpu"), seed=0, total_lr_steps=10)
        env = gym.make("Hopper-v5")
        state = {"obs": env.reset(seed=0)[0]}

        def unit() -> None:
            with torch.no_grad():
                action = agent.act(torch.as_tensor(state["obs"], dtype=torch.float32)[None], deterministic=True)
            obs, _, terminated, truncated, _ = env.step(action[0].numpy())
            state["obs"] = env.reset()[0] if terminated or truncated else obs
    else:
        raise ValueError(f"unknown phase {phase!r}; expected one of {', '.join(PHASES)}")

    for _ in range(max(1, work // 10)):
        unit()
    start = time.perf_counter()
    for _ in range(work):
        unit()
    seconds = time.perf_counter() - start
    return {"phase": phase, "threads": torch.get_num_threads(), "work": work, "seconds": seconds,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "")}


def _busy() -> None:
    """A single-threaded torch matmul loop, until killed."""
    import torch

    torch.set_num_threads(1)
    a = torch.randn(256, 256)
    while True:
        a = torch.tanh(a @ a)


def _run_cell(phase: str, threads: int, policy: str) -> dict:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    env.pop("OMP_NUM_THREADS", None)
    if policy == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    out = subprocess.run(
        [sys.executable, __file__, "--worker", phase, "--threads", str(threads)],
        env=env, capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated subset of " + ", ".join(PHASES))
    parser.add_argument("--loads", default="0,1,2", help="numbers of busy processes beside the measured one")
    parser.add_argument("--policies", default=",".join(POLICIES), help="OpenMP wait policies: default, passive")
    parser.add_argument("--threads-list", default="1,2,auto", help="torch thread counts to measure; auto = the commands' default")
    parser.add_argument("--out", type=Path, help="write a markdown report here (and JSON beside it)")
    parser.add_argument("--append", action="store_true", help="keep the cells already in --out's JSON (new cells win)")
    parser.add_argument("--worker", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--busy", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.busy:
        _busy()
        return 0
    if args.worker:
        print(json.dumps(_worker(args.worker, args.threads)), flush=True)
        return 0

    phases = [p for p in args.phases.split(",") if p]
    loads = [int(n) for n in args.loads.split(",")]
    policies = [p for p in args.policies.split(",") if p]
    thread_counts = [0 if n == "auto" else int(n) for n in args.threads_list.split(",")]
    for name in phases:
        if name not in PHASES:
            parser.error(f"--phases: unknown phase {name!r}; expected some of {', '.join(PHASES)}")
    for name in policies:
        if name not in POLICIES:
            parser.error(f"--policies: unknown policy {name!r}; expected some of {', '.join(POLICIES)}")

    results = []
    for load in loads:
        busy = [subprocess.Popen([sys.executable, __file__, "--busy"]) for _ in range(load)]
        try:
            time.sleep(2.0 if load else 0.0)  # let the busy processes start their loops
            for policy in policies:
                for threads in thread_counts:
                    for phase in phases:
                        cell = _run_cell(phase, threads, policy)
                        cell.update(load=load, policy=policy, setting="auto" if threads == 0 else str(threads))
                        results.append(cell)
                        print(f"load {load} {policy:8s} threads {cell['setting']} ({cell['threads']}) {phase:8s} {cell['seconds']:8.2f} s", flush=True)
        finally:
            for proc in busy:
                proc.kill()
                proc.wait()

    if args.out:
        commands = [f"python benchmarks/bench_threads.py {' '.join(argv if argv is not None else sys.argv[1:])}".strip()]
        if args.append and args.out.with_suffix(".json").is_file():
            old = json.loads(args.out.with_suffix(".json").read_text())
            new_keys = {_key(r) for r in results}
            results = [r for r in old["cells"] if _key(r) not in new_keys] + results
            commands = old["commands"] + commands
        write_report(args.out, results, commands)
    return 0


def _key(cell: dict) -> tuple:
    return cell["phase"], cell["policy"], cell.get("setting", str(cell["threads"])), cell["load"]


def write_report(out: Path, results: list[dict], commands: list[str]) -> None:
    import torch

    from empo.utils import device_name, git_commit

    for cell in results:
        cell.setdefault("setting", str(cell["threads"]))
    idle = {(r["phase"], r["policy"]): r["seconds"] for r in results if r["load"] == 0 and r["setting"] == "1"}
    lines = [
        "# Torch CPU threads on a busy machine",
        "",
        *[f"- command: `{c.split(' --out ')[0]}`" for c in commands],
        f"- device: {device_name('cpu')}, {os.cpu_count()} logical CPUs; torch {torch.__version__}",
        f"- date: {time.strftime('%Y-%m-%d %H:%M')}; commit {git_commit()}",
        "- seconds for a fixed amount of work per phase (see the script's docstring); each cell a fresh process;",
        "  busy = single-threaded torch matmul loops beside it; ratio = seconds / (1 thread, idle, same policy);",
        "  auto = the commands' default (empo/threads.py), with the count it chose in brackets",
        "",
        "| phase | policy | threads | idle s | +1 busy s | +2 busy s | idle ratio | +1 busy ratio | +2 busy ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    order = {"1": 0, "2": 1, "auto": 2}
    keys = sorted({(r["phase"], r["policy"], r["setting"]) for r in results},
                  key=lambda k: (PHASES.index(k[0]), k[1], order.get(k[2], 3)))
    for phase, policy, setting in keys:
        cells = {r["load"]: r for r in results if (r["phase"], r["policy"], r["setting"]) == (phase, policy, setting)}
        base = idle.get((phase, policy))
        secs = [f"{cells[n]['seconds']:.2f}" + (f" ({cells[n]['threads']})" if setting == "auto" else "") if n in cells else ""
                for n in (0, 1, 2)]
        ratios = [f"{cells[n]['seconds'] / base:.2f}" if n in cells and base else "" for n in (0, 1, 2)]
        lines.append(f"| {phase} | {policy} | {setting} | " + " | ".join(secs + ratios) + " |")
    lines.append("")
    out.write_text("\n".join(lines))
    out.with_suffix(".json").write_text(json.dumps({"commands": commands, "cells": results}, indent=1))


if __name__ == "__main__":
    raise SystemExit(main())
