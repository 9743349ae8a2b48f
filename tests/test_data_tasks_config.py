from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pytest

from empo.config import from_dict
from empo.data import Transitions, get_task, normalized_score, task_names
from empo.data.transitions import from_episodes
from empo.errors import EmpoError


def test_registry_knows_sizes_scores_and_rules():
    task = get_task("walker2d-medium-replay")
    assert (task.gym_id, task.obs_dim, task.act_dim, task.env.termination) == ("Walker2d-v5", 17, 6, "walker2d")
    assert task.d4rl_filename == "walker2d_medium_replay-v2.hdf5"
    assert task.minari_id == "empo/walker2d/medium-replay-v0"
    assert len(task_names()) == 15


def test_misspelt_task_lists_valid_names():
    with pytest.raises(EmpoError) as err:
        get_task("hoper-medium")
    assert "hoper-medium" in str(err.value)
    assert "did you mean 'hopper-medium'" in str(err.value)
    assert "walker2d-expert" in str(err.value)


def test_normalized_score_uses_d4rl_reference_returns():
    hopper = get_task("hopper-medium")
    assert hopper.normalized_score(-20.272305) == pytest.approx(0.0)
    assert hopper.normalized_score(3234.3) == pytest.approx(100.0)
    assert normalized_score(1420.0, -20.272305, 3234.3) == pytest.approx(44.25, abs=0.01)
    assert get_task("halfcheetah-random").normalized_score(12135.0) == pytest.approx(100.0)


def _episode(steps, terminal, rng):
    return {
        "observations": rng.normal(size=(steps + 1, 3)),
        "actions": rng.normal(size=(steps, 2)),
        "rewards": np.ones(steps),
        "terminations": np.r_[np.zeros(steps - 1, bool), terminal],
        "truncations": np.r_[np.zeros(steps - 1, bool), not terminal],
    }


def test_transitions_from_episodes_and_qlearning():
    rng = np.random.default_rng(0)
    tr = from_episodes([_episode(4, True, rng), _episode(3, False, rng)], {"source": "test"})
    assert len(tr) == 7 and tr.num_episodes == 2
    assert list(tr.episode_starts) == [0, 4]
    np.testing.assert_allclose(tr.episode_returns, [4.0, 3.0])
    np.testing.assert_array_equal(tr.next_observations[0], tr.observations[1])
    q = tr.qlearning()
    assert len(q) == 6 and q.timeouts.sum() == 0 and q.terminals.sum() == 1
    summary = tr.summary()
    assert summary["transitions"] == 6 and summary["timeouts"] == 1 and summary["terminals"] == 1
    tensors = tr.to_tensors("cpu")
    assert tensors["observations"].shape == (7, 3) and str(tensors["rewards"].dtype) == "torch.float32"


def test_transitions_validation_names_the_problem():
    rng = np.random.default_rng(0)
    tr = from_episodes([_episode(4, True, rng)])
    with pytest.raises(EmpoError, match="task hopper-medium .* expects 11"):
        tr.validate(get_task("hopper-medium"), origin="x")
    bad = Transitions(
        observations=np.ones((3, 11)), actions=np.ones((3, 3)), rewards=[0, np.nan, 0], next_observations=np.ones((3, 11)),
        terminals=np.zeros(3), timeouts=np.zeros(3), episode_starts=[0],
    )
    with pytest.raises(EmpoError, match="'rewards' contains NaN or inf \\(first at row 1\\)"):
        bad.validate(get_task("hopper-medium"), origin="x")


@dataclass
class _Inner:
    lr: float = 1e-3
    kind: Literal["a", "b"] = "a"


@dataclass
class _Outer:
    steps: int = 10
    inner: _Inner = field(default_factory=_Inner)
    flag: bool = False


def test_config_unknown_key_is_named():
    with pytest.raises(EmpoError, match="unknown key 'lrr' \\(did you mean 'lr'\\?\\)"):
        from_dict(_Outer, {"inner": {"lrr": 1}}, "cfg.yaml")


def test_config_types_are_checked_and_coerced():
    cfg = from_dict(_Outer, {"steps": 5, "inner": {"lr": 1, "kind": "b"}, "flag": True})
    assert cfg.inner.lr == 1.0 and isinstance(cfg.inner.lr, float) and cfg.inner.kind == "b"
    with pytest.raises(EmpoError, match="cfg.steps: expected an integer"):
        from_dict(_Outer, {"steps": "many"}, "cfg")
    with pytest.raises(EmpoError, match="cfg.flag: expected true or false"):
        from_dict(_Outer, {"flag": "yes"}, "cfg")
    with pytest.raises(EmpoError, match="cfg.inner.kind: 'c' is not one of"):
        from_dict(_Outer, {"inner": {"kind": "c"}}, "cfg")
