"""Every device figure in one run: SAC, the Langevin sampler, the ETM training step, loop epochs.

One entry point for a lent GPU (about 5-7 minutes on one H100/H200 at the paper's shapes), and
the same measurements on a CPU at reduced sizes, so that both are taken by the same code:

    python benchmarks/gpu/bench_gpu.py --profile gpu --out-dir OUT     # the paper's shapes, CUDA
    python benchmarks/gpu/bench_gpu.py --profile cpu --out-dir OUT     # reduced sizes, same rates
    python benchmarks/gpu/bench_gpu.py --cpu-smoke --out-dir OUT       # seconds; tests call this

Sections (each writes its figures into OUT/figures.json as it finishes, so a run cut short
keeps what it measured; OUT/report.md is the table):
  env       device, torch, the card's matmul ceilings (fp32 and TF32) for reference
  sac       SAC updates/s: empo.agents.SAC vs stable-baselines3's SAC (256x256, batch 256)
  langevin  ETM sampler at the paper's net (5 members, 4x200, hopper sizes): 30 noisy steps
            (rollouts) and 100 noiseless steps (evaluation), analytic vs autograd gradient,
            fp32 and TF32: transitions/s, achieved TFLOP/s, peak memory
  etm_train one paper ETM training step (batch x 16 negatives x 50 Langevin steps, InfoNCE +
            gradient penalty, Adam), fp32 and TF32
  loop      wall time per epoch at the paper preset, EMPO vs MOPO side by side (the real Trainer,
            rollouts, 1000 SAC updates, evaluation in Hopper-v5), models fit for 2 steps on
            synthetic hopper data (the cost of a step does not depend on the fit)
  warm      the quick-warm recipe's chains (mean-head start, 10 steps) against the published
            starts at the paper's net: rollout step x an FTM step, ETM training step
  fqe       FQE on a 12-policy suite: one policy at a time against all together in stacked
            weights (256x256 Q with LayerNorm, batch 256): policy-updates/s
  projection what a whole paper-preset run (ETM fit + 3M SAC updates) takes at these rates

Only the timed region is synchronised; medians over repeats after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))  # timers and synthetic data shared with the CPU benchmarks

OBS_DIM, ACT_DIM = 11, 3  # hopper
PAPER_TRAIN_STEPS_PER_EPOCH = 879  # ceil(0.9 * 1M / 1024): one pass over hopper-medium's training split
PAPER_ETM_EPOCHS = 300
PAPER_AGENT_EPOCHS = 3000

# LangevinConfig.gradient values, each timed; "compiled" compiles in its warm-up call
GRADIENTS = ("analytic", "compiled", "autograd")

PROFILES: dict[str, dict[str, Any]] = {
    # the paper's shapes on a GPU
    "gpu": {
        "sac_updates": 3000,
        "langevin_batch": 50_000,
        "langevin_repeats": 5,
        "train_batch": 1024,
        "train_repeats": 5,
        "loop_start_states": 50_000,
        "loop_updates": 1000,
        "loop_epochs": 2,
        "eval_episodes": 10,
        "data_rows": 200_000,
        "ceiling_n": 8192,
        "fit_batch": None,  # the preset's
        "fqe_updates": 2000,
    },
    # reduced sizes for a 2-core CPU; rates per transition / update are comparable
    "cpu": {
        "sac_updates": 500,
        "langevin_batch": 2000,
        "langevin_repeats": 2,
        "train_batch": 32,
        "train_repeats": 2,
        "loop_start_states": 1000,
        "loop_updates": 200,
        "loop_epochs": 2,
        "eval_episodes": 2,
        "data_rows": 50_000,
        "ceiling_n": 2048,
        "fit_batch": 32,
        "fqe_updates": 200,
    },
    # seconds: checks that every section runs
    "smoke": {
        "sac_updates": 5,
        "langevin_batch": 16,
        "langevin_repeats": 1,
        "train_batch": 4,
        "train_repeats": 1,
        "loop_start_states": 16,
        "loop_updates": 5,
        "loop_epochs": 1,
        "eval_episodes": 1,
        "data_rows": 3000,
        "ceiling_n": 256,
        "fit_batch": 8,
        "fqe_updates": 3,
    },
}


def sync(device: torch.device) -> None:
    from bench_models import sync as device_sync

    device_sync(device)


def median_seconds(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Median seconds of ``fn()`` after one warm-up call (bench_models.timed)."""
    from bench_models import timed

    return timed(fn, device, repeats)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return None


def set_tf32(enabled: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


# ------------------------------------------------------------------------------------ sections
def section_env(device: torch.device, prof: dict[str, Any]) -> dict[str, Any]:
    from empo.utils import device_name, git_commit

    out: dict[str, Any] = {
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "git_commit": git_commit() or os.environ.get("EMPO_GIT_COMMIT"),  # the device copy has no .git
        "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    n = out["ceiling_n"] = prof["ceiling_n"]
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, generator=gen)
    b = torch.randn(n, n, device=device, generator=gen)
    for label, tf32 in (("fp32", False), ("tf32", True)):
        if device.type != "cuda" and tf32:
            continue
        set_tf32(tf32)
        seconds = median_seconds(lambda: a @ b, device, repeats=5)
        out[f"matmul_{label}_tflops"] = 2 * n**3 / seconds / 1e12
    set_tf32(False)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        out["gpu_memory_gib"] = props.total_memory / 2**30
        out["multiprocessors"] = props.multi_processor_count
    return out


def section_sac(device: torch.device, prof: dict[str, Any]) -> dict[str, Any]:
    from bench_sac import bench_ours, bench_sb3

    steps = prof["sac_updates"]
    reset_peak(device)
    ours = bench_ours(steps, device)
    ours_peak = peak_gib(device)
    sb3 = bench_sb3(steps, device)
    return {"updates": steps, "ours_updates_per_s": ours, "sb3_updates_per_s": sb3, "ratio": ours / sb3, "ours_peak_gib": ours_peak}


def section_sac_graph(device: torch.device, prof: dict[str, Any]) -> dict[str, Any]:
    """The loop's SAC step (mixed batch + update + metric sums), eager vs one CUDA graph replay."""
    if device.type != "cuda":
        return {"skipped": "CUDA graphs need a CUDA device"}
    from empo.agents import SAC, SACConfig
    from empo.loop.buffers import TransitionBuffer, sample_mixed
    from empo.loop.graphed import GraphedSACStep
    from empo.loop.trainer import UPDATE_METRICS

    fill = 100_000
    gen = torch.Generator().manual_seed(0)
    data = {
        "observations": torch.randn(fill, OBS_DIM, generator=gen),
        "actions": torch.rand(fill, ACT_DIM, generator=gen) * 2 - 1,
        "rewards": torch.randn(fill, generator=gen),
        "next_observations": torch.randn(fill, OBS_DIM, generator=gen),
        "terminals": (torch.rand(fill, generator=gen) < 0.01).float(),
        "penalties": torch.rand(fill, generator=gen),
    }
    real = TransitionBuffer.from_tensors(data, device)
    model = TransitionBuffer.from_tensors(data, device)
    steps = prof["sac_updates"]
    out: dict[str, Any] = {"updates": steps}
    finals = {}
    for mode in ("eager", "graph"):
        agent = SAC(OBS_DIM, ACT_DIM, SACConfig(), device=device, seed=0, total_lr_steps=10, capturable=mode == "graph")
        sample_gen = torch.Generator(device=device).manual_seed(1)
        sums = torch.zeros(len(UPDATE_METRICS), device=device)
        if mode == "graph":
            step = GraphedSACStep(agent, real, model, 256, 0.05, sample_gen, UPDATE_METRICS, sums)
        else:

            def step(agent=agent, sample_gen=sample_gen, sums=sums) -> None:
                metrics = agent.update(sample_mixed(real, model, 256, 0.05, sample_gen))
                sums.add_(torch.stack([metrics[name] for name in UPDATE_METRICS]))

        for _ in range(10):
            step()
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        out[f"{mode}_updates_per_s"] = steps / (time.perf_counter() - start)
        finals[mode] = (sums / (steps + 10)).cpu()
    out["ratio"] = out["graph_updates_per_s"] / out["eager_updates_per_s"]
    out["mean_metrics_eager"] = dict(zip(UPDATE_METRICS, finals["eager"].tolist(), strict=True))
    out["mean_metrics_graph"] = dict(zip(UPDATE_METRICS, finals["graph"].tolist(), strict=True))
    print(f"  sac_graph {out}", flush=True)
    return out


def paper_model(device: torch.device, kind: str = "etm", overrides: dict[str, Any] | None = None) -> Any:
    """A ``kind`` model at the paper preset's sizes (hopper), scalers fit on fixed random data, in eval mode."""
    from empo.models import build_model, load_model_config

    model = build_model(kind, OBS_DIM, ACT_DIM, "hopper", load_model_config(kind, "paper", overrides)).to(device)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4096, OBS_DIM + ACT_DIM, generator=gen)
    y = torch.randn(4096, OBS_DIM + 1, generator=gen) * 0.1
    model.fit_scalers(x.to(device), y.to(device))
    return model.eval()


def etm_training_step(model: Any, x: torch.Tensor, y: torch.Tensor, batch: int, generator: torch.Generator) -> Callable[[], None]:
    """One ETM optimiser step on ``batch`` random rows of (x, y) per member, as a fit's epoch takes it
    (EnsembleTrainer.update), for timing; the trainer lives as long as the returned callable."""
    from empo.models.etm import ETMTrainer
    from empo.models.fitting import DeviceTimer

    trainer = ETMTrainer(model, x, y, x[:0], y[:0], generator)
    timer = DeviceTimer(x.device)

    def step() -> None:
        # the timer's CUDA events are never read (a read would sync the host inside the timed step); a timing
        # run makes a handful of steps
        trainer.update(torch.randint(x.shape[0], (model.members, batch), generator=generator, device=x.device), timer)

    return step


def section_langevin(device: torch.device, prof: dict[str, Any]) -> dict[str, Any]:
    import dataclasses

    from empo.models.energy_grad import langevin_flops_per_step

    model = paper_model(device)
    config = model.config
    batch = prof["langevin_batch"]
    gen = torch.Generator(device=device).manual_seed(1)
    obs = torch.randn(batch, OBS_DIM, device=device, generator=gen) * 0.5
    act = torch.rand(batch, ACT_DIM, device=device, generator=gen) * 2 - 1
    rows: list[dict[str, Any]] = []
    precisions = ("fp32", "tf32") if device.type == "cuda" else ("fp32",)
    for sampler_name in ("rollout_langevin", "eval_langevin"):
        base = getattr(config.etm, sampler_name)
        for gradient in GRADIENTS:
            sampler = dataclasses.replace(base, gradient=gradient)
            for precision in precisions:
                set_tf32(precision == "tf32")
                reset_peak(device)
                seconds = median_seconds(
                    lambda sampler=sampler: model.sample_members(obs, act, sampler, generator=gen),
                    device,
                    prof["langevin_repeats"],
                )
                flops = langevin_flops_per_step(model.energy, model.members * batch) * sampler.steps
                rows.append(
                    {
                        "sampler": sampler_name,
                        "steps": sampler.steps,
                        "gradient": gradient,
                        "precision": precision,
                        "batch": batch,
                        "members": model.members,
                        "seconds": seconds,
                        "transitions_per_s": batch / seconds,
                        "tflops": flops / seconds / 1e12,
                        "peak_gib": peak_gib(device),
                    }
                )
                print(f"  langevin {rows[-1]}", flush=True)
    set_tf32(False)
    # The compiled gradient against the eager one: the noiseless evaluation sampler, fp32, same inputs.
    finals = {
        gradient: model.sample_members(obs, act, dataclasses.replace(config.etm.eval_langevin, gradient=gradient))
        for gradient in ("analytic", "compiled")
    }
    compiled_max_abs_diff = (finals["analytic"] - finals["compiled"]).abs().max().item()
    print(f"  langevin compiled vs analytic, eval sampler fp32: max |diff| {compiled_max_abs_diff:.3g}", flush=True)
    return {"rows": rows, "compiled_max_abs_diff": compiled_max_abs_diff}


def section_etm_train(device: torch.device, prof: dict[str, Any]) -> dict[str, Any]:
    batch = prof["train_batch"]
    rows = []
    precisions = ("fp32", "tf32") if device.type == "cuda" else ("fp32",)
    for gradient in GRADIENTS:
        model = paper_model(device)
        config = model.config
        config.etm.train_langevin.gradient = gradient
        model.train()
        gen = torch.Generator(device=device).manual_seed(2)
        n = 8 * batch
        x = torch.randn(n, OBS_DIM + ACT_DIM, device=device, generator=gen)
        y = (torch.rand(n, OBS_DIM + 1, device=device, generator=gen) * 2 - 1) * model.target_scaler.scale
        one_step = etm_training_step(model, x, y, batch, gen)
        for precision in precisions:
            set_tf32(precision == "tf32")
            reset_peak(device)
            seconds = median_seconds(one_step, device, prof["train_repeats"])
            rows.append(
                {
                    "gradient": gradient,
                    "precision": precision,
                    "batch": batch,
                    "negatives": config.etm.num_negatives,
                    "langevin_steps": config.etm.train_langevin.steps,
                    "seconds_per_step": seconds,
                    "seconds_per_step_at_1024": seconds * 1024 / batch,
                    "peak_gib": peak_gib(device),
                }
            )
            print(f"  etm_train {rows[-1]}", flush=True)
    set_tf32(False)
    return {"rows": rows}


def section_warm(device: torch.device, prof: dict[str, Any]) -> dict[str, Any]:
    """Warm-started chains (the quick-warm model preset's recipe) at the paper's net, against the
    published zero/uniform starts and against an FTM step: sampler transitions/s and the ETM step."""
    import dataclasses

    from empo.models import load_model_config

    warm = load_model_config("etm", "quick-warm").etm
    gen = torch.Generator(device=device).manual_seed(3)
    x = torch.randn(8 * prof["train_batch"], OBS_DIM + ACT_DIM, device=device, generator=gen)
    y = torch.randn(x.shape[0], OBS_DIM + 1, device=device, generator=gen) * 0.1
    # the published chains on the published model; the warm ones need the mean head, which a training step also fits
    models = {"published": paper_model(device), "warm": paper_model(device, "etm", {"etm": {"mean_head": True}})}
    config = models["published"].config
    ftm = paper_model(device, "ftm")
    batch = prof["langevin_batch"]
    obs = torch.randn(batch, OBS_DIM, device=device, generator=gen) * 0.5
    act = torch.rand(batch, ACT_DIM, device=device, generator=gen) * 2 - 1
    precision = "tf32" if device.type == "cuda" else "fp32"
    set_tf32(precision == "tf32")
    published = config.etm.rollout_langevin
    samplers = {
        f"zero start, {published.steps} steps (published)": ("published", published),
        f"mean head, {warm.rollout_langevin.steps} steps (quick-warm)": (
            "warm", dataclasses.replace(published, init="mean_head", steps=warm.rollout_langevin.steps)
        ),
    }
    rows: list[dict[str, Any]] = []
    # a whole model step each (sampling, member pick, penalty), as the rollout engine calls it
    with torch.no_grad():
        ftm_s = median_seconds(lambda: ftm.step(obs, act, generator=gen), device, prof["langevin_repeats"])
    for name, (which, sampler) in samplers.items():
        model = models[which]
        for gradient in ("analytic", "compiled"):
            model.config.etm.rollout_langevin = dataclasses.replace(sampler, gradient=gradient)
            reset_peak(device)
            seconds = median_seconds(lambda model=model: model.step(obs, act, generator=gen), device, prof["langevin_repeats"])
            rows.append(
                {
                    "what": "rollout step",
                    "sampler": name,
                    "gradient": gradient,
                    "precision": precision,
                    "batch": batch,
                    "seconds": seconds,
                    "transitions_per_s": batch / seconds,
                    "x_ftm_step": seconds / ftm_s,
                    "peak_gib": peak_gib(device),
                }
            )
            print(f"  warm {rows[-1]}", flush=True)
    train_batch = prof["train_batch"]
    negatives = {
        f"{config.etm.train_langevin.init} start, {config.etm.train_langevin.steps} steps (published)": ("published", config.etm.train_langevin),
        f"mean head + N(0, {warm.train_langevin.init_noise:g}), {warm.train_langevin.steps} steps (quick-warm)": (
            "warm",
            dataclasses.replace(
                config.etm.train_langevin, init="mean_head", init_noise=warm.train_langevin.init_noise, steps=warm.train_langevin.steps
            ),
        ),
    }
    for name, (which, sampler) in negatives.items():
        model = models[which].train()
        for gradient in ("analytic", "compiled"):
            model.config.etm.train_langevin = dataclasses.replace(sampler, gradient=gradient)
            one_step = etm_training_step(model, x, y, train_batch, torch.Generator(device=device).manual_seed(4))
            reset_peak(device)
            seconds = median_seconds(one_step, device, prof["train_repeats"])
            rows.append(
                {
                    "what": "ETM training step",
                    "sampler": name,
                    "gradient": gradient,
                    "precision": precision,
                    "batch": train_batch,
                    "negatives": config.etm.num_negatives,
                    "seconds": seconds,
                    "seconds_at_1024": seconds * 1024 / train_batch,
                    "peak_gib": peak_gib(device),
                }
            )
            print(f"  warm {rows[-1]}", flush=True)
    set_tf32(False)
    return {"rows": rows, "ftm_step_seconds": ftm_s}


def section_loop(device: torch.device, prof: dict[str, Any]) -> dict[str, Any]:
    import csv

    from bench_loop import synthetic

    from empo.data.tasks import get_task
    from empo.evaluation.policy_eval import PolicyEvaluator
    from empo.loop.config import resolve_config
    from empo.loop.trainer import Trainer
    from empo.models import load_model_config, train_dynamics

    task = get_task("hopper-medium")
    transitions = synthetic(task, prof["data_rows"])
    out: dict[str, Any] = {"data": f"synthetic hopper-shaped transitions ({prof['data_rows']} rows)"}
    # (label, algorithm, preset, runtime options, ETM overrides); the paper preset's sizes come from the profile
    compiled = {"rollout_langevin": {"gradient": "compiled"}}
    variants: list[tuple[str, str, str, dict[str, Any], dict[str, Any]]] = [
        ("empo", "empo", "paper", {}, {}),
        ("mopo", "mopo", "paper", {}, {}),
        ("empo_compiled", "empo", "paper", {}, compiled),
    ]
    if device.type == "cuda":
        variants += [
            ("empo_fp32", "empo", "paper", {"tf32": False}, {}),
            ("empo_graph", "empo", "paper", {"cuda_graph": True}, {}),
            ("empo_graph_compiled", "empo", "paper", {"cuda_graph": True}, compiled),
            ("mopo_graph", "mopo", "paper", {"cuda_graph": True}, {}),
            ("empo_sync_debug", "empo", "paper", {"sync_debug": True}, {}),
            ("empo_quick", "empo", "quick", {}, {}),
            ("empo_quick_graph", "empo", "quick", {"cuda_graph": True}, {}),
        ]
    for label, algo, preset, runtime, etm_overrides in variants:
        overrides: dict[str, Any] = {"training": {"epochs": prof["loop_epochs"]}, "runtime": runtime}
        if preset == "paper":
            overrides["training"].update(steps_per_epoch=prof["loop_updates"], eval_episodes=prof["eval_episodes"])
            overrides["rollout"] = {"start_states": prof["loop_start_states"], "every": prof["loop_updates"]}
        config = resolve_config(task.name, algo, preset, 0, overrides)
        kind = config.algorithm.model_kind
        brief: dict[str, Any] = (
            {"epochs": 1, "steps_per_epoch": 2, "holdout_eval_size": 64} if kind == "etm" else {"max_epochs": 1, "steps_per_epoch": 2}
        )
        if prof["fit_batch"]:
            brief["batch_size"] = prof["fit_batch"]
        if kind == "etm":
            brief.update(etm_overrides)
        model_config = load_model_config(kind, config.model.preset, {kind: brief})
        with tempfile.TemporaryDirectory() as tmp:
            model = train_dynamics(transitions, task, model_config, Path(tmp) / "model", device=device, progress=False)
            evaluator = PolicyEvaluator(task, config.training.eval_episodes, device) if config.training.eval_episodes else None
            dataset = transitions.qlearning().to_tensors(device)
            reset_peak(device)
            trainer = Trainer(config, dataset, model.to(device), Path(tmp) / "run", device, task, evaluator, progress=False)
            try:
                trainer.run()
            except Exception as exc:  # one variant failing (e.g. a host sync under sync_debug) is a finding
                out[label] = {"error": f"{type(exc).__name__}: {exc}"}
                print(f"  loop {label} failed: {out[label]['error']}", flush=True)
                continue
            finally:
                if evaluator is not None:
                    evaluator.close()
                set_tf32(False)
            with (Path(tmp) / "run" / "progress.csv").open() as f:
                last = list(csv.DictReader(f))[-1]
        row = {k: float(last[k]) for k in ("time_rollout", "time_update", "time_eval", "time_epoch", "eval_length", "rollout_mean_length")}
        row.update(
            start_states=config.rollout.start_states,
            horizon=config.algorithm.horizon,
            updates=config.training.steps_per_epoch,
            eval_episodes=config.training.eval_episodes,
            peak_gib=peak_gib(device),
            penalty_at=config.algorithm.penalty_at,
            preset=preset,
            tf32=config.runtime.tf32 and device.type == "cuda",
            cuda_graph=config.runtime.cuda_graph,
            sync_debug=config.runtime.sync_debug,
            final_critic_loss=float(last["critic_loss"]),
            final_q1_mean=float(last["q1_mean"]),
            rollout_gradient=model_config.etm.rollout_langevin.gradient if kind == "etm" else "",
        )
        # an epoch of the paper preset without the evaluation (whose length depends on the policy)
        row["epoch_without_eval_s"] = row["time_rollout"] + row["time_update"]
        out[label] = row
        print(f"  loop {label} {row}", flush=True)
    return out


def projection(figures: dict[str, Any], prof: dict[str, Any]) -> dict[str, Any]:
    """Hours of a whole paper-preset run at the measured rates (fastest measured settings)."""
    out: dict[str, Any] = {}
    train_rows = figures.get("etm_train", {}).get("rows", [])
    loop = figures.get("loop", {})
    if train_rows:
        best = min(train_rows, key=lambda r: r["seconds_per_step_at_1024"])
        step = best["seconds_per_step_at_1024"]
        out["etm_fit_hours"] = step * PAPER_TRAIN_STEPS_PER_EPOCH * PAPER_ETM_EPOCHS / 3600
        out["etm_fit_setting"] = f"{best['gradient']} gradient, {best['precision']}"
    for algo in ("empo", "mopo", "empo_compiled", "empo_graph", "empo_graph_compiled", "mopo_graph"):
        if algo in loop and "error" not in loop[algo]:
            row = loop[algo]
            # scale the measured rollout to 50k start states and the updates to 1000 when the profile was smaller
            rollout_s = row["time_rollout"] * 50_000 / row["start_states"]
            update_s = row["time_update"] * 1000 / row["updates"]
            eval_s = row["time_eval"] * 10 / max(row["eval_episodes"], 1)
            out[f"{algo}_epoch_s"] = rollout_s + update_s
            out[f"{algo}_agent_hours_without_eval"] = (rollout_s + update_s) * PAPER_AGENT_EPOCHS / 3600
            out[f"{algo}_eval_s_measured_policy"] = eval_s
    for label in ("empo_quick", "empo_quick_graph"):
        if label in loop and "error" not in loop[label]:
            # the quick preset's 120 epochs (evaluation of a barely trained policy included)
            out[f"{label}_120_epochs_min"] = loop[label]["time_epoch"] * 120 / 60
    for algo in ("empo", "empo_graph", "empo_graph_compiled"):
        if "etm_fit_hours" in out and f"{algo}_agent_hours_without_eval" in out:
            out[f"{algo}_total_hours_without_eval"] = out["etm_fit_hours"] + out[f"{algo}_agent_hours_without_eval"]
    # a trained hopper policy runs 1000-step episodes: 10 of them an epoch at the measured env rate
    if "empo" in loop and loop["empo"].get("eval_length", 0) > 0 and loop["empo"].get("time_eval", 0) > 0:
        steps = loop["empo"]["eval_length"] * loop["empo"]["eval_episodes"]
        per_env_step = loop["empo"]["time_eval"] / steps
        out["eval_s_per_epoch_at_1000_step_episodes"] = per_env_step * 10_000
        out["eval_hours_3000_epochs_at_1000_step_episodes"] = per_env_step * 10_000 * PAPER_AGENT_EPOCHS / 3600
    return out


# ------------------------------------------------------------------------------------- report
def fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        if not math.isfinite(x):
            return "n/a"
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        return f"{x:.{digits}g}"
    return str(x)


def report(figures: dict[str, Any], command: str, profile: str) -> str:
    env = figures.get("env", {})
    lines = [
        f"# Device benchmark ({profile} profile): {env.get('device_name', '?')}",
        "",
        f"- date: {env.get('date')}",
        f"- git commit: {env.get('git_commit')}",
        f"- device: {env.get('device')} ({env.get('device_name')}), torch {env.get('torch')}, CPU threads {env.get('threads')}",
        f"- command: `{command}`",
        f"- matmul ceiling measured here ({env.get('ceiling_n', '')}): fp32 {fmt(env.get('matmul_fp32_tflops'))} TFLOP/s"
        + (f", TF32 {fmt(env.get('matmul_tf32_tflops'))} TFLOP/s" if "matmul_tf32_tflops" in env else ""),
        "",
    ]
    if "sac" in figures:
        s = figures["sac"]
        lines += [
            "## SAC updates/s (256x256, batch 256, hopper sizes)",
            "",
            "| agent | updates/s |",
            "|---|---|",
            f"| empo.agents.SAC | {fmt(s['ours_updates_per_s'])} |",
            f"| stable-baselines3 SAC | {fmt(s['sb3_updates_per_s'])} |",
            "",
            f"Ratio {s['ratio']:.2f}x over {s['updates']} updates each.",
            "",
        ]
    if "langevin" in figures:
        lines += [
            "## Langevin sampler, paper ETM (5 members, 4x200, hopper: 14 inputs, 12 targets)",
            "",
            "| sampler | steps | gradient | precision | batch | s | transitions/s | TFLOP/s | peak GiB |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in figures["langevin"]["rows"]:
            lines.append(
                f"| {r['sampler']} | {r['steps']} | {r['gradient']} | {r['precision']} | {r['batch']:,} | {fmt(r['seconds'])} | "
                f"{fmt(r['transitions_per_s'])} | {fmt(r['tflops'])} | {fmt(r['peak_gib'])} |"
            )
        if "compiled_max_abs_diff" in figures["langevin"]:
            lines += ["", f"Compiled vs analytic gradient, evaluation sampler in fp32: max |difference| of the "
                      f"samples {figures['langevin']['compiled_max_abs_diff']:.3g} (raw units)."]
        lines.append("")
    if "etm_train" in figures:
        lines += [
            "## Paper ETM training step (x 16 negatives x 50 Langevin steps, InfoNCE + gradient penalty, Adam)",
            "",
            "| gradient (negatives) | precision | batch | s / step | s / step at batch 1024 | peak GiB |",
            "|---|---|---|---|---|---|",
        ]
        for r in figures["etm_train"]["rows"]:
            lines.append(
                f"| {r['gradient']} | {r['precision']} | {r['batch']} | {fmt(r['seconds_per_step'])} | "
                f"{fmt(r['seconds_per_step_at_1024'])} | {fmt(r['peak_gib'])} |"
            )
        lines.append("")
    if "loop" in figures:
        loop = figures["loop"]
        lines += [
            f"## Loop epoch at the paper preset, EMPO vs MOPO ({loop.get('data')}; models fit 2 steps)",
            "",
        ]
        labels = [k for k in loop if isinstance(loop[k], dict)]
        lines += ["| | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
        for key in (
            "start_states",
            "horizon",
            "rollout_mean_length",
            "time_rollout",
            "updates",
            "time_update",
            "eval_episodes",
            "eval_length",
            "time_eval",
            "time_epoch",
            "epoch_without_eval_s",
            "peak_gib",
            "penalty_at",
            "preset",
            "tf32",
            "cuda_graph",
            "sync_debug",
            "rollout_gradient",
            "final_critic_loss",
            "error",
        ):
            lines.append(f"| {key} | " + " | ".join(fmt(loop[label].get(key)) for label in labels) + " |")
        lines.append("")
    if "sac_graph" in figures and "ratio" in figures["sac_graph"]:
        g = figures["sac_graph"]
        lines += [
            "## The loop's SAC step: eager vs one CUDA graph replay (mixed batch + update + metric sums)",
            "",
            "| mode | updates/s |",
            "|---|---|",
            f"| eager | {fmt(g['eager_updates_per_s'])} |",
            f"| CUDA graph | {fmt(g['graph_updates_per_s'])} |",
            "",
            f"Ratio {g['ratio']:.2f}x over {g['updates']} updates. Mean critic loss eager "
            f"{fmt(g['mean_metrics_eager']['critic_loss'])}, graph {fmt(g['mean_metrics_graph']['critic_loss'])}.",
            "",
        ]
    if "warm" in figures:
        w = figures["warm"]
        lines += [
            "## Warm-started chains (quick-warm recipe) at the paper's ETM net, against the published starts",
            "",
            f"A paper FTM step at the same batch: {fmt(w['ftm_step_seconds'])} s.",
            "",
            "| what | chains | gradient | precision | batch | s | transitions/s | x FTM step | s at batch 1024 | peak GiB |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in w["rows"]:
            lines.append(
                f"| {r['what']} | {r['sampler']} | {r['gradient']} | {r['precision']} | {r['batch']:,} | {fmt(r['seconds'])} | "
                f"{fmt(r.get('transitions_per_s'))} | {fmt(r.get('x_ftm_step'))} | {fmt(r.get('seconds_at_1024'))} | {fmt(r['peak_gib'])} |"
            )
        lines.append("")
    if "fqe" in figures and "ratio" in figures["fqe"]:
        f = figures["fqe"]
        lines += [
            f"## FQE: {f['policies']} policies, {f['updates']} updates each, {f['rows']:,} synthetic rows",
            "",
            "| fit | s | policy-updates/s | peak GiB |",
            "|---|---|---|---|",
        ]
        for key in ("one_at_a_time", "together"):
            r = f[key]
            lines.append(f"| {key.replace('_', ' ')} | {fmt(r['seconds'])} | {fmt(r['policy_updates_per_s'])} | {fmt(r['peak_gib'])} |")
        lines += ["", f"Together {f['ratio']:.2f}x as fast.", ""]
    if "projection" in figures and figures["projection"]:
        p = figures["projection"]
        lines += ["## A whole paper-preset run at these rates", "", "| quantity | value |", "|---|---|"]
        for key, value in p.items():
            lines.append(f"| {key} | {fmt(value)} |")
        lines.append("")
    if figures.get("errors"):
        lines += ["## Sections that failed", ""] + [f"- {name}: {err}" for name, err in figures["errors"].items()] + [""]
    return "\n".join(lines)


def section_fqe(device: torch.device, prof: dict[str, Any]) -> dict[str, Any]:
    """FQE's fits of a 12-policy suite on synthetic hopper data, one at a time and together."""
    from bench_loop import synthetic

    from empo.data.tasks import get_task
    from empo.evaluation.ope import FQE, OPEPolicy

    task = get_task("hopper-medium")
    transitions = synthetic(task, prof["data_rows"])
    generator = torch.Generator().manual_seed(0)

    def linear_policy(i: int) -> OPEPolicy:
        weight = (torch.randn(task.obs_dim, task.act_dim, generator=generator) * 0.3).to(device)
        return OPEPolicy(f"linear{i}", lambda obs, weight=weight: torch.tanh(obs.to(device) @ weight), "bench")

    policies = [linear_policy(i) for i in range(12)]
    steps = prof["fqe_updates"]
    out: dict[str, Any] = {"policies": len(policies), "updates": steps, "rows": prof["data_rows"]}
    for label, at_once in (("one_at_a_time", 1), ("together", len(policies))):
        fqe = FQE(transitions, task, steps=steps, device=device, policies_at_once=at_once)
        reset_peak(device)
        sync(device)
        started = time.perf_counter()
        fqe.estimate(policies)
        sync(device)
        seconds = time.perf_counter() - started
        out[label] = {"seconds": seconds, "policy_updates_per_s": steps * len(policies) / seconds, "peak_gib": peak_gib(device)}
    out["ratio"] = out["one_at_a_time"]["seconds"] / out["together"]["seconds"]
    return out


SECTIONS: dict[str, Callable[[torch.device, dict[str, Any]], dict[str, Any]]] = {
    "env": section_env,
    "sac": section_sac,
    "sac_graph": section_sac_graph,
    "langevin": section_langevin,
    "etm_train": section_etm_train,
    "loop": section_loop,
    "warm": section_warm,
    "fqe": section_fqe,
}


def run(profile: str, device: torch.device, out_dir: Path, sections: list[str], command: str) -> dict[str, Any]:
    """Run ``sections`` with ``profile``'s sizes, writing figures.json and report.md into ``out_dir``."""
    prof = PROFILES[profile]
    out_dir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {"profile": profile, "errors": {}, "section_seconds": {}}
    for name in sections:
        started = time.perf_counter()
        print(f"[{name}] ...", flush=True)
        try:
            figures[name] = SECTIONS[name](device, prof)
        except Exception as exc:  # a failing section must not lose the others' figures
            figures["errors"][name] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        figures["section_seconds"][name] = time.perf_counter() - started
        print(f"[{name}] {figures['section_seconds'][name]:.1f} s", flush=True)
        figures["projection"] = projection(figures, prof)
        (out_dir / "figures.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
        (out_dir / "report.md").write_text(report(figures, command, profile))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), help="sizes: gpu (paper shapes), cpu (reduced), smoke")
    parser.add_argument("--cpu-smoke", action="store_true", help="the smoke profile on the CPU (seconds)")
    parser.add_argument("--device", help="torch device (default: cuda for the gpu profile, else cpu)")
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--out-dir", type=Path, required=True, help="where figures.json and report.md go")
    args = parser.parse_args(argv)
    profile = "smoke" if args.cpu_smoke else (args.profile or ("gpu" if torch.cuda.is_available() else "cpu"))
    device = torch.device(args.device or ("cuda" if profile == "gpu" else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda, but torch sees no CUDA device", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    command = "python benchmarks/gpu/bench_gpu.py " + " ".join(sys.argv[1:] if argv is None else argv)
    figures = run(profile, device, args.out_dir, args.sections, command)
    print(report(figures, command, profile))
    return 1 if figures["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
