"""CPU time per update of the learn preset's FTM and ETM fits, measured side by side in one process.

    python benchmarks/fit_update_cost.py --tasks hopper-medium walker2d-medium --repeats 2

Issue 35 compares the ETM with the FTM at "equal CPU minutes". Wall-clock fit-minutes on a shared
machine depend on how many jobs ran beside a fit, so the budgets are set in updates from the process
CPU time an update costs (``time.process_time``, one torch thread), with the two model kinds measured
one after the other in the same process, so that both see the same load. Each measurement runs a few
short epochs of the learn preset's fit (the FTM with 400-update epochs, the ETM with its own 40) and
reads the time between the first and the last epoch's end, holdout scoring included.
Writes a markdown table (``--out``, default benchmarks/results/fit-update-cost-cpu.md).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

from empo.data.tasks import get_task
from empo.models.config import load_model_config
from empo.models.train import train_dynamics
from empo.pipeline import prepare_dataset
from empo.utils import git_commit

# the kinds' epochs in the measurement: (overrides, epochs timed, updates per epoch)
SETTINGS = {
    "ftm": ({"ftm": {"steps_per_epoch": 400, "max_updates": None}}, 4, 400),
    "etm": ({"etm": {"early_stop_patience": None}}, 4, 40),
}
# the learn preset's FTM cap: 16 passes of about 3,900 updates (configs/models/learn.yaml)
FTM_UPDATES = 62_400


def seconds_per_update(task_name: str, kind: str, data) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per update of ``kind``'s learn fit on ``task_name``."""
    overrides, epochs, per_epoch = SETTINGS[kind]
    config = load_model_config(kind, "learn", overrides, task=task_name)
    marks: list[tuple[float, float]] = []

    def on_epoch(epoch: int, model) -> bool:
        marks.append((time.process_time(), time.perf_counter()))
        return len(marks) >= epochs

    with tempfile.TemporaryDirectory() as out:
        train_dynamics(data, get_task(task_name), config, Path(out), progress=False, on_epoch=on_epoch)
    updates = (epochs - 1) * per_epoch
    return (marks[-1][0] - marks[0][0]) / updates, (marks[-1][1] - marks[0][1]) / updates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["hopper-medium", "walker2d-medium", "halfcheetah-medium"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/fit-update-cost-cpu.md"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for task_name in args.tasks:
        data = prepare_dataset(task_name, log=lambda *a: None, progress=False)
        for repeat in range(args.repeats):
            ftm_cpu, ftm_wall = seconds_per_update(task_name, "ftm", data)
            etm_cpu, etm_wall = seconds_per_update(task_name, "etm", data)
            rows.append((task_name, repeat, ftm_cpu, ftm_wall, etm_cpu, etm_wall))
            print(
                f"{task_name} #{repeat}: FTM {ftm_cpu * 1e3:.1f} ms CPU ({ftm_wall * 1e3:.1f} wall), "
                f"ETM {etm_cpu * 1e3:.1f} ms CPU ({etm_wall * 1e3:.1f} wall), ratio {etm_cpu / ftm_cpu:.1f}",
                flush=True,
            )
    lines = [
        "# CPU time per update of the learn preset's model fits",
        "",
        f"`python benchmarks/fit_update_cost.py --tasks {' '.join(args.tasks)} --repeats {args.repeats}` "
        f"(commit {git_commit()}, {time.strftime('%Y-%m-%d %H:%M')}, {platform.processor() or platform.machine()}, "
        "1 torch thread). Process CPU time per update, the two kinds measured one after the other in one process; "
        f"the ETM's budget equal to the 16-pass FTM's ({FTM_UPDATES:,} updates) in CPU time is "
        f"{FTM_UPDATES:,} x FTM / ETM updates.",
        "",
        "| task | repeat | FTM ms CPU (wall) | ETM ms CPU (wall) | ETM / FTM | FTM's 16 passes, CPU min | ETM updates at equal CPU | twice |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task_name, repeat, ftm_cpu, ftm_wall, etm_cpu, etm_wall in rows:
        equal = FTM_UPDATES * ftm_cpu / etm_cpu
        lines.append(
            f"| {task_name} | {repeat} | {ftm_cpu * 1e3:.1f} ({ftm_wall * 1e3:.1f}) | {etm_cpu * 1e3:.1f} ({etm_wall * 1e3:.1f}) | "
            f"{etm_cpu / ftm_cpu:.1f} | {FTM_UPDATES * ftm_cpu / 60:.1f} | {equal:,.0f} | {2 * equal:,.0f} |"
        )
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
