"""Typed configs: YAML or dicts validated into dataclasses, strictly.

An unknown or misspelt key is an error that names it (and the closest valid key); values are
checked against the field's type. Nested dataclasses are built recursively.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from empo.errors import EmpoError

T = TypeVar("T")

# The transition-model presets (configs/models/*.yaml), here so that the commands list them without
# importing torch; empo.models.config.PRESETS is this tuple.
MODEL_PRESETS: tuple[str, ...] = ("paper", "quick", "quick-warm", "quick-accurate", "learn", "smoke")

#: integers in configs end up in numpy and torch, whose integers have 64 bits
INT_MIN, INT_MAX = -(2**63), 2**63 - 1


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; ``where`` names the source in error messages."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise EmpoError(f"{where}: expected a mapping of keys to values, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise unknown_key(key, list(fields), where)
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise EmpoError(f"{where}: {exc}") from None


def packaged_yaml(folder: str, name: str) -> dict[str, Any]:
    """``configs/<folder>/<name>.yaml`` of the installed package, as a mapping."""
    import importlib.resources

    resource = importlib.resources.files("empo.configs") / folder / f"{name}.yaml"
    if not resource.is_file():
        raise EmpoError(f"configs/{folder}/{name}.yaml is missing from the installed package")
    data = yaml.safe_load(resource.read_text()) or {}
    if not isinstance(data, dict):
        raise EmpoError(f"configs/{folder}/{name}.yaml: expected a mapping at the top level")
    return data


def preset_sections(value: Any, key: str, presets: tuple[str, ...], where: str, what: str = "preset") -> dict[str, dict[str, Any]]:
    """A YAML's ``key: {<preset>: {...}}`` (settings of presets that depend on the file's subject, e.g.
    a task), validated: a mapping of known preset names to mappings; empty when absent."""
    value = value or {}
    if not isinstance(value, dict):
        raise EmpoError(f"{where}: {key}: expected a mapping of {what} names to settings, got {value!r}")
    for name, section in value.items():
        if name not in presets:
            raise EmpoError(f"{where}: {key}.{name}: unknown {what}; valid presets: {', '.join(presets)}")
        if not isinstance(section, dict):
            raise EmpoError(f"{where}: {key}.{name}: expected a mapping of keys to values, got {section!r}")
    return value


def unknown_key(key: Any, valid: list[str], where: str) -> EmpoError:
    """The error for a key that is not one of ``valid``: it names the key, the closest valid one and all of them."""
    close = difflib.get_close_matches(str(key), valid, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return EmpoError(f"{where}: unknown key '{key}'{hint}; valid keys: {', '.join(sorted(valid))}")


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge two plain dicts (override wins); nested dicts merge key by key."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys, ``{"a.b": value}`` (an empty mapping is a value)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def dict_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two nested mappings, as ``key: old -> new``
    (sorted; a key on one side only shows ``(unset)`` on the other)."""
    a, b = flatten(old), flatten(new)
    shown = {key: (repr(a[key]) if key in a else "(unset)", repr(b[key]) if key in b else "(unset)")
             for key in set(a) | set(b)}
    return [f"{prefix}{key}: {was} -> {now}" for key, (was, now) in sorted(shown.items()) if was != now]


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def load_json_object(path: str | Path, what: str, missing_ok: bool = False) -> dict[str, Any]:
    """The JSON object in ``path``, as a one-line error naming the file otherwise (``what`` says whose
    file it is); with ``missing_ok`` a missing file reads as ``{}``."""
    path = Path(path)
    if missing_ok and not path.exists():
        return {}
    if path.is_dir():
        raise EmpoError(f"{path}: a folder, expected {what}")
    try:
        data = json.loads(path.read_text())
    except UnicodeDecodeError:
        raise EmpoError(f"{path}: not text, expected {what} (JSON)") from None
    except json.JSONDecodeError as exc:
        raise EmpoError(f"{path}: not valid JSON ({exc}); expected {what}") from None
    if not isinstance(data, dict):
        raise EmpoError(f"{path}: expected a JSON object ({what}), got {type(data).__name__}")
    return data


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise EmpoError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except UnicodeDecodeError:
        raise EmpoError(f"{path}: not a text file, expected YAML") from None
    except yaml.YAMLError as exc:
        raise EmpoError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise EmpoError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def save_yaml(obj: Any, path: str | Path) -> None:
    """Write ``obj`` (a dataclass or a dict) as YAML, atomically: an interruption leaves the old file or none."""
    from empo.utils import atomic_write_text

    data = to_dict(obj) if dataclasses.is_dataclass(obj) else obj
    atomic_write_text(Path(path), yaml.safe_dump(data, sort_keys=False))


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else from_dict(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except EmpoError as exc:
                errors.append(str(exc))
        raise EmpoError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise EmpoError(f"{where}: {value!r} is not one of {', '.join(map(repr, choices))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise EmpoError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise EmpoError(f"{where}: expected a mapping, got {value!r}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is not Any:
            return {key: _coerce(item, args[1], f"{where}.{key}") for key, item in value.items()}
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise EmpoError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise EmpoError(f"{where}: expected an integer, got {value!r}")
        if not INT_MIN <= value <= INT_MAX:
            raise EmpoError(f"{where}: {value} is out of range, expected an integer from -2**63 to 2**63-1")
        return value
    if hint is float:
        if isinstance(value, str):
            # PyYAML (YAML 1.1) reads exponents without a dot, e.g. 3e-4, as strings
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise EmpoError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise EmpoError(f"{where}: expected a finite number, got {value!r}")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise EmpoError(f"{where}: expected a string, got {value!r}")
        return value
    return value
