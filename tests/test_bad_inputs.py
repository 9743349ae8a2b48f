"""Every bad input to every command ends in one line (issue 18).

Each case runs a command's ``main(argv)`` in this process on tiny data (a 600-row hopper D4RL file,
smoke models and a smoke agent run, made once for the module; a case damages its own copies) and
checks that it ends with exit status 2, exactly one ``error: ...`` line on stderr that names the
option, file or key at fault and what was expected, no traceback, and nothing written or changed
on disk (a snapshot of the case's folder and of the data roots, before and after).

The cases are grouped by kind (``KINDS``): values of numeric options and config keys, devices that
do not exist here, paths, damaged files of every kind the project reads, and files of the wrong
kind. ``test_every_numeric_option_is_tried`` checks that each numeric option of every parser has
its cases, so that an option added later without them fails the suite.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import empo.cli.data as data_cli
import empo.cli.evaluate as eval_cli
import empo.cli.export as export_cli
import empo.cli.model as model_cli
import empo.cli.ope as ope_cli
import empo.cli.report as report_cli
import empo.cli.sweep as sweep_cli
import empo.cli.train as train_cli
from tests.test_loop_support import synthetic_transitions

PROGRAMS: dict[str, Callable[[list[str] | None], int]] = {
    "empo-data": data_cli.main,
    "empo-model": model_cli.main,
    "empo-train": train_cli.main,
    "empo-eval": eval_cli.main,
    "empo-export": export_cli.main,
    "empo-ope": ope_cli.main,
    "empo-sweep": sweep_cli.main,
    "empo-report": report_cli.main,
}
PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "empo-data": data_cli.build_parser,
    "empo-model": model_cli.build_parser,
    "empo-train": train_cli.build_parser,
    "empo-eval": eval_cli.build_parser,
    "empo-export": export_cli.build_parser,
    "empo-ope": ope_cli.build_parser,
    "empo-sweep": sweep_cli.build_parser,
    "empo-report": report_cli.build_parser,
}
KINDS = ("value", "device", "path", "damaged", "wrong-kind")
#: lines a command may print on stderr before its error line (what it is about to do)
INFO_PREFIXES = ("threads: ",)
NOBODY = 65534


# ------------------------------------------------------------------------------------ the artifacts
def write_d4rl_file(path: Path, n: int = 600, obs_dim: int = 11, act_dim: int = 3, **override) -> Path:
    """A D4RL hdf5 file of ``n`` hopper-like steps (episodes of 50 steps cut by timeouts)."""
    data = synthetic_transitions(n=n, obs_dim=obs_dim, act_dim=act_dim)
    arrays = {
        "observations": data.observations,
        "actions": data.actions,
        "rewards": data.rewards,
        "next_observations": data.next_observations,
        "terminals": data.terminals.astype(bool),
        "timeouts": data.timeouts.astype(bool),
    }
    arrays.update(override)
    with h5py.File(path, "w") as handle:
        for key, value in arrays.items():
            if value is not None:
                handle.create_dataset(key, data=value)
    return path


def _episodes(n_episodes: int = 4, steps: int = 30, obs_dim: int = 11, act_dim: int = 3) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n_episodes):
        out.append({
            "observations": rng.normal(size=(steps + 1, obs_dim)),
            "actions": rng.uniform(-1, 1, size=(steps, act_dim)).astype(np.float32),
            "rewards": rng.normal(size=steps),
            "terminations": np.zeros(steps, dtype=bool),
            "truncations": np.eye(1, steps, steps - 1, dtype=bool)[0],
        })
    return out


MINARI_ID = "test/hopper/tiny-v0"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    """A hopper and a walker D4RL file, FTM and ETM smoke models, a smoke MOPO run, its exported
    policy, and a tiny Minari dataset: what the cases damage copies of (about 10 s)."""
    from empo.data import get_task
    from empo.data.minari_io import write_minari

    root = tmp_path_factory.mktemp("artifacts")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(root / "minari"))
        patch.setenv("D4RL_DATASET_DIR", str(root / "d4rl"))
        patch.setenv("EMPO_HOME", str(root / "empo_home"))
        patch.setenv("EMPO_THREADS", "1")
        patch.chdir(root)
        hopper = write_d4rl_file(root / "hopper.hdf5")
        walker = write_d4rl_file(root / "walker.hdf5", obs_dim=17, act_dim=6)
        model_args = ["--preset", "smoke", "--device", "cpu", "--no-progress"]
        for kind in ("ftm", "etm"):
            assert model_cli.main(["train", "--task", "hopper-medium", "--model", kind, "--d4rl-path", str(hopper),
                                   "--out", str(root / kind), *model_args]) == 0
        assert model_cli.main(["train", "--task", "walker2d-medium", "--model", "ftm", "--d4rl-path", str(walker),
                               "--out", str(root / "walker-ftm"), *model_args]) == 0
        assert train_cli.main(["--task", "hopper-medium", "--algo", "mopo", "--preset", "smoke", "--d4rl-path", str(hopper),
                               "--model-dir", str(root / "ftm"), "--run-dir", str(root / "run"), "--device", "cpu",
                               "--no-progress"]) == 0
        assert export_cli.main([str(root / "run"), "--out", str(root / "policy.pt2")]) == 0
        write_minari(MINARI_ID, _episodes(), get_task("hopper-medium"), "test", "a tiny dataset for the bad-input suite")
    return root


class Workspace:
    """One case's folder: copies of the artifacts made on demand, and files written into it."""

    def __init__(self, root: Path, artifacts: Path, minari_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root, self.artifacts, self.minari_root, self.monkeypatch = root, artifacts, minari_root, monkeypatch

    def __getitem__(self, name: str) -> Path:
        """A copy of the artifact ``name`` (a file or folder), made on first use."""
        target = self.root / name
        if not target.exists():
            source = self.artifacts / name
            if source.is_dir():
                shutil.copytree(source, target)
            else:
                shutil.copy2(source, target)
        return target

    def original(self, name: str) -> str:
        """The path of this case's copy of the artifact ``name`` (every case works on copies: a user
        without rights on the shared artifacts must reach them too)."""
        return str(self[name])

    def setenv(self, name: str, value: str) -> None:
        self.monkeypatch.setenv(name, value)

    def file(self, name: str, content: bytes | str = b"") -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def folder(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def minari(self) -> Path:
        """The tiny Minari dataset, copied into this case's Minari root; its folder."""
        target = self.minari_root / MINARI_ID
        if not target.exists():
            shutil.copytree(self.artifacts / "minari", self.minari_root, dirs_exist_ok=True)
        return target


def zero(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def garbage(path: Path, size: int = 4096) -> Path:
    path.write_bytes(np.random.default_rng(7).integers(0, 256, size=size, dtype=np.uint8).tobytes())
    return path


def edit_json(path: Path, **changes) -> Path:
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is DELETE:
            data.pop(key)
        else:
            data[key] = value
    path.write_text(json.dumps(data))
    return path


DELETE = object()


# ------------------------------------------------------------------------------------ the cases
@dataclass(frozen=True)
class Case:
    kind: str  # one of KINDS
    command: str  # "empo-data build", "empo-train", ...
    name: str
    argv: Callable[[Workspace], list[str]]  # the full argv of the program; may damage files in the workspace first
    expect: tuple[str, ...]  # strings the error line must contain (the option, file or key, and what was expected)
    unreadable: bool = False  # run as an unprivileged user (root reads every file); the argv made the file mode 000

    @property
    def program(self) -> str:
        return self.command.split()[0]

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.command.replace(' ', '-')}:{self.name}"


CASES: list[Case] = []


def case(kind: str, command: str, name: str, argv: Callable[[Workspace], list[str]], *expect: str, unreadable: bool = False) -> None:
    assert kind in KINDS
    CASES.append(Case(kind, command, name, argv, tuple(expect), unreadable))


# numbers that no numeric option takes, and the options that take zero
BAD_NUMBERS = {"word": "abc", "negative": "-5", "zero": "0", "huge": str(10**30), "nan": "nan", "fraction": "2.5"}


def numeric_cases(command: str, option: str, base: Callable[[Workspace], list[str]], zero_ok: bool = False,
                  huge_ok: bool = False) -> None:
    """The bad numbers of BAD_NUMBERS given to ``option`` (appended to the base argv); ``zero_ok`` and
    ``huge_ok`` leave out the values that the option takes (a seed of 0; a cap such as --max-samples)."""
    NUMERIC_COVERED.add((command, option))
    for label, text in BAD_NUMBERS.items():
        if (label == "zero" and zero_ok) or (label == "huge" and huge_ok):
            continue
        case("value", command, f"{option}={label}", lambda ws, base=base, text=text: [*base(ws), option, text],
             option, text, "expected")


NUMERIC_COVERED: set[tuple[str, str]] = set()

# ---- empo-data
BUILD = lambda ws: ["build", "hopper-random", "--no-progress", "--size", "50"]  # noqa: E731
for opt in ("--size", "--seed", "--envs"):
    numeric_cases("empo-data build", opt, BUILD, zero_ok=opt == "--seed")
TRAIN_BEHAVIOUR = lambda ws: ["train-behaviour", "hopper-medium", "--out", str(ws.root / "behaviour"), "--max-steps", "10000"]  # noqa: E731
for opt in ("--seed", "--max-steps", "--eval-every", "--confirm-episodes", "--suite-every", "--checkpoint-every", "--threads"):
    numeric_cases("empo-data train-behaviour", opt, TRAIN_BEHAVIOUR, zero_ok=opt in ("--seed", "--confirm-episodes", "--suite-every"))
SUITE = lambda ws: ["suite", "halfcheetah", "--from", str(ws.root / "behaviour"), "--out", str(ws.root / "suites")]  # noqa: E731
for opt in ("--count", "--episodes", "--seed"):
    numeric_cases("empo-data suite", opt, SUITE, zero_ok=opt == "--seed")
case("value", "empo-data suite", "unknown-env", lambda ws: ["suite", "ant", "--from", str(ws.root)], "ant", "invalid choice")
case("path", "empo-data suite", "--from-missing", lambda ws: ["suite", "halfcheetah", "--from", str(ws.root / "nothing")],
     "--from", "nothing", "no such folder")
case("path", "empo-data suite", "--from-without-actors",
     lambda ws: ["suite", "halfcheetah", "--from", str(ws.folder("empty")), "--out", str(ws.root / "suites")],
     "empty", "a suite needs at least 2")
case("path", "empo-data suite", "--out-a-file",
     lambda ws: ["suite", "halfcheetah", "--out", str(ws.file("a-file", b"x"))], "--out", "a-file", "expected a folder")
case("path", "empo-data suite", "no-suite-to-recompute", lambda ws: ["suite", "walker2d", "--out", str(ws.folder("suites"))],
     "no policy suite for walker2d", "empo-data suite walker2d --from DIR")
case("value", "empo-data train-behaviour", "suite-every-not-a-multiple",
     lambda ws: [*TRAIN_BEHAVIOUR(ws), "--eval-every", "1000", "--suite-every", "1500"], "--suite-every", "multiple of --eval-every")
case("value", "empo-data train-behaviour", "random-level", lambda ws: ["train-behaviour", "hopper-random"], "hopper-random",
     "no behaviour policy")
case("value", "empo-data build", "misspelt-task", lambda ws: ["build", "hopper-meduim"], "hopper-meduim", "did you mean")
case("value", "empo-data build", "two-tasks", lambda ws: ["build", "hopper-random", "--task", "walker2d-random"], "two different tasks")
case("value", "empo-data build", "no-task", lambda ws: ["build"], "give the task")
case("value", "empo-data", "no-command", lambda ws: [], "empo-data", "required")
case("value", "empo-data", "unknown-command", lambda ws: ["frobnicate"], "frobnicate", "invalid choice")
case("value", "empo-data list", "unknown-option", lambda ws: ["list", "--bogus"], "--bogus", "unrecognized")
case("value", "empo-data info", "misspelt-task", lambda ws: ["info", "hoper-medium"], "hoper-medium", "valid tasks")
case("value", "empo-data info", "both-sources", lambda ws: ["info", "hopper-medium", "--d4rl-path", "x", "--minari-id", "y"],
     "--minari-id", "not allowed with")

# ---- empo-model
def model_train(ws: Workspace, *extra: str, kind: str = "ftm") -> list[str]:
    return ["train", "--task", "hopper-medium", "--model", kind, "--preset", "smoke", "--d4rl-path", ws.original("hopper.hdf5"),
            "--device", "cpu", "--no-progress", "--out", str(ws.root / "model"), *extra]


def model_eval(ws: Workspace, *extra: str, model: str = "ftm") -> list[str]:
    return ["eval", "--model-dir", str(ws[model]), "--d4rl-path", ws.original("hopper.hdf5"), "--device", "cpu",
            "--horizons", "1", *extra]


for opt in ("--seed", "--threads"):
    numeric_cases("empo-model train", opt, model_train, zero_ok=opt == "--seed")
for opt in ("--horizons", "--max-samples", "--max-starts", "--batch-size", "--seed", "--threads"):
    base = model_eval if opt != "--horizons" else (lambda ws: [a for a in model_eval(ws) if a not in ("--horizons", "1")])
    numeric_cases("empo-model eval", opt, base, zero_ok=opt == "--seed", huge_ok=opt in ("--max-samples", "--max-starts"))
MODEL_KEYS = {  # config key -> is it an integer (else a float)
    "ftm.max_epochs": True, "ftm.batch_size": True, "ftm.ensemble_size": True, "ftm.hidden_size": True,
    "ftm.early_stop_patience": True, "ftm.lr": False, "ftm.holdout_fraction": False,
    "etm.epochs": True, "etm.num_negatives": True, "etm.hidden_layers": True, "etm.holdout_eval_size": True,
    "etm.lr": False, "etm.temperature": False, "etm.train_langevin.steps": True, "etm.train_langevin.noise": False,
}
BAD_VALUES = {"word": "abc", "negative": "-5", "zero": "0", "huge-int": str(10**30), "huge-float": "1e999", "nan": ".nan"}
ZERO_OK = {"etm.train_langevin.steps", "etm.train_langevin.noise", "ftm.holdout_fraction"}


def key_cases(command: str, base: Callable[..., list[str]], keys: dict[str, bool], zero_ok: set[str], **kwargs) -> None:
    for key, integer in keys.items():
        for label, text in BAD_VALUES.items():
            if (label == "zero" and key in zero_ok) or (label == "huge-float" and integer) or (label == "huge-int" and not integer):
                continue
            expect = "integer" if integer and label in ("word", "huge-float", "nan", "huge-int") else ""
            leaf = key.rsplit(".", 1)[-1]
            case("value", command, f"--set {key}={label}", lambda ws, key=key, text=text: base(ws, "--set", f"{key}={text}", **kwargs),
                 leaf, *([expect] if expect else []))


key_cases("empo-model train", model_train, {k: v for k, v in MODEL_KEYS.items() if k.startswith("ftm")}, ZERO_OK)
key_cases("empo-model train", model_train, {k: v for k, v in MODEL_KEYS.items() if k.startswith("etm")}, ZERO_OK, kind="etm")
case("value", "empo-model train", "--set-without-equals", lambda ws: model_train(ws, "--set", "ftm.lr"), "ftm.lr", "KEY=VALUE")
case("value", "empo-model train", "--set-unknown-key", lambda ws: model_train(ws, "--set", "ftm.lrr=1"), "lrr", "did you mean")
case("value", "empo-model train", "--model-unknown", lambda ws: model_train(ws, kind="xtm"), "--model", "invalid choice")
case("value", "empo-model train", "no-task", lambda ws: ["train", "--model", "etm"], "--task")
case("value", "empo-model eval", "no-model-dir", lambda ws: ["eval"], "--model-dir", "required")
case("value", "empo-model eval", "ood-task-of-another-env", lambda ws: model_eval(ws, "--task", "walker2d-medium"),
     "walker2d-medium", "sizes differ")

# ---- empo-train
def agent_train(ws: Workspace, *extra: str, algo: str = "mopo", model: str | None = "ftm") -> list[str]:
    model_args = ["--model-dir", ws.original(model)] if model else []
    return ["--task", "hopper-medium", "--algo", algo, "--preset", "smoke", "--d4rl-path", ws.original("hopper.hdf5"),
            *model_args, "--device", "cpu", "--no-progress", "--run-dir", str(ws.root / "agent"), *extra]


for opt in ("--seed", "--stop-after", "--threads"):
    numeric_cases("empo-train", opt, agent_train, zero_ok=opt == "--seed", huge_ok=opt == "--stop-after")
TRAIN_KEYS = {
    "training.epochs": True, "training.steps_per_epoch": True, "training.batch_size": True, "training.eval_episodes": True,
    "training.real_ratio": False, "rollout.start_states": True, "rollout.every": True, "rollout.retain_rollouts": True,
    "mopo.horizon": True, "mopo.penalty_coef": False, "sac.actor_lr": False, "sac.gamma": False, "sac.tau": False,
    "seed": True, "model.overrides.ftm.batch_size": True, "model.overrides.ftm.lr": False,
}
key_cases("empo-train", agent_train, TRAIN_KEYS, {"training.eval_episodes", "training.real_ratio", "mopo.penalty_coef", "seed"},
          model=None)
case("value", "empo-train", "--set sac.hidden_sizes=[0]", lambda ws: agent_train(ws, "--set", "sac.hidden_sizes=[0]"), "hidden_sizes")
case("value", "empo-train", "--set sac.hidden_sizes=word", lambda ws: agent_train(ws, "--set", "sac.hidden_sizes=abc"),
     "hidden_sizes", "expected a list")
case("value", "empo-train", "--set-unknown-key", lambda ws: agent_train(ws, "--set", "training.epohcs=2"), "epohcs", "did you mean")
case("value", "empo-train", "--set-cuda-graph-on-cpu", lambda ws: agent_train(ws, "--set", "runtime.cuda_graph=true"),
     "runtime.cuda_graph", "CUDA")
case("value", "empo-train", "--algo-unknown", lambda ws: agent_train(ws, algo="cql"), "--algo", "invalid choice")
case("value", "empo-train", "no-task", lambda ws: [], "--task")
case("value", "empo-train", "misspelt-task", lambda ws: ["--task", "hopper-meduim"], "hopper-meduim", "did you mean")
case("value", "empo-train", "--resume-with-set", lambda ws: ["--resume", str(ws["run"]), "--set", "training.epochs=9"], "--set")
case("value", "empo-train", "--resume-with-model-dir", lambda ws: ["--resume", str(ws["run"]), "--model-dir", ws.original("ftm")],
     "--model-dir", "--resume")
for variable, text in (("EMPO_THREADS", "abc"), ("EMPO_THREADS", "0"), ("EMPO_THREADS", "-2"), ("EMPO_THREADS", str(10**30))):
    case("value", "empo-model train", f"{variable}={text[:6]}",
         lambda ws, variable=variable, text=text: (ws.setenv(variable, text), model_train(ws))[1], variable, "threads")

# ---- empo-eval, empo-export
EVAL = lambda ws: [str(ws["run"]), "--episodes", "1"]  # noqa: E731
for opt in ("--episodes", "--seed", "--threads"):
    numeric_cases("empo-eval", opt, EVAL if opt != "--episodes" else (lambda ws: [str(ws["run"])]), zero_ok=opt == "--seed")
case("value", "empo-eval", "no-policy", lambda ws: [], "POLICY", "required")
case("value", "empo-eval", "misspelt-task", lambda ws: [str(ws["policy.pt2"]), "--task", "hopper-meduim"], "hopper-meduim")
case("value", "empo-eval", "policy-file-without-task", lambda ws: [str(ws["policy.pt2"])], "policy.pt2", "--task")
case("value", "empo-export", "--format-unknown", lambda ws: [str(ws["run"]), "--format", "zip"], "--format", "invalid choice")
case("value", "empo-export", "no-run", lambda ws: [], "RUN_DIR", "required")

# ---- devices (the cuda cases are skipped where that device exists: _device_exists_here)
for device in ("cuda", "cuda:7", "tpu", "meta", ""):
    expect = "CUDA is not available" if device.startswith("cuda") else "torch device" if device in ("tpu", "") else "runs on"
    case("device", "empo-model train", f"--device={device or 'empty'}",
         lambda ws, d=device: [a if a != "cpu" else d for a in model_train(ws)], "--device", expect)
    case("device", "empo-model eval", f"--device={device or 'empty'}",
         lambda ws, d=device: [a if a != "cpu" else d for a in model_eval(ws)], "--device", expect)
    case("device", "empo-train", f"--device={device or 'empty'}",
         lambda ws, d=device: [a if a != "cpu" else d for a in agent_train(ws)], "--device", expect)
    case("device", "empo-train", f"--resume --device={device or 'empty'}",
         lambda ws, d=device: ["--resume", str(ws["run"]), "--device", d], "--device", expect)


# ---- paths: missing, a folder for a file and the reverse, empty, unreadable
def missing(ws: Workspace) -> str:
    return str(ws.root / "no" / "such" / "thing")


def unreadable(path: Path) -> str:
    path.chmod(0)
    return str(path)


PATH_OPTIONS: list[tuple[str, Callable[[Workspace, str], list[str]], str]] = [
    # (command, argv with the path in it, what the path must be: "file" or "folder")
    ("empo-data info", lambda ws, p: ["info", "hopper-medium", "--d4rl-path", p], "file"),
    ("empo-data build", lambda ws, p: ["build", "hopper-medium", "--no-progress", "--size", "50", "--behaviour-dir", p], "folder"),
    ("empo-model train", lambda ws, p: [a if a != ws.original("hopper.hdf5") else p for a in model_train(ws)], "file"),
    ("empo-model train", lambda ws, p: ["train", "--resume", p, "--device", "cpu", "--no-progress"], "folder"),
    ("empo-model eval", lambda ws, p: ["eval", "--model-dir", p, "--device", "cpu"], "folder"),
    ("empo-model eval", lambda ws, p: [a if a != ws.original("hopper.hdf5") else p for a in model_eval(ws)], "file"),
    ("empo-train", lambda ws, p: [a if a != ws.original("hopper.hdf5") else p for a in agent_train(ws)], "file"),
    ("empo-train", lambda ws, p: [a if a != ws.original("ftm") else p for a in agent_train(ws)], "folder"),
    ("empo-train", lambda ws, p: ["--resume", p, "--device", "cpu", "--no-progress"], "folder"),
    ("empo-eval", lambda ws, p: [p, "--episodes", "1"], "folder"),
    ("empo-eval", lambda ws, p: [p, "--task", "hopper-medium", "--episodes", "1"], "file"),
    ("empo-export", lambda ws, p: [p, "--out", str(ws.root / "out.pt2")], "folder"),
]
for command, make, wants in PATH_OPTIONS:
    index = sum(1 for c in CASES if c.kind == "path" and c.command == command and c.name.startswith("missing"))
    tag = f"{wants}{index}"
    case("path", command, f"missing-{tag}", lambda ws, make=make: make(ws, missing(ws)), "no/such/thing")
    if wants == "file":
        case("path", command, f"folder-for-file-{tag}", lambda ws, make=make: make(ws, str(ws.folder("a-folder"))), "a-folder")
        case("path", command, f"empty-{tag}", lambda ws, make=make: make(ws, str(ws.file("empty.hdf5"))), "empty.hdf5", "empty")
        case("path", command, f"unreadable-{tag}",
             lambda ws, make=make: make(ws, unreadable(ws.file("locked.hdf5", b"\x89HDF\r\n\x1a\n" + bytes(100)))), "locked.hdf5",
             unreadable=True)
    else:
        case("path", command, f"file-for-folder-{tag}", lambda ws, make=make: make(ws, str(ws.file("a-file", b"x"))), "a-file")
        case("path", command, f"empty-folder-{tag}", lambda ws, make=make: make(ws, str(ws.folder("empty-folder"))), "empty-folder")
        case("path", command, f"unreadable-{tag}", lambda ws, make=make: make(ws, unreadable(ws.folder("locked"))), "locked",
             unreadable=True)
case("path", "empo-data info", "minari-id-not-on-disk", lambda ws: ["info", "hopper-medium", "--minari-id", "nobody/nothing-v0"],
     "nobody/nothing-v0", "not on disk")
case("path", "empo-data train-behaviour", "--out-a-file", lambda ws: [*TRAIN_BEHAVIOUR(ws)[:3], str(ws.file("a-file", b"x"))],
     "--out", "a-file", "expected a folder")
case("path", "empo-data train-behaviour", "--out-below-a-file",
     lambda ws: [*TRAIN_BEHAVIOUR(ws)[:3], str(ws.file("a-file", b"x") / "sub")], "--out", "a-file", "is a file")
case("path", "empo-model train", "--out-a-file", lambda ws: [*model_train(ws)[:-1], str(ws.file("a-file", b"x"))],
     "--run-dir", "a-file", "expected a folder")
case("path", "empo-model train", "--out-below-a-file", lambda ws: [*model_train(ws)[:-1], str(ws.file("a-file", b"x") / "m")],
     "--run-dir", "a-file", "is a file")
case("path", "empo-model eval", "model-dir-read-only", lambda ws: model_eval(ws) if ws["ftm"].chmod(0o555) is None else [],
     "ftm", "cannot be written", unreadable=True)
case("path", "empo-train", "--run-dir-a-file", lambda ws: [*agent_train(ws)[:-1], str(ws.file("a-file", b"x"))],
     "--run-dir", "a-file", "expected a folder")
case("path", "empo-train", "--run-dir-below-a-file", lambda ws: [*agent_train(ws)[:-1], str(ws.file("a-file", b"x") / "r")],
     "--run-dir", "a-file", "is a file")
case("path", "empo-train", "--run-dir-holds-a-run", lambda ws: [*agent_train(ws)[:-1], str(ws["run"])], "already holds a run")
case("path", "empo-eval", "--video-a-file", lambda ws: [*EVAL(ws), "--video", str(ws.file("a-file", b"x"))], "--video", "a-file")
case("path", "empo-eval", "run-without-checkpoint", lambda ws: [str((ws["run"] / "checkpoint.pt").unlink() or ws["run"])],
     "checkpoint.pt", "did not finish an epoch")
case("path", "empo-export", "--out-a-folder", lambda ws: [str(ws["run"]), "--out", str(ws.folder("a-folder"))],
     "--out", "a-folder", "expected a file")
case("path", "empo-export", "--out-below-a-file", lambda ws: [str(ws["run"]), "--out", str(ws.file("a-file", b"x") / "p.pt2")],
     "--out", "a-file", "is a file")


# ---- damaged files
def hdf5(ws: Workspace, **arrays) -> str:
    """A hopper D4RL file with some arrays replaced (None drops one)."""
    return str(write_d4rl_file(ws.root / "bad.hdf5", **arrays))


D4RL_DAMAGE: dict[str, tuple[Callable[[Workspace], str], tuple[str, ...]]] = {
    "zero-bytes": (lambda ws: str(zero(ws["hopper.hdf5"])), ("hopper.hdf5", "empty")),
    "truncated": (lambda ws: str(truncate(ws["hopper.hdf5"])), ("hopper.hdf5", "hdf5")),
    "random-bytes": (lambda ws: str(garbage(ws["hopper.hdf5"])), ("hopper.hdf5", "not a readable hdf5 file")),
    "missing-keys": (lambda ws: hdf5(ws, rewards=None, timeouts=None), ("bad.hdf5", "rewards", "timeouts")),
    "a-group-not-an-array": (lambda ws: _group_file(ws), ("bad.hdf5", "actions", "expected a dataset")),
    "text-values": (lambda ws: hdf5(ws, rewards=np.array([b"x"] * 600)), ("bad.hdf5", "rewards", "expected numbers")),
    "lengths-differ": (lambda ws: hdf5(ws, actions=np.zeros((599, 3), np.float32)), ("bad.hdf5", "actions", "same length")),
    "1-d-observations": (lambda ws: hdf5(ws, observations=np.zeros(600, np.float32), next_observations=None),
                         ("bad.hdf5", "observations", "2-D")),
    "3-d-observations": (lambda ws: hdf5(ws, observations=np.zeros((600, 11, 2), np.float32), next_observations=None),
                         ("bad.hdf5", "observations", "2-D")),
    "no-rows": (lambda ws: hdf5(ws, n=0, observations=np.zeros((0, 11), np.float32)), ("bad.hdf5", "empty")),
    "nan-values": (lambda ws: hdf5(ws, rewards=np.full(600, np.nan, np.float32)), ("bad.hdf5", "rewards", "NaN")),
    "inf-observations": (lambda ws: hdf5(ws, observations=np.full((600, 11), np.inf, np.float32)),
                         ("bad.hdf5", "observations", "NaN or inf")),
    "next-observations-too-short": (lambda ws: hdf5(ws, next_observations=np.zeros((10, 11), np.float32)),
                                    ("bad.hdf5", "next_observations", "same length")),
}


def _group_file(ws: Workspace) -> str:
    path = Path(hdf5(ws, actions=None))
    with h5py.File(path, "a") as handle:
        handle.create_group("actions")
    return str(path)


for label, (make, expect) in D4RL_DAMAGE.items():
    case("damaged", "empo-data info", f"d4rl-{label}", lambda ws, make=make: ["info", "hopper-medium", "--d4rl-path", make(ws)], *expect)
for label in ("truncated", "random-bytes", "missing-keys", "nan-values"):
    make, expect = D4RL_DAMAGE[label]
    case("damaged", "empo-model train", f"d4rl-{label}",
         lambda ws, make=make: [a if a != ws.original("hopper.hdf5") else make(ws) for a in model_train(ws)], *expect)
    case("damaged", "empo-train", f"d4rl-{label}",
         lambda ws, make=make: [a if a != ws.original("hopper.hdf5") else make(ws) for a in agent_train(ws)], *expect)


def minari_data(ws: Workspace) -> Path:
    return ws.minari() / "data" / "main_data.hdf5"


MINARI_DAMAGE: dict[str, Callable[[Workspace], object]] = {
    "data-zero-bytes": lambda ws: zero(minari_data(ws)),
    "data-truncated": lambda ws: truncate(minari_data(ws)),
    "data-random-bytes": lambda ws: garbage(minari_data(ws)),
    "data-missing": lambda ws: minari_data(ws).unlink(),
    "metadata-not-json": lambda ws: (ws.minari() / "data" / "metadata.json").write_text("{not json"),
    "metadata-empty": lambda ws: zero(ws.minari() / "data" / "metadata.json"),
    "metadata-a-list": lambda ws: (ws.minari() / "data" / "metadata.json").write_text("[1, 2]"),
}
for label, damage in MINARI_DAMAGE.items():
    case("damaged", "empo-data info", f"minari-{label}",
         lambda ws, damage=damage: (damage(ws), ["info", "hopper-medium", "--minari-id", MINARI_ID])[1], MINARI_ID, "could not be read")


def behaviour_folder(ws: Workspace) -> Path:
    return ws.folder("behaviour")


def actor_file(path: Path, obs_dim: int = 11, act_dim: int = 3) -> Path:
    from empo.data.behaviour import PolicyActor, save_policy

    save_policy(path, PolicyActor(obs_dim, act_dim).state_dict(), {"env": "test"})
    return path


BEHAVIOUR_DAMAGE: dict[str, tuple[str, Callable[[Workspace], object], tuple[str, ...]]] = {
    "policy-zero-bytes": ("hopper-medium", lambda ws: ws.file("behaviour/hopper-medium.pt"), ("hopper-medium.pt", "empty")),
    "policy-random-bytes": ("hopper-medium", lambda ws: garbage(ws.file("behaviour/hopper-medium.pt")),
                            ("hopper-medium.pt", "cannot read the behaviour policy")),
    "policy-truncated": ("hopper-medium", lambda ws: truncate(actor_file(behaviour_folder(ws) / "hopper-medium.pt")),
                         ("hopper-medium.pt", "cannot read the behaviour policy")),
    "policy-not-a-dict": ("hopper-medium", lambda ws: torch.save([1, 2], behaviour_folder(ws) / "hopper-medium.pt"),
                          ("hopper-medium.pt", "not a behaviour policy")),
    "replay-zero-bytes": ("hopper-medium-replay", lambda ws: ws.file("behaviour/medium_replay.npz"), ("medium_replay.npz",)),
    "replay-random-bytes": ("hopper-medium-replay", lambda ws: garbage(ws.file("behaviour/medium_replay.npz")),
                            ("medium_replay.npz", "not a readable replay buffer")),
    "replay-missing-keys": ("hopper-medium-replay",
                            lambda ws: np.savez(behaviour_folder(ws) / "medium_replay.npz", observations=np.zeros((5, 11))),
                            ("medium_replay.npz", "missing array", "actions")),
}
for label, (task, damage, expect) in BEHAVIOUR_DAMAGE.items():
    case("damaged", "empo-data build", f"behaviour-{label}",
         lambda ws, task=task, damage=damage: (damage(ws), ["build", task, "--no-progress", "--size", "50", "--behaviour-dir",
                                                             str(ws.root / "behaviour")])[1], *expect)
STATE_DAMAGE: dict[str, tuple[Callable[[Workspace], object], tuple[str, ...]]] = {
    "state-not-json": (lambda ws: ws.file("behaviour/state.json", "{oops"), ("state.json", "not valid JSON")),
    "state-a-list": (lambda ws: ws.file("behaviour/state.json", "[]"), ("state.json", "expected a JSON object")),
    "state-binary": (lambda ws: garbage(ws.file("behaviour/state.json")), ("state.json",)),
    "checkpoint-random-bytes": (lambda ws: (garbage(ws.file("behaviour/checkpoint.zip")), ws.file("behaviour/replay_buffer.pkl", b"x")),
                                ("checkpoint.zip", "not a readable stable-baselines3 checkpoint")),
    "checkpoint-without-buffer": (lambda ws: garbage(ws.file("behaviour/checkpoint.zip")), ("replay_buffer.pkl", "missing")),
}
for label, (damage, expect) in STATE_DAMAGE.items():
    case("damaged", "empo-data train-behaviour", label, lambda ws, damage=damage: (damage(ws), TRAIN_BEHAVIOUR(ws))[1], *expect)


# checkpoints of empo-train runs, read by --resume, empo-eval and empo-export
def run_checkpoint(ws: Workspace) -> Path:
    return ws["run"] / "checkpoint.pt"


CHECKPOINT_DAMAGE: dict[str, tuple[Callable[[Workspace], object], tuple[str, ...]]] = {
    "zero-bytes": (lambda ws: zero(run_checkpoint(ws)), ("checkpoint.pt", "empty")),
    "truncated": (lambda ws: truncate(run_checkpoint(ws)), ("checkpoint.pt", "cannot be read")),
    "random-bytes": (lambda ws: garbage(run_checkpoint(ws)), ("checkpoint.pt", "cannot be read")),
    "a-list": (lambda ws: torch.save([1, 2, 3], run_checkpoint(ws)), ("checkpoint.pt", "expected", "list")),
    "missing-keys": (lambda ws: torch.save({"version": 1, "epoch": 2}, run_checkpoint(ws)), ("checkpoint.pt", "missing", "agent")),
    "agent-of-another-size": (lambda ws: _resize_agent(run_checkpoint(ws)), ("checkpoint.pt", "size 17", "hopper-medium")),
}


def _resize_agent(path: Path) -> None:
    state = torch.load(path, weights_only=False)
    state["agent"]["obs_dim"] = 17
    torch.save(state, path)


CONFIG_DAMAGE: dict[str, tuple[Callable[[Path], object], tuple[str, ...]]] = {
    "not-yaml": (lambda p: p.write_text("training: [1, 2\n"), ("config.yaml", "not valid YAML")),
    "empty": (lambda p: zero(p), ("config.yaml", "empty")),
    "a-list": (lambda p: p.write_text("- 1\n- 2\n"), ("config.yaml", "expected a mapping")),
    "binary": (lambda p: garbage(p), ("config.yaml", "not a text file")),
    "unknown-key": (lambda p: p.write_text(p.read_text() + "bogus_key: 1\n"), ("config.yaml", "unknown key 'bogus_key'")),
    "bad-value": (lambda p: p.write_text(p.read_text().replace("epochs: 4", "epochs: -4")), ("config.yaml", "epochs")),
    "nan-value": (lambda p: p.write_text(p.read_text().replace("real_ratio: 0.05", "real_ratio: .nan")),
                  ("config.yaml", "real_ratio", "finite")),
    "task-misspelt": (lambda p: p.write_text(p.read_text().replace("task: hopper-medium", "task: hopper-meduim")),
                      ("hopper-meduim",)),
    "of-another-task": (lambda p: p.write_text(p.read_text().replace("task: hopper-medium", "task: walker2d-medium")),
                        ("checkpoint.pt", "walker2d-medium")),
    "missing-task": (lambda p: p.write_text(p.read_text().replace("task: hopper-medium\n", "")), ("config.yaml", "'task'")),
    "actor-size-differs": (lambda p: p.write_text(p.read_text().replace("hidden_sizes:\n  - 64\n  - 64", "hidden_sizes:\n  - 32")),
                           ("checkpoint.pt", "actor")),
}
RUN_JSON_DAMAGE: dict[str, tuple[Callable[[Path], object], tuple[str, ...]]] = {
    "not-json": (lambda p: p.write_text("{oops"), ("run.json", "not valid JSON")),
    "a-list": (lambda p: p.write_text("[]"), ("run.json", "expected a JSON object")),
}
RESUME_RUN_JSON_DAMAGE: dict[str, tuple[Callable[[Path], object], tuple[str, ...]]] = {  # what only resuming reads
    "model-dir-missing": (lambda p: edit_json(p, model_dir="/no/such/model"), ("run.json", "/no/such/model", "no such folder")),
    "model-dir-a-number": (lambda p: edit_json(p, model_dir=3), ("run.json", "model_dir", "expected a folder name")),
    "model-dir-an-etm": (lambda p: edit_json(p, model_dir=str(p.parent.parent / "etm")), ("run.json", "etm model", "needs a ftm")),
}
AGENT_READERS: dict[str, Callable[[Workspace], list[str]]] = {
    "empo-train": lambda ws: ["--resume", str(ws["run"]), "--device", "cpu", "--no-progress"],
    "empo-eval": lambda ws: [str(ws["run"]), "--episodes", "1"],
    "empo-export": lambda ws: [str(ws["run"]), "--out", str(ws.root / "out.pt2")],
}
for command, reader in AGENT_READERS.items():
    for label, (damage, expect) in CHECKPOINT_DAMAGE.items():
        case("damaged", command, f"checkpoint-{label}", lambda ws, r=reader, d=damage: (d(ws), r(ws))[1], *expect)
    for label, (damage, expect) in CONFIG_DAMAGE.items():
        case("damaged", command, f"config.yaml-{label}", lambda ws, r=reader, d=damage: (d(ws["run"] / "config.yaml"), r(ws))[1],
             *expect)
    damages = RUN_JSON_DAMAGE | (RESUME_RUN_JSON_DAMAGE if command == "empo-train" else {})
    for label, (damage, expect) in damages.items():
        case("damaged", command, f"run.json-{label}",
             lambda ws, r=reader, d=damage: (ws["etm"], d(ws["run"] / "run.json"), r(ws))[-1], *expect)


# model folders of empo-model train: model.pt and model.json, read by eval and by empo-train --model-dir
MODEL_DAMAGE: dict[str, tuple[Callable[[Path], object], tuple[str, ...]]] = {
    "model.pt-zero-bytes": (lambda d: zero(d / "model.pt"), ("model.pt", "empty")),
    "model.pt-truncated": (lambda d: truncate(d / "model.pt"), ("model.pt", "cannot be read")),
    "model.pt-random-bytes": (lambda d: garbage(d / "model.pt"), ("model.pt", "cannot be read")),
    "model.pt-a-checkpoint": (lambda d: shutil.copy(d / "checkpoint.pt", d / "model.pt"), ("model.pt", "tensors")),
    "model.pt-of-an-etm": (lambda d: shutil.copy(d.parent / "etm-copy" / "model.pt", d / "model.pt"), ("model.pt", "do not match")),
    "model.pt-missing": (lambda d: (d / "model.pt").unlink(), ("model.pt", "missing")),
    "model.json-not-json": (lambda d: (d / "model.json").write_text("{oops"), ("model.json", "not valid JSON")),
    "model.json-empty": (lambda d: zero(d / "model.json"), ("model.json", "empty")),
    "model.json-a-list": (lambda d: (d / "model.json").write_text("[]"), ("model.json", "expected a JSON object")),
    "model.json-no-kind": (lambda d: edit_json(d / "model.json", kind=DELETE), ("model.json", "'kind'")),
    "model.json-unknown-kind": (lambda d: edit_json(d / "model.json", kind="xtm"), ("model.json", "xtm")),
    "model.json-obs-dim-a-word": (lambda d: edit_json(d / "model.json", obs_dim="eleven"), ("model.json", "obs_dim", "whole number")),
    "model.json-config-a-list": (lambda d: edit_json(d / "model.json", config=[]), ("model.json", "config")),
    "model.json-config-unknown-key": (lambda d: edit_json(d / "model.json", config={"bogus": 1}), ("model.json", "bogus")),
    "model.json-unknown-termination": (lambda d: edit_json(d / "model.json", termination="pogo"), ("pogo",)),
}


def damaged_model(ws: Workspace, damage: Callable[[Path], object]) -> Path:
    ws["etm"].rename(ws.root / "etm-copy")
    model = ws["ftm"]
    damage(model)
    return model


for label, (damage, expect) in MODEL_DAMAGE.items():
    case("damaged", "empo-model eval", label,
         lambda ws, d=damage: (damaged_model(ws, d), model_eval(ws))[1], *expect)
    case("damaged", "empo-train", f"--model-dir-{label}",
         lambda ws, d=damage: [a if a != ws.original("ftm") else str(damaged_model(ws, d)) for a in agent_train(ws)], *expect)
case("damaged", "empo-model eval", "model.json-no-task", lambda ws: (edit_json(ws["ftm"] / "model.json", meta={}), model_eval(ws))[1],
     "model.json", "task")
case("damaged", "empo-model eval", "model.json-task-misspelt",
     lambda ws: (edit_json(ws["ftm"] / "model.json", meta={"task": "hopper-meduim"}), model_eval(ws))[1], "hopper-meduim")

# fit folders of empo-model train, read by --resume
MODEL_RUN = lambda ws: ["train", "--resume", str(ws["ftm"]), "--device", "cpu", "--no-progress"]  # noqa: E731
FIT_DAMAGE: dict[str, tuple[Callable[[Path], object], tuple[str, ...]]] = {
    "checkpoint-zero-bytes": (lambda d: zero(d / "checkpoint.pt"), ("checkpoint.pt", "empty")),
    "checkpoint-truncated": (lambda d: truncate(d / "checkpoint.pt"), ("checkpoint.pt", "cannot be read")),
    "checkpoint-random-bytes": (lambda d: garbage(d / "checkpoint.pt"), ("checkpoint.pt", "cannot be read")),
    "checkpoint-missing": (lambda d: (d / "checkpoint.pt").unlink(), ("checkpoint.pt", "no checkpoint.pt")),
    "checkpoint-missing-keys": (lambda d: torch.save({"epoch": 1}, d / "checkpoint.pt"), ("checkpoint.pt", "missing", "config")),
    "checkpoint-of-an-agent": (lambda d: shutil.copy(d.parent / "run-copy" / "checkpoint.pt", d / "checkpoint.pt"),
                               ("checkpoint.pt", "cannot be read as a checkpoint of empo-model train")),
    "checkpoint-of-an-etm": (lambda d: shutil.copy(d.parent / "etm-copy" / "checkpoint.pt", d / "checkpoint.pt"),
                             ("checkpoint.pt", "etm model", "says ftm")),
    "run.json-not-json": (lambda d: (d / "run.json").write_text("{oops"), ("run.json", "not valid JSON")),
    "run.json-a-list": (lambda d: (d / "run.json").write_text("[1]"), ("run.json", "expected a JSON object")),
    "run.json-no-model": (lambda d: edit_json(d / "run.json", model=DELETE), ("run.json", "'model'")),
    "run.json-unknown-model": (lambda d: edit_json(d / "run.json", model="xtm"), ("run.json", "xtm")),
    "run.json-seed-a-word": (lambda d: edit_json(d / "run.json", seed="abc"), ("run.json", "seed", "whole number")),
    "run.json-seed-negative": (lambda d: edit_json(d / "run.json", seed=-1), ("run.json", "seed", "whole number")),
    "run.json-task-misspelt": (lambda d: edit_json(d / "run.json", task="hopper-meduim"), ("hopper-meduim",)),
    "run.json-overrides-a-list": (lambda d: edit_json(d / "run.json", overrides=[1]), ("run.json", "overrides")),
    "run.json-bad-override": (lambda d: edit_json(d / "run.json", overrides={"ftm": {"batch_size": 0}}), ("batch_size",)),
}


def damaged_fit(ws: Workspace, damage: Callable[[Path], object]) -> list[str]:
    ws["etm"].rename(ws.root / "etm-copy")
    ws["run"].rename(ws.root / "run-copy")
    damage(ws["ftm"])
    return MODEL_RUN(ws)


for label, (damage, expect) in FIT_DAMAGE.items():
    case("damaged", "empo-model train", f"--resume-{label}", lambda ws, d=damage: damaged_fit(ws, d), *expect)

# exported policies, read by empo-eval
POLICY_DAMAGE: dict[str, tuple[Callable[[Workspace], Path], tuple[str, ...]]] = {
    "pt2-truncated": (lambda ws: truncate(ws["policy.pt2"]), ("policy.pt2", "not a policy file")),
    "pt2-random-bytes": (lambda ws: garbage(ws["policy.pt2"]), ("policy.pt2", "not a policy file")),
    "pt2-a-checkpoint": (lambda ws: Path(shutil.copy(ws["run"] / "checkpoint.pt", ws.root / "ckpt.pt2")), ("ckpt.pt2", "not a policy")),
    "torchscript-random-bytes": (lambda ws: garbage(ws.file("policy.pt")), ("policy.pt", "not a policy file")),
    "onnx-random-bytes": (lambda ws: garbage(ws.file("policy.onnx")), ("policy.onnx", "not an ONNX policy")),
    "onnx-zero-bytes": (lambda ws: ws.file("policy.onnx"), ("policy.onnx", "empty")),
}
for label, (damage, expect) in POLICY_DAMAGE.items():
    case("damaged", "empo-eval", label, lambda ws, d=damage: [str(d(ws)), "--task", "hopper-medium", "--episodes", "1"], *expect)


# ---- files of the wrong kind: another command's folder, another task, another model kind
def wrong(command: str, name: str, argv: Callable[[Workspace], list[str]], *expect: str) -> None:
    case("wrong-kind", command, name, argv, *expect)


wrong("empo-model eval", "--model-dir-an-agent-run", lambda ws: ["eval", "--model-dir", str(ws["run"]), "--device", "cpu"],
      "run folder of empo-train")
wrong("empo-model eval", "--model-dir-of-another-task",
      lambda ws: ["eval", "--model-dir", str(ws["walker-ftm"]), "--d4rl-path", ws.original("hopper.hdf5"), "--device", "cpu"],
      "hopper.hdf5", "walker2d-medium")
wrong("empo-model train", "--resume-an-agent-run", lambda ws: ["train", "--resume", str(ws["run"]), "--device", "cpu"],
      "run folder of empo-train")
wrong("empo-model train", "--out-an-agent-run", lambda ws: [*model_train(ws)[:-1], str(ws["run"])], "run folder of empo-train")
wrong("empo-model train", "--resume-with-another-model", lambda ws: ["train", "--resume", str(ws["ftm"]), "--model", "etm"],
      "--model ftm", "not etm")
wrong("empo-model train", "--resume-with-another-task", lambda ws: ["train", "--resume", str(ws["ftm"]), "--task", "walker2d-medium"],
      "--task hopper-medium", "not walker2d-medium")
wrong("empo-model train", "d4rl-of-another-task", lambda ws: model_train(ws, "--task", "walker2d-medium"), "hopper.hdf5", "walker2d-medium")
wrong("empo-train", "--resume-a-model-folder", lambda ws: ["--resume", str(ws["ftm"]), "--device", "cpu"], "model folder of empo-model train")
wrong("empo-train", "--model-dir-an-agent-run", lambda ws: [a if a != ws.original("ftm") else str(ws["run"]) for a in agent_train(ws)],
      "run folder of empo-train")
wrong("empo-train", "--model-dir-ftm-for-empo", lambda ws: agent_train(ws, algo="empo"), "ftm model", "needs a etm model")
wrong("empo-train", "--model-dir-etm-for-mopo", lambda ws: agent_train(ws, model="etm"), "etm model", "needs a ftm model")
wrong("empo-train", "--model-dir-of-another-task", lambda ws: agent_train(ws, model="walker-ftm"), "walker-ftm", "hopper-medium")
wrong("empo-train", "--run-dir-a-model-folder", lambda ws: [*agent_train(ws)[:-1], str(ws["ftm"])], "model folder of empo-model train")
wrong("empo-train", "--resume-with-another-task", lambda ws: ["--resume", str(ws["run"]), "--task", "walker2d-medium"],
      "hopper-medium", "not walker2d-medium")
wrong("empo-train", "d4rl-of-another-task", lambda ws: [a if a != ws.original("hopper.hdf5") else ws.original("walker.hdf5")
                                                        for a in agent_train(ws)], "walker.hdf5", "hopper-medium")
wrong("empo-eval", "a-model-folder", lambda ws: [str(ws["ftm"])], "model folder of empo-model train")
wrong("empo-eval", "a-run-with-another-task", lambda ws: [*EVAL(ws), "--task", "walker2d-medium"], "hopper-medium", "walker2d-medium")
wrong("empo-eval", "a-policy-of-another-task", lambda ws: [str(ws["policy.pt2"]), "--task", "walker2d-medium"],
      "policy.pt2", "walker2d-medium")
wrong("empo-eval", "a-model-file-as-policy", lambda ws: [str(ws["ftm"] / "model.pt"), "--task", "hopper-medium"],
      "model.pt", "not a policy file")
wrong("empo-export", "a-model-folder", lambda ws: [str(ws["ftm"])], "model folder of empo-model train")
wrong("empo-data info", "d4rl-of-another-task", lambda ws: ["info", "hopper-medium", "--d4rl-path", ws.original("walker.hdf5")],
      "walker.hdf5", "hopper-medium")
wrong("empo-data info", "minari-of-another-env", lambda ws: (ws.minari(), ["info", "walker2d-medium", "--minari-id", MINARI_ID])[1],
      MINARI_ID, "walker2d-medium")
wrong("empo-data build", "policy-of-another-env",
      lambda ws: (actor_file(behaviour_folder(ws) / "hopper-medium.pt", 17, 6),
                  ["build", "hopper-medium", "--no-progress", "--size", "50", "--behaviour-dir", str(ws.root / "behaviour")])[1],
      "hopper-medium.pt", "not a behaviour policy for Hopper")
wrong("empo-data train-behaviour", "--out-of-another-env",
      lambda ws: (ws.file("behaviour/state.json", json.dumps({"env": "walker2d"})), TRAIN_BEHAVIOUR(ws))[1],
      "state.json", "walker2d", "not hopper")


# ---- empo-ope, empo-sweep, empo-report
OPE = lambda ws: ["--task", "hopper-medium", "--policies", "random", "random", "--out", str(ws.root / "ope")]  # noqa: E731
for opt in ("--episodes", "--starts", "--horizon", "--fqe-steps", "--seed", "--threads"):
    numeric_cases("empo-ope", opt, OPE, zero_ok=opt == "--seed")
case("path", "empo-ope", "missing-policy", lambda ws: [*OPE(ws)[:3], missing(ws), "--out", str(ws.root / "ope")],
     "such/thing", "no such policy file")
case("wrong-kind", "empo-ope", "policy-of-another-env",
     lambda ws: [*OPE(ws)[:3], str(actor_file(ws.root / "cheetah.pt", 17, 6)), "--out", str(ws.root / "ope")],
     "cheetah.pt", "observations of size 17", "hopper-medium has 11")
case("value", "empo-ope", "one-policy", lambda ws: ["--task", "hopper-medium", "--policies", "random", "--out", str(ws.root / "o")],
     "need at least 2")
case("value", "empo-ope", "bad-model-dir", lambda ws: [*OPE(ws), "--model-dir", "etm"], "--model-dir", "etm=DIR")
SWEEP = lambda ws: ["--tasks", "hopper-medium", "--presets", "smoke", "--out", str(ws.root / "sweep")]  # noqa: E731
for opt in ("--seeds", "--workers", "--threads-per-run"):
    numeric_cases("empo-sweep", opt, SWEEP, zero_ok=opt == "--seeds")
case("value", "empo-sweep", "gpus-per-run=nan", lambda ws: [*SWEEP(ws), "--gpus-per-run", "nan"], "--gpus-per-run", "expected")
case("value", "empo-sweep", "misspelt-task", lambda ws: ["--tasks", "hopper-meduim", "--out", str(ws.root / "s")], "hopper-meduim")
case("value", "empo-sweep", "misspelt-spec-key",
     lambda ws: [str(ws.file("spec.yaml", "tasks: [hopper-medium]\nworkerz: 2\n")), "--out", str(ws.root / "s")], "workerz", "workers")
case("path", "empo-sweep", "missing-spec", lambda ws: [missing(ws), "--out", str(ws.root / "s")], "such/thing")
case("path", "empo-report", "missing-folder", lambda ws: [missing(ws)], "no such folder")
case("path", "empo-report", "empty-folder", lambda ws: [str((ws.root / "empty").mkdir() or ws.root / "empty")], "no runs here")
case("damaged", "empo-report", "damaged-summary",
     lambda ws: [str(Path(ws.file("run/summary.json", "{not json")).parent)], "summary.json", "cannot read")


# ------------------------------------------------------------------------------------ the runner
def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every file and folder under ``roots``: its kind, mode, and for a file its size, mtime and content hash."""
    seen: dict[str, tuple] = {}
    for root in roots:
        if not root.exists():
            continue
        for path in sorted(root.rglob("*")):
            info = path.lstat()
            key = str(path)
            if stat.S_ISDIR(info.st_mode):
                seen[key] = ("dir", stat.S_IMODE(info.st_mode))
            else:
                mode = stat.S_IMODE(info.st_mode)
                digest = hashlib.sha1(path.read_bytes()).hexdigest() if stat.S_ISREG(info.st_mode) else None
                seen[key] = ("file", mode, info.st_size, info.st_mtime_ns, digest)
    return seen


def changes(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    out = [f"new {p}" for p in after.keys() - before.keys()] + [f"gone {p}" for p in before.keys() - after.keys()]
    out += [f"changed {p}" for p in before.keys() & after.keys() if before[p] != after[p]]
    return sorted(out)


@contextmanager
def as_unprivileged(needed: bool) -> Iterator[None]:
    """Run the block as user nobody when this process is root (root reads files of mode 000)."""
    if not needed or os.geteuid() != 0:
        yield
        return
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def workspace(artifacts, tmp_path, isolated_data_roots, monkeypatch) -> Iterator[Workspace]:
    root = tmp_path / "ws"
    root.mkdir()
    monkeypatch.chdir(root)
    yield Workspace(root, artifacts, Path(os.environ["MINARI_DATASETS_PATH"]), monkeypatch)


@pytest.fixture
def open_workspace(artifacts, isolated_data_roots, monkeypatch) -> Iterator[Workspace]:
    """A workspace that user nobody can enter (pytest's own tmp folders are root's alone)."""
    root = Path(tempfile.mkdtemp(prefix="empo-bad-inputs-"))
    root.chmod(0o755)
    monkeypatch.chdir(root)
    yield Workspace(root, artifacts, Path(os.environ["MINARI_DATASETS_PATH"]), monkeypatch)
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
    shutil.rmtree(root)


def run_case(c: Case, ws: Workspace, data_roots: Path, capsys) -> tuple[int, str, str]:
    argv = c.argv(ws)
    if c.unreadable:  # let nobody reach the case's files; the argv made the one under test mode 000
        for path in [ws.root, *ws.root.rglob("*")]:
            if stat.S_IMODE(path.stat().st_mode) not in (0, 0o555):
                path.chmod(path.stat().st_mode | stat.S_IROTH | (stat.S_IXOTH | stat.S_IWOTH if path.is_dir() else 0))
    before = snapshot(ws.root, data_roots)
    capsys.readouterr()
    with as_unprivileged(c.unreadable):
        code = PROGRAMS[c.program](argv)
    out, err = capsys.readouterr()
    after = snapshot(ws.root, data_roots)
    lines = err.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert "Traceback" not in out + err, err
    assert code == 2, f"exit status {code}; stderr:\n{err}"
    assert len(errors) == 1 and lines[-1] == errors[0], f"expected one error line, last on stderr:\n{err}"
    others = [line for line in lines if line != errors[0]]
    assert all(line.startswith(INFO_PREFIXES) for line in others), f"unexpected lines on stderr:\n{err}"
    for word in c.expect:
        assert word in errors[0], f"{word!r} not in: {errors[0]}"
    assert not changes(before, after), changes(before, after)
    return code, out, err


def _device_exists_here(c: Case) -> bool:
    """On a machine with GPUs, --device cuda (and cuda:7 with 8 or more) is not a bad input."""
    match = re.search(r"--device=cuda(?::(\d+))?$", c.name)
    if c.kind != "device" or match is None or not torch.cuda.is_available():
        return False
    return match.group(1) is None or int(match.group(1)) < torch.cuda.device_count()


@pytest.mark.parametrize("c", [c for c in CASES if not c.unreadable], ids=lambda c: c.id)
def test_bad_input(c: Case, workspace, isolated_data_roots, capsys):
    if _device_exists_here(c):
        pytest.skip(f"{c.name}: that device exists on this machine")
    run_case(c, workspace, isolated_data_roots, capsys)


@pytest.mark.parametrize("c", [c for c in CASES if c.unreadable], ids=lambda c: c.id)
def test_unreadable_input(c: Case, open_workspace, isolated_data_roots, capsys):
    run_case(c, open_workspace, isolated_data_roots, capsys)


# ------------------------------------------------------------------------------------ coverage of the suite
def _numeric_options(parser: argparse.ArgumentParser, prefix: str) -> Iterator[tuple[str, str]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _numeric_options(sub, f"{prefix} {name}")
        elif action.option_strings and getattr(action.type, "__name__", None) == "int":
            yield prefix, action.option_strings[0]


def test_every_numeric_option_is_tried():
    options = {pair for program, build in PARSERS.items() for pair in _numeric_options(build(), program)}
    assert options, "no numeric options found"
    assert options - NUMERIC_COVERED == set(), "numeric options without bad-value cases"


def test_every_command_and_kind_is_tried():
    commands = {c.command for c in CASES}
    for command in ("empo-data build", "empo-data info", "empo-data list", "empo-data train-behaviour", "empo-data suite",
                    "empo-model train",
                    "empo-model eval", "empo-train", "empo-eval", "empo-export", "empo-ope", "empo-sweep", "empo-report"):
        assert command in commands, command
    kinds = Counter(c.kind for c in CASES)
    assert set(kinds) == set(KINDS), kinds
    assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"


def case_counts() -> dict[str, int]:
    """Cases by kind (benchmarks/faults.py records them)."""
    return dict(Counter(c.kind for c in CASES))


# ------------------------------------------------------------------------------------ --debug and internal errors
def test_debug_shows_the_traceback(workspace, capsys, monkeypatch):
    assert train_cli.main(["--task", "hopper-meduim"]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert train_cli.main(["--task", "hopper-meduim", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.splitlines()[-1].startswith("error: unknown task 'hopper-meduim'")
    monkeypatch.setenv("EMPO_DEBUG", "1")
    assert model_cli.main(["eval", "--model-dir", "/no/such/model"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.splitlines()[-1].startswith("error: --model-dir /no/such/model")


def test_a_bug_is_one_line_naming_it_with_status_1(workspace, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("surprise")

    monkeypatch.setattr(data_cli, "load_transitions", broken)
    assert data_cli.main(["info", "hopper-medium"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: internal error KeyError: 'surprise' at test_bad_inputs.py:")
    assert "--debug" in err and "Traceback" not in err
    monkeypatch.setenv("EMPO_DEBUG", "1")
    assert data_cli.main(["info", "hopper-medium"]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_a_full_disk_is_one_line_naming_the_file(workspace, capsys, monkeypatch):
    """An OSError from writing (here a simulated ENOSPC) is one line naming the file, status 2."""
    import errno

    import empo.cli.model as model_module

    def full(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(model_module, "atomic_write_text", full)
    code = model_cli.main(model_train(workspace))
    err = capsys.readouterr().err
    assert code == 2 and err.splitlines()[-1] == f"error: {workspace.root / 'model' / 'run.json'}: No space left on device"


def test_help_still_works(capsys):
    with pytest.raises(SystemExit) as exit_info:
        data_cli.main(["build", "--help"])
    assert exit_info.value.code == 0 and "--size" in capsys.readouterr().out
