"""Making gymnasium MuJoCo envs, with MuJoCo's own warnings routed through Python's ``warnings``.

Without this, MuJoCo prints e.g. HalfCheetah's deprecated-attribute warning on every env it
builds and appends it to a MUJOCO_LOG.TXT in the current folder.
"""

from __future__ import annotations

import warnings
from typing import Any

_handler_installed = False


def _mujoco_warning(message: str) -> None:
    warnings.warn(f"MuJoCo: {message.strip()}", RuntimeWarning, stacklevel=2)


def route_mujoco_warnings() -> None:
    """Send MuJoCo's warnings to Python's ``warnings`` (once per process)."""
    global _handler_installed
    if not _handler_installed:
        import mujoco

        mujoco.set_mju_user_warning(_mujoco_warning)
        _handler_installed = True


def make_env(gym_id: str, **kwargs: Any):  # -> gymnasium.Env
    import gymnasium as gym

    route_mujoco_warnings()
    return gym.make(gym_id, **kwargs)
