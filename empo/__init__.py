"""EMPO: offline model-based RL with Energy-based Transition Models (ETM).

Data flows through the subpackages in this order (docs/training.md, "The loop"):
``data`` (datasets -> Transitions) -> ``models`` (ETM / FTM dynamics) ->
``loop`` (rollout engine, buffers, training loop) -> ``agents`` (SAC) ->
``evaluation`` (policy evaluation in the real env with normalised scores; transition error of a
model). ``cli`` holds the commands. The published settings are gathered in docs/method.md.
"""

__version__ = "0.1.0"
