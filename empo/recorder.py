"""One run folder's records: the progress CSV, TensorBoard, the summary and the atomic checkpoint.

Both trainers write through a :class:`RunRecorder` (the agent loop, empo/loop/trainer.py, and the
model fit, empo/models/train.py), so a folder behaves the same whichever wrote it:

- a CSV row per epoch, appended; on resume the rows of epochs after the checkpoint are dropped
  (they are run again);
- TensorBoard scalars under ``tb/`` with the step the caller gives (an update count); on resume
  the events after the checkpoint's step are purged when the writer opens;
- ``summary.json`` and the checkpoint written atomically (a temporary file renamed into place), so
  an interruption never leaves a half-written file that reads as complete.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from empo.errors import EmpoError
from empo.utils import atomic_write, atomic_write_text


class RunRecorder:
    def __init__(self, run_dir: str | Path, csv_name: str, columns: Sequence[str], checkpoint_name: str = "checkpoint.pt") -> None:
        self.run_dir = Path(run_dir)
        self.csv_path = self.run_dir / csv_name
        self.columns = tuple(columns)
        self.checkpoint_path = self.run_dir / checkpoint_name
        self._writer: Any = None
        self._purge_step: int | None = None

    # ------------------------------------------------------------------------------ checkpoint
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        atomic_write(self.checkpoint_path, lambda p: torch.save(state, p))

    def load_checkpoint(self, map_location: str | torch.device = "cpu", weights_only: bool = False) -> dict[str, Any]:
        """The checkpoint's state; an error naming the file when there is none or it cannot be read."""
        path = self.checkpoint_path
        if not path.is_file():
            raise EmpoError(f"{self.run_dir}: no {path.name} to resume from (the run did not finish an epoch)")
        try:
            state = torch.load(path, map_location=map_location, weights_only=weights_only)
        except Exception as exc:
            raise EmpoError(f"{path}: cannot read the checkpoint: {exc}") from None
        if not isinstance(state, dict):
            raise EmpoError(f"{path}: not a checkpoint of this project (expected a dict, got {type(state).__name__})")
        return state

    def resume_after(self, epoch: int, step: int) -> None:
        """Continue after ``epoch`` (TensorBoard step ``step``): drop what was logged later."""
        self._purge_step = step + 1
        if not self.csv_path.is_file():
            return
        with self.csv_path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        # rows of later epochs go; so does a row a kill cut short (its epoch is missing or not a number)
        kept = [row for row in rows if (row.get("epoch") or "").isdigit() and int(row["epoch"]) <= epoch]
        with self.csv_path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(self.columns))
            writer.writeheader()
            writer.writerows(kept)

    # ------------------------------------------------------------------------------------ logs
    def log_row(self, row: dict[str, Any]) -> None:
        """Append one CSV row (the header first in a new file); keys must be the columns."""
        new = not self.csv_path.is_file()
        with self.csv_path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(self.columns))
            if new:
                writer.writeheader()
            writer.writerow(row)

    @property
    def writer(self) -> Any:
        """The TensorBoard writer, opened on first use (purging events after the checkpoint once)."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self._purge_step)
            self._purge_step = None
        return self._writer

    def log_scalars(self, scalars: dict[str, Any], step: int) -> None:
        """TensorBoard scalars ``{tag: value}`` at ``step``; values that are not finite numbers are skipped."""
        for tag, value in scalars.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def log_hparams(self, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
        """TensorBoard's hparams of this run, so that a folder of runs compares them by config.

        Values that are not numbers, strings or booleans are written as strings; metrics that are not
        finite numbers are left out."""
        clean = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()}
        finite = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        self.writer.add_hparams(clean, finite, run_name=".")
        self.writer.flush()

    def write_summary(self, summary: dict[str, Any], name: str = "summary.json") -> None:
        atomic_write_text(self.run_dir / name, json.dumps(summary, indent=2) + "\n")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
