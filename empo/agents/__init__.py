"""Agents: the hand-written, device-resident SAC used by the EMPO/MOPO loop."""

from empo.agents.sac import SAC, SACConfig, TargetPenalty

__all__ = ["SAC", "SACConfig", "TargetPenalty"]
