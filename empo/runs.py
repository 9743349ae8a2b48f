"""A finished (or interrupted) training run as a Python object, and its policy outside the run.

``load_run(run_dir)`` reads what ``empo-train`` wrote (config.yaml, run.json, summary.json,
progress.csv, checkpoint.pt) and rebuilds the trained actor. ``Run.policy`` is the deterministic
policy (tanh of the Gaussian mean) as a plain ``nn.Module`` on raw observations; ``Run.act``
takes numpy observations. ``export_policy`` writes that module so that a process without empo
can load it and act: with torch alone (torch.export, TorchScript) or with onnxruntime alone (ONNX).
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from empo.config import load_json_object, load_yaml
from empo.errors import EmpoError
from empo.loop.config import TrainConfig, config_from_dict
from empo.loop.trainer import CHECKPOINT


@dataclass
class Run:
    """What one ``empo-train`` run folder holds."""

    run_dir: Path
    config: TrainConfig
    summary: dict[str, Any]
    progress: list[dict[str, str]]
    info: dict[str, Any]
    policy: nn.Module  # obs [B, obs_dim] -> deterministic actions [B, act_dim]
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
    from empo.data.tasks import get_task
    from empo.loop.agents import load_policy

    run_dir = Path(run_dir)
    config_path, checkpoint_path = run_dir / "config.yaml", run_dir / CHECKPOINT
    if not run_dir.is_dir():
        raise EmpoError(f"{run_dir}: no such run folder")
    if not config_path.is_file() or not checkpoint_path.is_file():
        raise EmpoError(f"{run_dir}: not a run folder of empo-train (expected config.yaml and {CHECKPOINT})")
    data = load_yaml(config_path)
    if not data:
        raise EmpoError(f"{config_path}: empty, expected the resolved config of an empo-train run")
    config = config_from_dict(data, where=str(config_path))
    try:
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        agent_state = state["agent"]
        obs_dim, act_dim = int(agent_state["obs_dim"]), int(agent_state["act_dim"])
    except Exception as exc:  # torch.load raises many types for a damaged file; a foreign dict lacks the keys
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EmpoError(f"{checkpoint_path}: cannot read the checkpoint of empo-train: {message}") from None
    try:
        policy = load_policy(config, get_task(config.task), agent_state)
    except (RuntimeError, KeyError, TypeError, AttributeError, ValueError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EmpoError(f"{checkpoint_path}: the actor does not match config.yaml's settings: {message}") from None

    def read_json(name: str) -> dict[str, Any]:
        return load_json_object(run_dir / name, f"the {name} of an empo-train run", missing_ok=True)

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


EXPORT_FORMATS: tuple[str, ...] = ("torch-export", "torchscript", "onnx")
#: the ONNX graph's input and output names: ``session.run(None, {"obs": obs})[0]`` gives the actions
ONNX_INPUT, ONNX_OUTPUT = "obs", "action"


def _require_onnx(modules: tuple[str, ...], purpose: str) -> None:
    """One-line EmpoError naming what to pip install when an optional ONNX package cannot be imported."""
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise EmpoError(f"{purpose} needs {' and '.join(missing)}: pip install {' '.join(missing)} (or pip install 'empo[onnx]')")


@contextlib.contextmanager
def _quiet_onnx_exporter() -> Iterator[None]:
    """torch's ONNX exporter logs and warns about things that do not concern a small MLP
    (e.g. that torchvision's operators are skipped); keep the command's output to its one line."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_policy(run: Run, path: str | Path, fmt: str = "torch-export") -> Path:
    """Write the run's deterministic policy so that a process without empo can load and run it.

    ``torch-export``: a ``torch.export`` program with a dynamic batch size
    (``torch.export.load(path).module()(obs)``); ``torchscript``: ``torch.jit.load(path)(obs)``
    (TorchScript is deprecated in recent torch releases but still loads everywhere); ``onnx``: an
    ONNX model (torch's dynamo exporter) with input ``obs`` [batch, obs_dim] float32 and output
    ``action`` [batch, act_dim], for ``onnxruntime.InferenceSession(path).run(None, {"obs": obs})[0]``;
    it needs onnx, onnxscript and onnxruntime, and is checked with onnxruntime against the policy
    before this returns.
    """
    if fmt not in EXPORT_FORMATS:
        raise EmpoError(f"unknown export format '{fmt}'; valid formats: {', '.join(EXPORT_FORMATS)}")
    if fmt == "onnx":
        _require_onnx(("onnx", "onnxscript", "onnxruntime"), "ONNX export")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # written beside the target under a name of the same suffix (torch.export wants .pt2), checked
    # (ONNX), then renamed into place: an interruption or a failed check leaves no file that reads as a policy
    tmp = path.with_name(f"{path.stem}.tmp{path.suffix}")
    try:
        if fmt == "torchscript":
            torch.jit.script(run.policy).save(str(tmp))
        elif fmt == "onnx":
            _export_onnx(run.policy, run.obs_dim, tmp)
        else:
            from torch.export import Dim, export

            example = torch.zeros(2, run.obs_dim)
            program = export(run.policy, (example,), dynamic_shapes=({0: Dim("batch")},))
            torch.export.save(program, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _export_onnx(policy: nn.Module, obs_dim: int, path: Path) -> None:
    from torch.export import Dim

    try:
        with _quiet_onnx_exporter(), torch.no_grad():
            program = torch.onnx.export(
                policy,
                (torch.zeros(2, obs_dim),),
                dynamo=True,
                dynamic_shapes=({0: Dim("batch")},),
                input_names=[ONNX_INPUT],
                output_names=[ONNX_OUTPUT],
                verbose=False,
            )
            program.save(str(path), external_data=False)  # one self-contained file
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EmpoError(f"{path}: torch's ONNX exporter failed: {first}") from None
    # the file must act as the policy does, in onnxruntime (a wrong graph fails here, not in the user's process)
    obs = torch.randn(64, obs_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = policy(obs).numpy()
    got = OnnxPolicy(path)(obs).numpy()
    gap = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
    if not gap <= 1e-5:
        raise EmpoError(f"{path}: the ONNX model does not reproduce the policy in onnxruntime (largest action difference {gap:.2g})")


class OnnxPolicy(nn.Module):
    """An ONNX file of :func:`export_policy` run by onnxruntime, called like the torch policy:
    float32 tensor [B, obs_dim] -> tensor [B, act_dim] (on the observations' device)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        _require_onnx(("onnxruntime",), f"{path}: an ONNX policy")
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # a small MLP on a handful of observations: one thread, and no spinning beside torch's threads
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EmpoError(f"{path}: not an ONNX policy file of empo-export ({first})") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise EmpoError(f"{path}: an ONNX policy takes one input (observations), this model takes {len(inputs)}")
        self.input_name = inputs[0].name

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(obs.detach().cpu().numpy(), dtype=np.float32)
        action = self.session.run(None, {self.input_name: x})[0]
        return torch.from_numpy(np.asarray(action)).to(obs.device)


@contextlib.contextmanager
def _quiet_torch_export() -> Iterator[None]:
    """torch.export logs warnings of its own when a file is not a .pt2 archive; the command says
    what failed in its one error line instead."""
    loggers = [logging.getLogger(name) for name in ("torch.export", "torch.export.pt2_archive._package")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR + 10)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def load_policy_file(path: str | Path) -> nn.Module:
    """A policy written by :func:`export_policy`, in any of its formats (``.onnx`` files by onnxruntime)."""
    path = Path(path)
    if not path.is_file():
        raise EmpoError(f"{path}: no such policy file")
    if path.suffix.lower() == ".onnx":
        return OnnxPolicy(path)
    errors = []
    try:
        with _quiet_torch_export():
            return torch.export.load(str(path)).module()
    except Exception as exc:  # torch.export raises many types for a file that is not its own
        errors.append(f"torch.export: {exc}")
    try:
        return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:  # so does TorchScript
        errors.append(f"TorchScript: {exc}")
    raise EmpoError(
        f"{path}: not a policy file of empo-export ({'; '.join(e.splitlines()[0] for e in errors)}; ONNX files need the suffix .onnx)"
    )
