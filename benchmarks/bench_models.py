"""Benchmark the transition models: training speed, rollout throughput, transition error.

    python benchmarks/bench_models.py                 # CPU: reduced sizes (said in the output)
    python benchmarks/bench_models.py --device cuda   # GPU: the paper's sizes

Sections: (1) training time per epoch, ETM vs FTM, on hopper-medium-sized data (the built
dataset if present, else synthetic data of hopper's shapes); (2) rollout-step throughput at
batch 50,000: the 5-member ETM with 30 Langevin steps vs the 7-member FTM; (3) transition error
ETM vs FTM for hopper-medium in and out of distribution, if the datasets are built; (4) the
WallPoint discontinuity, ETM vs FTM near the wall. Prints a table and writes
benchmarks/results/models-<device>.md.
"""

from __future__ import annotations

import argparse
import datetime
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from empo.data.tasks import get_task
from empo.data.transitions import Transitions
from empo.errors import EmpoError
from empo.models import build_model, load_model_config, train_dynamics
from empo.models.etm import infonce_loss
from empo.models.ftm import gaussian_nll_loss
from empo.utils import device_name, git_commit

RESULTS = Path(__file__).resolve().parent / "results"
HOPPER_MEDIUM_SIZE = 1_000_000


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median seconds of ``fn()`` after one warm-up call."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def hopper_data() -> tuple[Transitions | None, str]:
    try:
        from empo.data import load_transitions

        data = load_transitions("hopper-medium")
        return data, f"built hopper-medium dataset ({len(data.qlearning())} transitions)"
    except (EmpoError, ImportError) as exc:
        return None, f"synthetic data of hopper's shapes (obs 11, act 3); hopper-medium not available: {exc}"


def synthetic_hopper(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, 11, generator=gen) * 0.5
    act = torch.rand(n, 3, generator=gen) * 2 - 1
    return obs, act


def bench_training(device: torch.device, full: bool, lines: list[str]) -> list[list[str]]:
    """Seconds per training step (all members together) and per epoch on 1M transitions."""
    n_train = int(HOPPER_MEDIUM_SIZE * 0.9)
    rows = []
    for kind, preset in (("etm", "paper"), ("etm", "quick"), ("ftm", "paper"), ("ftm", "quick")):
        config = load_model_config(kind, preset)
        model = build_model(kind, 11, 3, "hopper", config).to(device)
        sub = config.etm if kind == "etm" else config.ftm
        batch = sub.batch_size
        measured_batch = batch if (full or kind == "ftm" or preset != "paper") else 64
        members = sub.ensemble_size
        gen = torch.Generator(device=device).manual_seed(0)
        x = torch.randn(members, measured_batch, 14, device=device)
        y = torch.rand(members, measured_batch, 12, device=device) * 2 - 1
        if kind == "etm":
            params = list(model.energy.parameters())

            def train_step(model=model, x=x, y=y, cfg=sub, gen=gen, params=params):
                loss, _, _ = infonce_loss(model.energy, x, y, cfg, gen)
                grads = torch.autograd.grad(loss, params)
                return grads
        else:

            def train_step(model=model, x=x, y=y, cfg=sub):
                loss, _ = gaussian_nll_loss(model.net, x, y, cfg.logvar_loss_coef)
                return torch.autograd.grad(loss, list(model.net.parameters()))

        step_s = timed(train_step, device, repeats=2 if kind == "etm" and preset == "paper" else 5)
        step_s *= batch / measured_batch  # linear extrapolation when measured at a reduced batch
        steps = sub.steps_per_epoch or math.ceil(n_train / batch)
        rows.append(
            [
                f"{kind} {preset}",
                f"{members} x {sub.hidden_layers}x{sub.hidden_size}",
                str(batch) + ("" if measured_batch == batch else f" (measured at {measured_batch}, scaled)"),
                f"{step_s:.3f}",
                str(steps),
                f"{step_s * steps / 60:.1f}",
            ]
        )
        print(f"  training {kind} {preset}: {step_s:.3f} s/step", flush=True)
    lines.append(
        "Training step = one optimiser step of all members together; epoch = one pass over the 90% training "
        "split of 1M transitions (paper) or the preset's steps_per_epoch (quick)."
    )
    return rows


def bench_rollout(device: torch.device, batch: int, lines: list[str]) -> list[list[str]]:
    rows = []
    for kind in ("etm", "ftm"):
        config = load_model_config(kind, "paper")
        model = build_model(kind, 11, 3, "hopper", config).to(device).eval()
        model.input_scaler.std.fill_(1.0)
        obs, act = synthetic_hopper(batch)
        obs, act = obs.to(device), act.to(device)
        gen = torch.Generator(device=device).manual_seed(0)
        seconds = timed(lambda model=model, obs=obs, act=act, gen=gen: model.step(obs, act, gen), device, repeats=2)
        members = config.etm.ensemble_size if kind == "etm" else config.ftm.ensemble_size
        detail = f"{members} members, {config.etm.rollout_langevin.steps} Langevin steps" if kind == "etm" else f"{members} members"
        rows.append([kind, detail, str(batch), f"{seconds:.3f}", f"{batch / seconds:,.0f}"])
        print(f"  rollout {kind}: {batch / seconds:,.0f} transitions/s", flush=True)
    return rows


def bench_transition_error(device: torch.device, preset: str, max_samples: int, lines: list[str]) -> list[list[str]] | None:
    from empo.data import LEVELS, load_transitions
    from empo.evaluation.transition_error import transition_error_table

    try:
        own = load_transitions("hopper-medium")
    except EmpoError as exc:
        lines.append(f"Transition error: skipped, hopper-medium is not built ({exc}).")
        print("  transition error: skipped (hopper-medium not built)", flush=True)
        return None
    task = get_task("hopper-medium")
    others = {}
    for level in LEVELS:
        if level != "medium":
            try:
                others[f"hopper-{level}"] = (load_transitions(f"hopper-{level}"), "ood", None)
            except EmpoError:
                lines.append(f"hopper-{level} not built: no out-of-distribution row for it.")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("etm", "ftm"):
            model = train_dynamics(own, task, load_model_config(kind, preset), Path(tmp) / kind, device=device, progress=False)
            datasets = {"hopper-medium": (own, "holdout", model.holdout_index.cpu().numpy()), **others}
            for r in transition_error_table(model, datasets, max_samples=max_samples, max_starts=max_samples // 10):
                rows.append([kind, r.dataset, r.split, r.mode, str(r.horizon), f"{r.next_obs_mse:.4g}", f"{r.reward_mse:.4g}", str(r.n)])
    lines.append(f"Transition error: models trained with the `{preset}` preset; {max_samples} one-step rows per dataset.")
    return rows


def bench_wall(lines: list[str]) -> list[list[str]]:
    """ETM vs FTM next-state MSE near WallPoint's wall (settings of the discontinuity test)."""
    import dataclasses

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_models_discontinuity import ETM_SETTINGS, FTM_SETTINGS

    from empo.envs.wall import make_wall_dataset, near_wall_batch, wall_step, wall_task

    data, task = make_wall_dataset(episodes=3000, seed=0), wall_task()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        etm = train_dynamics(data, task, load_model_config("etm", "smoke", {"etm": ETM_SETTINGS}), Path(tmp) / "e", progress=False)
        ftm = train_dynamics(data, task, load_model_config("ftm", "smoke", {"ftm": FTM_SETTINGS}), Path(tmp) / "f", progress=False)
        single = dataclasses.replace(etm.config.etm.eval_langevin, chains=1, init="zeros")
        for width in (0.05, 0.1, 0.25):
            x, a = near_wall_batch(2000, width=width)
            true_next, _ = wall_step(x, a)
            xs, as_ = torch.as_tensor(x), torch.as_tensor(a)
            errs = []
            for model, sampler in ((etm, None), (etm, single), (ftm, None)):
                if sampler is not None:
                    saved, model.config.etm.eval_langevin = model.config.etm.eval_langevin, sampler
                with torch.no_grad():
                    pred, _ = model.predict(xs, as_, torch.Generator().manual_seed(0))
                if sampler is not None:
                    model.config.etm.eval_langevin = saved
                errs.append(float(np.mean((pred.numpy() - true_next) ** 2)))
            rows.append([f"+-{width}", f"{errs[0]:.4f}", f"{errs[1]:.4f}", f"{errs[2]:.4f}"])
    lines.append(
        "WallPoint: 1-D point reset from the wall at 0.5 to 0 (a jump of 0.5). Next-state MSE for (s, a) whose "
        "proposed position lies within the given distance of the wall. ETM: 1 member, 300 training steps; "
        "inference with 8 uniform-start chains (lowest energy) and with the published single zero-start chain. "
        "FTM: 3 members, early stopping / 20 epochs."
    )
    return rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark ETM vs FTM: training speed, rollout throughput, transition error.")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    parser.add_argument("--rollout-batch", type=int, help="rollout batch (default: 50000 on GPU, 5000 on CPU)")
    parser.add_argument("--eval-preset", default=None, help="preset of the models for the error table (default: quick on GPU, smoke on CPU)")
    parser.add_argument("--eval-samples", type=int, default=None, help="one-step rows per dataset (default: 10000 GPU, 1000 CPU)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--skip-wall", action="store_true", help="skip the WallPoint discontinuity section")
    parser.add_argument("--out", type=Path, help="results file (default: benchmarks/results/models-<device>.md)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device))
    full = device.type == "cuda"
    rollout_batch = args.rollout_batch or (50_000 if full else 5_000)
    preset = args.eval_preset or ("quick" if full else "smoke")
    eval_samples = args.eval_samples or (10_000 if full else 1_000)
    name = device_name(device) + ("" if device.type == "cuda" else f" ({torch.get_num_threads()} torch threads)")
    print(f"device: {name}", flush=True)
    notes: list[str] = []
    _, data_note = hopper_data()
    notes.append(f"Data: {data_note}. Step timings use random inputs of the same shapes.")
    if not full:
        notes.append(
            f"CPU run, reduced sizes: the paper-preset ETM step is measured at batch 64 and scaled linearly to 1024; "
            f"rollout batch {rollout_batch} instead of 50,000; error-table models use the `{preset}` preset."
        )

    started = time.perf_counter()
    train_rows = bench_training(device, full, notes)
    rollout_rows = bench_rollout(device, rollout_batch, notes)
    error_rows = bench_transition_error(device, preset, eval_samples, notes)
    wall_rows = None if args.skip_wall else bench_wall(notes)
    total = time.perf_counter() - started

    sections = [
        "# Transition-model benchmark",
        "",
        f"- command: `python benchmarks/{Path(__file__).name} {' '.join(argv if argv is not None else sys.argv[1:])}`".rstrip(),
        f"- device: {name}",
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- git commit: {git_commit()}",
        f"- torch {torch.__version__}, total benchmark time {total / 60:.1f} min",
        "",
        "## Training time",
        "",
        markdown_table(["model", "members x net", "batch", "s / step", "steps / epoch", "min / epoch"], train_rows),
        "",
        f"## Rollout step throughput (batch {rollout_batch:,})",
        "",
        markdown_table(["model", "setting", "batch", "s / step", "transitions / s"], rollout_rows),
        "",
        "## Transition error, hopper-medium (raw units)",
        "",
    ]
    if error_rows is None:
        sections.append("Skipped: the hopper datasets are not built (`empo-data build hopper-medium`).")
    else:
        sections.append(markdown_table(["model", "dataset", "split", "mode", "h", "next-state MSE", "reward MSE", "n"], error_rows))
    if wall_rows is not None:
        sections += [
            "",
            "## Discontinuity (WallPoint), next-state MSE near the wall",
            "",
            markdown_table(["band", "ETM (8 chains)", "ETM (1 zero-start chain)", "FTM"], wall_rows),
        ]
    sections += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    text = "\n".join(sections) + "\n"
    print()
    print(text)
    out = args.out or RESULTS / f"models-{device.type}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
