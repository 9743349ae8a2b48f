"""Wall clock per training epoch (rollout + SAC updates + evaluation), EMPO vs MOPO side by side.

For each algorithm: the real transition model (``empo.models``) with the chosen model preset's
architecture and inference settings, fit for a couple of steps only (the cost of a model step
does not depend on how well it is trained), the real Trainer and the real Hopper-v5 evaluation.
The dataset is the task's dataset when one is on disk, else synthetic transitions of the task's
shapes (said in the report). Runs ``--epochs`` epochs and reports the phase times of the last.

    python benchmarks/bench_loop.py [--task hopper-medium] [--preset quick] [--model-preset paper]
                                    [--start-states N] [--epochs 2] [--threads 1] [--out FILE]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from empo.data.tasks import get_task
from empo.data.transitions import Transitions
from empo.errors import EmpoError
from empo.evaluation.policy_eval import PolicyEvaluator
from empo.loop.config import resolve_config
from empo.loop.trainer import Trainer
from empo.models import load_model_config, train_dynamics
from empo.utils import device_name, git_commit

BRIEF_FIT = {"etm": {"epochs": 1, "steps_per_epoch": 2}, "ftm": {"max_epochs": 1, "steps_per_epoch": 2}}


def synthetic(task, n: int, seed: int = 0) -> Transitions:
    rng = np.random.default_rng(seed)
    obs = rng.normal(0, 0.1, (n, task.obs_dim)).astype(np.float32)
    obs[:, 0] += 1.25  # a healthy hopper/walker height
    act = rng.uniform(-1, 1, (n, task.act_dim)).astype(np.float32)
    timeouts = np.zeros(n, np.float32)
    timeouts[999::1000] = 1
    return Transitions(
        observations=obs,
        actions=act,
        rewards=rng.normal(1, 0.1, n).astype(np.float32),
        next_observations=obs + rng.normal(0, 0.01, obs.shape).astype(np.float32),
        terminals=np.zeros(n, np.float32),
        timeouts=timeouts,
        episode_starts=np.arange(0, n, 1000),
        metadata={"source": "synthetic"},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="hopper-medium")
    parser.add_argument("--preset", default="quick", help="loop preset (epochs etc.; only per-epoch settings matter)")
    parser.add_argument("--model-preset", help="model preset (default: the loop preset's)")
    parser.add_argument("--start-states", type=int, help="override rollout.start_states")
    parser.add_argument("--eval-episodes", type=int, help="override training.eval_episodes")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    task = get_task(args.task)
    try:
        from empo.data import load_transitions

        transitions, data_note = load_transitions(task.name), f"the {task.name} dataset"
    except EmpoError:
        transitions, data_note = synthetic(task, 100_000), f"synthetic transitions of {task.name}'s shapes (no dataset on disk)"

    rows = {}
    for algo in ("empo", "mopo"):
        overrides: dict = {"training": {"epochs": args.epochs}}
        if args.start_states:
            overrides["rollout"] = {"start_states": args.start_states}
        if args.eval_episodes is not None:
            overrides["training"]["eval_episodes"] = args.eval_episodes
        config = resolve_config(task.name, algo, args.preset, 0, overrides)
        kind = config.algorithm.model_kind
        model_preset = args.model_preset or config.model.preset
        model_config = load_model_config(kind, model_preset, {kind: BRIEF_FIT[kind]})
        with tempfile.TemporaryDirectory() as tmp:
            model = train_dynamics(transitions, task, model_config, Path(tmp) / "model", device=device, progress=False)
            evaluator = PolicyEvaluator(task, config.training.eval_episodes, device) if config.training.eval_episodes else None
            dataset = transitions.qlearning().to_tensors(device)
            trainer = Trainer(config, dataset, model.to(device), Path(tmp) / "run", device, task, evaluator, progress=False)
            trainer.run()
            with (Path(tmp) / "run" / "progress.csv").open() as f:
                last = list(csv.DictReader(f))[-1]
            if evaluator is not None:
                evaluator.close()
        rows[algo] = {k: float(last[k]) for k in ("time_rollout", "time_update", "time_eval", "time_epoch", "eval_length")}
        rows[algo].update(model_preset=model_preset, start_states=config.rollout.start_states, horizon=config.algorithm.horizon,
                          updates=config.training.steps_per_epoch, episodes=config.training.eval_episodes,
                          rollout_len=float(last["rollout_mean_length"]))
        print(algo, rows[algo], flush=True)

    if args.out:
        commit = git_commit()
        name = device_name(device)
        argv = sys.argv[1:]
        if "--out" in argv:  # the command as run, without the report path
            at = argv.index("--out")
            argv = argv[:at] + argv[at + 2 :]
        cmd = " ".join(["python benchmarks/bench_loop.py", *argv])
        lines = [
            f"# Wall clock per epoch: EMPO vs MOPO ({task.name}, loop preset {args.preset})",
            "",
            f"- date: {time.strftime('%Y-%m-%d %H:%M')}",
            f"- git commit: {commit}",
            f"- device: {device} ({name}), torch threads {args.threads}, torch {torch.__version__}; CPU shared with other jobs",
            f"- command: `{cmd}`",
            f"- data: {data_note}; models fit for 2 steps only (inference cost is what is timed)",
            f"- figures: the last of {args.epochs} epochs, seconds",
            "",
            "| | EMPO (ETM) | MOPO (FTM) |",
            "|---|---|---|",
        ]
        for key, label in (
            ("model_preset", "model preset"),
            ("start_states", "rollout start states"),
            ("horizon", "horizon"),
            ("rollout_len", "mean rollout length"),
            ("time_rollout", "rollout s"),
            ("updates", "SAC updates"),
            ("time_update", "updates s"),
            ("episodes", "eval episodes"),
            ("eval_length", "mean eval episode length"),
            ("time_eval", "evaluation s"),
            ("time_epoch", "**epoch s**"),
        ):
            a, b = rows["empo"][key], rows["mopo"][key]
            fmt = (lambda x: f"{x:.2f}") if isinstance(a, float) else str
            lines.append(f"| {label} | {fmt(a)} | {fmt(b)} |")
        lines.append("")
        args.out.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
