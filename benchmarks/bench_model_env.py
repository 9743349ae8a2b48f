"""ModelEnv throughput: env steps per second (num_envs x vector steps / s) for the ETM and the FTM.

The models are the task's trained quick-preset models when they are on disk (``--models-dir``,
default ``~/.empo/fidelity/<task>``: ``etm-quick-mean-s0`` and ``ftm-quick-s0``), else quick-preset
models fit for two steps on synthetic data (a step's cost does not depend on how well the model is
trained). Start states come from the task's dataset when it is on disk, else from synthetic data.
Each cell: one untimed step, then steps until ``--seconds`` have passed (at least
``--min-steps``), with fixed uniform random actions. The "SB3 adapter" column steps the same env
through ``empo.integrations.sb3.SB3ModelVecEnv`` (its per-env info dicts included). The rows of
model "NONE" (a model whose step costs nothing) time ModelEnv's own work: start-state draws, the
termination rule and the host copies.

    python benchmarks/bench_model_env.py [--task hopper-medium] [--envs 1 64 4096] [--seconds 3]
                                         [--threads 1] [--device cpu] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from empo.data.tasks import get_task
from empo.envs.model_env import ModelEnv
from empo.errors import EmpoError
from empo.integrations.sb3 import SB3ModelVecEnv
from empo.models import StepResult, load_dynamics, load_model_config, train_dynamics
from empo.utils import device_name, git_commit

sys.path.insert(0, str(Path(__file__).parent))
from bench_loop import BRIEF_FIT, synthetic  # noqa: E402

TRAINED = {"etm": "etm-quick-mean-s0", "ftm": "ftm-quick-s0"}


class StillModel:
    """A model that costs nothing (the state stays, reward 0): its rows time ModelEnv's own work."""

    kind = "none"

    def __init__(self, task, device) -> None:
        self.obs_dim, self.act_dim, self.device = task.obs_dim, task.act_dim, torch.device(device)

    def step(self, obs, act, generator=None) -> StepResult:
        zeros = torch.zeros(obs.shape[0], device=obs.device)
        return StepResult(obs, zeros, zeros.bool(), zeros)

    def predict(self, obs, act, generator=None):
        return obs, torch.zeros(obs.shape[0], device=obs.device)


def load_or_fit(kind, task, models_dir: Path, device, tmp: Path):
    model_dir = models_dir / TRAINED[kind]
    if (model_dir / "model.json").is_file():
        shown = str(model_dir).replace(str(Path.home()), "~", 1)
        return load_dynamics(model_dir, task, device=device), f"trained `{shown}`"
    config = load_model_config(kind, "quick", BRIEF_FIT[kind])
    model = train_dynamics(synthetic(task, 20_000), task, config, tmp / kind, device=device, progress=False)
    return model.eval(), "quick preset fit for 2 steps on synthetic data"


def time_steps(step, actions: np.ndarray, seconds: float, min_steps: int) -> tuple[int, float]:
    step(actions)  # untimed: first-call allocations
    steps, start = 0, time.perf_counter()
    while True:
        step(actions)
        steps += 1
        elapsed = time.perf_counter() - start
        if steps >= min_steps and elapsed >= seconds:
            return steps, elapsed


def command(argv: list[str]) -> str:
    """The command as run, without the report path."""
    if "--out" in argv:
        at = argv.index("--out")
        argv = argv[:at] + argv[at + 2 :]
    return " ".join(["python benchmarks/bench_model_env.py", *argv])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="hopper-medium")
    parser.add_argument("--models-dir", type=Path, help="folder holding etm-quick-mean-s0/ and ftm-quick-s0/")
    parser.add_argument("--envs", type=int, nargs="+", default=[1, 64, 4096])
    parser.add_argument("--horizon", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum timed seconds per cell")
    parser.add_argument("--min-steps", type=int, default=3, help="minimum timed vector steps per cell")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    task = get_task(args.task)
    models_dir = args.models_dir or Path(os.environ.get("EMPO_HOME", Path.home() / ".empo")) / "fidelity" / task.name
    try:
        from empo.data import load_transitions

        data, data_note = load_transitions(task.name), f"the {task.name} dataset's observations"
    except EmpoError:
        data, data_note = synthetic(task, 100_000), f"synthetic observations of {task.name}'s shapes (no dataset on disk)"

    rows, notes = [], {}
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("etm", "ftm", "none"):
            if kind == "none":
                model = StillModel(task, args.device)
            else:
                model, notes[kind] = load_or_fit(kind, task, models_dir, args.device, Path(tmp))
            for n in args.envs:
                actions = rng.uniform(-1, 1, (n, task.act_dim)).astype(np.float32)
                env = ModelEnv(model, task, data, num_envs=n, horizon=args.horizon, seed=0)
                env.reset()
                steps, elapsed = time_steps(env.step, actions, args.seconds, args.min_steps)
                venv = SB3ModelVecEnv(env)
                venv.reset()
                sb3_steps, sb3_elapsed = time_steps(venv.step, actions, args.seconds, args.min_steps)
                row = (kind.upper(), n, 1000 * elapsed / steps, n * steps / elapsed, n * sb3_steps / sb3_elapsed)
                rows.append(row)
                print("{} envs={} vector step {:.2f} ms, {:.0f} env steps/s, via SB3 {:.0f}".format(*row), flush=True)

    lines = [
        f"# ModelEnv throughput ({task.name}, quick-preset models)",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M')}",
        f"- git commit: {git_commit()}",
        f"- device: {args.device} ({device_name(args.device)}), torch threads {args.threads}, torch {torch.__version__}; "
        f"load average {os.getloadavg()[0]:.1f} at the end (CPU shared with other jobs)",
        f"- command: `{command(argv if argv is not None else sys.argv[1:])}`",
        f"- models: ETM {notes['etm']}; FTM {notes['ftm']}; NONE: a model that costs nothing (ModelEnv's own work)",
        f"- start states: {data_note}; horizon {args.horizon}; actions uniform in [-1, 1]",
        f"- each cell: at least {args.seconds:g} s and {args.min_steps} vector steps after one untimed step",
        "",
        "| model | envs | ms per vector step | env steps/s (ModelEnv) | env steps/s (SB3 adapter) |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {k} | {n:,} | {ms:.2f} | {sps:,.0f} | {sb3:,.0f} |" for k, n, ms, sps, sb3 in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
