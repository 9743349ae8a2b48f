"""Build datasets and record their statistics beside D4RL v2's, with build times.

    python benchmarks/bench_datasets.py hopper-random hopper-medium [--size N] [--skip-build]
        [--behaviour-dir DIR] [--out benchmarks/results/datasets-cpu.md]

"With the shipped policies" a build is collection alone (timed here); "without" it adds the
behaviour-training time, read from the training run's state.json (--behaviour-dir).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

from empo.data import get_task, load_transitions
from empo.data.build import behaviour_root, build_dataset
from empo.data.minari_io import is_built
from empo.utils import device_name, git_commit

# D4RL v2 dataset mean normalised scores as docs/method.md "Normalised score" gives them (others: not published there)
D4RL_V2 = {"hopper-medium": 44.0, "halfcheetah-medium": 41.0, "walker2d-medium": 72.0}


def training_seconds(task_name: str, behaviour_dir: Path | None) -> str:
    task = get_task(task_name)
    if task.level == "random":
        return "-"
    state_file = (behaviour_dir or behaviour_root() / task.env.name) / "state.json"
    if not state_file.is_file():
        return "n/a"
    state = json.loads(state_file.read_text())
    levels = {"medium": ["medium"], "medium-replay": ["medium"], "expert": ["expert"], "medium-expert": ["expert"]}[task.level]
    reached = [state["reached"][lvl] for lvl in levels if lvl in state["reached"]]
    if not reached:
        return "not reached"
    return f"{max(r['wall_seconds'] for r in reached) / 60:.0f} min ({max(r['train_steps'] for r in reached)} SAC steps)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tasks", nargs="+")
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-build", action="store_true", help="only report datasets that are already built")
    parser.add_argument("--behaviour-dir", type=Path, help="behaviour run folder of the env (for policies and timings)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/datasets-cpu.md"))
    args = parser.parse_args()

    rows = []
    for name in args.tasks:
        task = get_task(name)
        build_time = "-"
        if not args.skip_build:
            started = time.time()
            build_dataset(task, size=args.size, seed=args.seed, behaviour_dir=args.behaviour_dir, progress=False)
            build_time = f"{time.time() - started:.0f} s"
        elif not is_built(task.minari_id):
            print(f"{name}: not built, skipped", file=sys.stderr)
            continue
        s = load_transitions(name).summary(task)
        row = (
            f"| {name} | {s['transitions']} | {s['episodes']} | {s['mean_return']:.0f} +- {s['std_return']:.0f} | "
            f"{s['normalized_score']:.1f} | {D4RL_V2.get(name, 'n/a')} | {build_time} | "
            f"{training_seconds(name, args.behaviour_dir)} |"
        )
        print(row)
        rows.append(row)

    header = [
        f"# Datasets built on {device_name()}",
        "",
        f"- command: `python {' '.join(sys.argv)}`",
        f"- date: {date.today().isoformat()}, commit {git_commit()}, {platform.python_version()}",
        "- transitions after D4RL's qlearning semantics (timeout steps dropped); normalised score of the mean episode return;",
        "  build = collection with a ready policy; behaviour training = what building costs without the shipped policy.",
        "",
        "| task | transitions | episodes | return | score | D4RL v2 score | build | behaviour training |",
        "|---|---|---|---|---|---|---|---|",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(header + rows) + "\n")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
