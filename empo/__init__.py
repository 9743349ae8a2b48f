"""EMPO: offline model-based RL with Energy-based Transition Models (ETM).

Data flows through the subpackages in this order (DESIGN.md section 2):
``data`` (datasets -> Transitions) -> ``models`` (ETM / FTM dynamics) ->
``loop`` (rollout engine, buffers, training loop) -> ``agents`` (SAC) ->
``evaluation`` (scores, transition error, OPE). ``cli`` holds the commands.
"""

__version__ = "0.1.0"
