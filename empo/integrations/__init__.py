"""Adapters that let other RL frameworks' agents learn on EMPO's models (docs/integrations.md).

Each adapter lives in its own module and imports its framework only there, so that importing
``empo`` never needs stable-baselines3 (``empo.integrations.sb3``).
"""
