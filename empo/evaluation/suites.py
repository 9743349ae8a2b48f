"""Policy suites for off-policy evaluation, shipped in the package with their true values.

A suite is policies of graded quality on one env, as DOPE built its suites: snapshots of one SAC
training run (``empo-data train-behaviour ENV-expert --suite-every 25000`` keeps one every 25k
steps in its ``suite/`` folder) from near-random to the best the run reached, plus uniform random
actions. ``build_suite`` picks ``count`` snapshots spread evenly over the run's evaluated returns,
copies their actor weights into ``empo/data/policies/suites/`` (``<env>-step<N>.pt``) and computes
each policy's true value (mean discounted return of real episodes, :func:`empo.evaluation.ope.true_values`),
cached in the suite's index ``<env>-index.json`` with the settings it was computed with. (One flat
folder for every env: a folder per env would be a package that setuptools warns about.) ``empo-ope
--policies suite`` reads the suite and uses the cached values when its settings match.
Commands: ``empo-data suite ENV --from DIR`` (build), ``empo-data suite ENV`` (without
``--from``: recompute the values).
"""

from __future__ import annotations

import importlib.resources
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from empo.errors import EmpoError

INDEX = "{env}-index.json"
RANDOM = "random"


def suites_root() -> Path:
    """``empo/data/policies/suites`` of the installed (or checked-out) package."""
    return Path(str(importlib.resources.files("empo.data") / "policies" / "suites"))


def read_suite(env: str, root: Path | None = None) -> dict[str, Any]:
    """The index of ``env``'s shipped suite; a one-line error when there is none."""
    from empo.config import load_json_object

    folder = root or suites_root()
    path = folder / INDEX.format(env=env)
    if not path.is_file():
        shipped = sorted(p.name.removesuffix("-index.json") for p in folder.glob("*-index.json"))
        have = f"; shipped suites: {', '.join(shipped)}" if shipped else "; no suite is shipped yet"
        raise EmpoError(f"no policy suite for {env} in {folder}{have} (build one with: empo-data suite {env} --from DIR)")
    index = load_json_object(path, f"the index of the {env} policy suite")
    if not isinstance(index.get("policies"), list) or not index["policies"]:
        raise EmpoError(f"{path}: 'policies' must be a non-empty list")
    return index


def _candidates(sources: list[Path], env: str) -> list[tuple[Path, dict[str, Any]]]:
    """Behaviour actors (``.pt`` with ``state_dict`` and ``meta``) for ``env`` in ``sources`` (files or
    folders, searched one level down), with a recorded ``stochastic_return``."""
    files: list[Path] = []
    for source in sources:
        if source.is_dir():
            files += sorted(source.glob("*.pt")) + sorted(source.glob("*/*.pt"))
        elif source.is_file():
            files.append(source)
        else:
            raise EmpoError(f"{source}: no such file or folder of behaviour actors")
    found = []
    for file in files:
        try:
            blob = torch.load(file, map_location="cpu", weights_only=True)
        except Exception:
            continue
        meta = blob.get("meta") if isinstance(blob, dict) else None
        if isinstance(meta, dict) and meta.get("env") == env and meta.get("stochastic_return") is not None:
            found.append((file, meta))
    return found


def graded(returns: list[float], count: int) -> list[int]:
    """Indices of ``count`` items whose returns are spread evenly from the lowest to the highest."""
    order = np.argsort(returns)
    if count >= len(order):
        return [int(i) for i in order]
    targets = np.linspace(returns[order[0]], returns[order[-1]], count)
    chosen: list[int] = []
    for target in targets:  # the closest item not yet chosen to each evenly spaced return
        left = [int(i) for i in order if int(i) not in chosen]
        chosen.append(min(left, key=lambda i: abs(returns[i] - target)))
    return sorted(chosen, key=lambda i: returns[i])


def build_suite(
    env: str,
    sources: list[Path],
    count: int = 11,
    episodes: int = 10,
    gamma: float = 0.995,
    seed: int = 0,
    out_root: Path | None = None,
    source_command: str = "",
    progress: bool = True,
    log: Any = print,
) -> dict[str, Any]:
    """Pick ``count`` graded actors from ``sources``, copy them into the suite folder with uniform random
    actions as one more policy, compute every true value; returns the index written."""
    candidates = _candidates(sources, env)
    if len(candidates) < 2:
        raise EmpoError(f"{', '.join(map(str, sources))}: {len(candidates)} behaviour actors of {env} with a recorded "
                        "return; a suite needs at least 2 (train with: empo-data train-behaviour ENV-expert --suite-every 25000)")
    # one actor per (run seed, training step): a run's best or medium actor saved at a snapshot's step is
    # that snapshot again
    unique: dict[tuple[int, int], tuple[Path, dict[str, Any]]] = {}
    for file, meta in candidates:
        unique.setdefault((int(meta.get("seed", 0)), int(meta.get("train_steps", 0))), (file, meta))
    candidates = list(unique.values())
    picked = [candidates[i] for i in graded([float(m["stochastic_return"]) for _, m in candidates], count)]
    several_runs = len({int(meta.get("seed", 0)) for _, meta in picked}) > 1
    folder = out_root or suites_root()
    staging = folder / f".{env}-staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    entries: list[dict[str, Any]] = [{"name": RANDOM, "file": None, "train_steps": 0, "training_return": None,
                                      "source": "uniform random actions"}]
    for file, meta in picked:
        steps = int(meta.get("train_steps", 0))
        name = f"{env}-s{int(meta.get('seed', 0))}-step{steps:07d}" if several_runs else f"{env}-step{steps:07d}"
        shutil.copyfile(file, staging / f"{name}.pt")
        entries.append({"name": name, "file": f"{name}.pt", "train_steps": steps,
                        "training_return": round(float(meta["stochastic_return"]), 1), "source": str(file)})
    seeds = sorted({int(meta.get("seed", 0)) for _, meta in picked})
    index = {
        "env": env,
        "source_command": source_command,
        # what reproduces the snapshots (every 25k steps when trained as the shipped suites were)
        "training_command": " ; ".join(f"empo-data train-behaviour {env}-expert --suite-every 25000 --seed {s}" for s in seeds),
        "created": time.strftime("%Y-%m-%d"),
        "policies": entries,
    }
    index = _with_true_values(index, staging, episodes, gamma, seed, progress, log)
    # the old suite's files out, the new ones in, the index last (a suite is read through its index)
    (folder / INDEX.format(env=env)).unlink(missing_ok=True)
    for old in [*folder.glob(f"{env}-step*.pt"), *folder.glob(f"{env}-s*-step*.pt")]:
        old.unlink()
    for new in staging.iterdir():
        new.rename(folder / new.name)
    staging.rmdir()
    (folder / INDEX.format(env=env)).write_text(json.dumps(index, indent=1) + "\n")
    return index


def recompute_true_values(env: str, episodes: int = 10, gamma: float = 0.995, seed: int = 0, root: Path | None = None,
                          progress: bool = True, log: Any = print) -> dict[str, Any]:
    folder = root or suites_root()
    index = _with_true_values(read_suite(env, root), folder, episodes, gamma, seed, progress, log)
    (folder / INDEX.format(env=env)).write_text(json.dumps(index, indent=1) + "\n")
    return index


def _with_true_values(index: dict[str, Any], folder: Path, episodes: int, gamma: float, seed: int, progress: bool,
                      log: Any) -> dict[str, Any]:
    from empo.data.tasks import get_task
    from empo.evaluation.ope import true_values

    task = get_task(f"{index['env']}-medium")
    policies = suite_policies(index, folder, task)
    started = time.perf_counter()
    values, errors = true_values(policies, task, episodes, gamma, seed, progress=progress)
    seconds = time.perf_counter() - started
    log(f"true values of {len(policies)} policies ({episodes} episodes each) in {seconds:.0f} s")
    for entry, value, error in zip(index["policies"], values, errors, strict=True):
        entry["true_value"], entry["true_stderr"] = round(float(value), 3), round(float(error), 3)
    index["true_values"] = {"episodes": episodes, "gamma": gamma, "seed": seed, "seconds": round(seconds, 1),
                            "computed": time.strftime("%Y-%m-%d")}
    return index


def suite_policies(index: dict[str, Any], folder: Path, task: Any) -> list[Any]:
    """The suite's policies as OPE policies, each with its cached true value (if any) in ``meta``."""
    from empo.evaluation.ope import load_policy

    policies = []
    for entry in index["policies"]:
        spec = RANDOM if entry.get("file") is None else folder / str(entry["file"])
        (policy,) = load_policy(spec, task)
        policy.name = str(entry["name"])
        policy.source = f"suite {index['env']}: {entry.get('source', spec)}"
        policy.meta = {**policy.meta, "train_steps": entry.get("train_steps"), "training_return": entry.get("training_return")}
        if "true_value" in entry and "true_values" in index:
            policy.meta["cached_true_value"] = (float(entry["true_value"]), float(entry["true_stderr"]), dict(index["true_values"]))
        policies.append(policy)
    return policies


def shipped_suite(task: Any) -> list[Any]:
    """The policies of the shipped suite of ``task``'s env, with their cached true values."""
    return suite_policies(read_suite(task.env.name), suites_root(), task)
