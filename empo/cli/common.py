"""Shared pieces of the command-line tools: error handling, device and seed arguments."""

from __future__ import annotations

import argparse
import functools
import random
import sys
from collections.abc import Callable
from typing import Any

from empo.errors import EmpoError


def cli_entry(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a command's ``main`` so that user errors print one line and exit with status 2.

    Keyword arguments (injected components, e.g. ``empo-train``'s ``obtain``) pass through."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None, **kwargs: Any) -> int:
        try:
            return main(argv, **kwargs)
        except EmpoError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default="auto",
        help="torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:1, ... (default: auto)",
    )


def resolve_device(name: str):  # -> torch.device
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise EmpoError(f"--device: '{name}' is not a torch device (try cpu, cuda or auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EmpoError(f"--device {name}: CUDA is not available on this machine")
    return device


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
