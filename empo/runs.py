"""A finished (or interrupted) training run as a Python object, and its policy outside the run.

``load_run(run_dir)`` reads what ``empo-train`` wrote (config.yaml, run.json, summary.json,
progress.csv, checkpoint.pt) and rebuilds the trained actor. ``Run.policy`` is the deterministic
policy (tanh of the Gaussian mean) as a plain ``nn.Module`` on raw observations; ``Run.act``
takes numpy observations. ``export_policy`` writes that module so that a process without empo
can load it with torch alone and act.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from empo.config import load_yaml
from empo.errors import EmpoError
from empo.loop.config import TrainConfig, config_from_dict
from empo.loop.trainer import CHECKPOINT


class DeterministicPolicy(nn.Module):
    """obs [B, obs_dim] -> tanh(mean) [B, act_dim]: the trained actor's evaluation policy."""

    def __init__(self, trunk: nn.Module, head: nn.Linear, act_dim: int) -> None:
        super().__init__()
        self.trunk, self.head, self.act_dim = trunk, head, act_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.head(self.trunk(obs))[..., : self.act_dim])


@dataclass
class Run:
    """What one ``empo-train`` run folder holds."""

    run_dir: Path
    config: TrainConfig
    summary: dict[str, Any]
    progress: list[dict[str, str]]
    info: dict[str, Any]
    policy: DeterministicPolicy
    epoch: int
    obs_dim: int
    act_dim: int

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions for observations [B, obs_dim] (or one [obs_dim]), as float32 numpy."""
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        single = x.dim() == 1
        out = self.policy(x.unsqueeze(0) if single else x)
        return (out[0] if single else out).numpy()

    def model_dir(self) -> Path | None:
        """The transition model the run used, when it was a trained model (not the simulator)."""
        path = self.info.get("model_dir")
        return Path(path) if path else None


def load_run(run_dir: str | Path) -> Run:
    """Read a run folder of ``empo-train``; errors name the file and what was expected."""
    from empo.agents.sac import SAC

    run_dir = Path(run_dir)
    config_path, checkpoint_path = run_dir / "config.yaml", run_dir / CHECKPOINT
    if not run_dir.is_dir():
        raise EmpoError(f"{run_dir}: no such run folder")
    if not config_path.is_file() or not checkpoint_path.is_file():
        raise EmpoError(f"{run_dir}: not a run folder of empo-train (expected config.yaml and {CHECKPOINT})")
    config = config_from_dict(load_yaml(config_path), where=str(config_path))
    try:
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        agent_state = state["agent"]
    except Exception as exc:
        raise EmpoError(f"{checkpoint_path}: cannot read the checkpoint: {exc}") from None
    obs_dim, act_dim = int(agent_state["obs_dim"]), int(agent_state["act_dim"])
    agent = SAC(obs_dim, act_dim, config.sac, device="cpu", seed=config.seed)
    try:
        agent.actor.load_state_dict(agent_state["actor"])
    except RuntimeError as exc:
        raise EmpoError(f"{checkpoint_path}: the actor does not match config.yaml's sac settings: {exc}") from None
    policy = DeterministicPolicy(agent.actor.trunk, agent.actor.head, act_dim).eval()

    def read_json(name: str) -> dict[str, Any]:
        path = run_dir / name
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise EmpoError(f"{path}: not valid JSON: {exc}") from None

    progress_path = run_dir / "progress.csv"
    progress = list(csv.DictReader(progress_path.open(newline=""))) if progress_path.is_file() else []
    return Run(
        run_dir=run_dir,
        config=config,
        summary=read_json("summary.json"),
        progress=progress,
        info=read_json("run.json"),
        policy=policy,
        epoch=int(state.get("epoch", 0)),
        obs_dim=obs_dim,
        act_dim=act_dim,
    )


EXPORT_FORMATS: tuple[str, ...] = ("torch-export", "torchscript")


def export_policy(run: Run, path: str | Path, fmt: str = "torch-export") -> Path:
    """Write the run's deterministic policy so that torch alone (no empo) can load and run it.

    ``torch-export``: a ``torch.export`` program with a dynamic batch size
    (``torch.export.load(path).module()(obs)``); ``torchscript``: ``torch.jit.load(path)(obs)``
    (TorchScript is deprecated in recent torch releases but still loads everywhere).
    """
    if fmt not in EXPORT_FORMATS:
        raise EmpoError(f"unknown export format '{fmt}'; valid formats: {', '.join(EXPORT_FORMATS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "torchscript":
        torch.jit.script(run.policy).save(str(path))
    else:
        from torch.export import Dim, export

        example = torch.zeros(2, run.obs_dim)
        program = export(run.policy, (example,), dynamic_shapes=({0: Dim("batch")},))
        torch.export.save(program, str(path))
    return path


def load_policy_file(path: str | Path) -> nn.Module:
    """A policy written by :func:`export_policy`, in either format."""
    path = Path(path)
    if not path.is_file():
        raise EmpoError(f"{path}: no such policy file")
    errors = []
    try:
        return torch.export.load(str(path)).module()
    except Exception as exc:
        errors.append(f"torch.export: {exc}")
    try:
        return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:
        errors.append(f"TorchScript: {exc}")
    raise EmpoError(f"{path}: not a policy file of empo-export ({'; '.join(e.splitlines()[0] for e in errors)})")
