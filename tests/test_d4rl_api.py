"""``empo.d4rl``: D4RL's get_dataset / qlearning_dataset / get_normalized_score over our datasets.

The expected rows are written out by hand from D4RL's documented rules: ``get_dataset`` gives
every step with ``terminals`` and ``timeouts`` as bools; ``qlearning_dataset`` drops a step cut
by time (its successor is unknown) unless ``terminate_on_end``, keeps terminal steps, and gives
``terminals`` as bools; scores are (return - random) / (expert - random), a fraction.
"""

import os
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

import empo.d4rl as d4rl
from empo.data import get_task
from empo.data.minari_io import write_minari
from empo.errors import EmpoError

HOPPER = get_task("hopper-medium")
RAW_KEYS = {"observations", "actions", "rewards", "terminals", "timeouts"}
QLEARNING_KEYS = {"observations", "actions", "next_observations", "rewards", "terminals"}
DOCS = Path(__file__).resolve().parents[1] / "docs" / "data.md"


def hand_episodes():
    """Three episodes, 9 steps: ends by the env's rule after 3 steps, by the time limit after 4,
    and at the end of the data after 2 (marked as a timeout too, as builds mark it)."""
    rng = np.random.default_rng(3)
    episodes = []
    for length, terminal in ((3, True), (4, False), (2, False)):
        episodes.append(
            {
                "observations": rng.normal(size=(length + 1, 11)),
                "actions": rng.uniform(-1, 1, size=(length, 3)).astype(np.float32),
                "rewards": rng.normal(size=length),
                "terminations": np.r_[np.zeros(length - 1, bool), terminal],
                "truncations": np.r_[np.zeros(length - 1, bool), not terminal],
            }
        )
    return episodes


@pytest.fixture
def local_build():
    episodes = hand_episodes()
    write_minari(HOPPER.minari_id, episodes, HOPPER, "unit test", "hand-built episodes")
    return episodes


def test_get_dataset_of_a_local_build_has_d4rl_keys_shapes_and_dtypes(local_build):
    data = d4rl.get_dataset("hopper-medium")
    assert set(data) == RAW_KEYS  # no next_observations, no made-up infos
    assert data["observations"].shape == (9, 11) and data["observations"].dtype == np.float32
    assert data["actions"].shape == (9, 3) and data["actions"].dtype == np.float32
    assert data["rewards"].shape == (9,) and data["rewards"].dtype == np.float32
    assert data["terminals"].dtype == np.bool_ and data["timeouts"].dtype == np.bool_
    assert np.flatnonzero(data["terminals"]).tolist() == [2]  # the env ended episode 0 after its 3rd step
    assert np.flatnonzero(data["timeouts"]).tolist() == [6, 8]  # the time limit, then the end of the data
    expected = np.concatenate([ep["observations"][:-1] for ep in local_build]).astype(np.float32)
    np.testing.assert_array_equal(data["observations"], expected)
    np.testing.assert_array_equal(
        data["rewards"], np.concatenate([ep["rewards"] for ep in local_build]).astype(np.float32)
    )
    # the same dataset under D4RL's name and under its Minari id
    for name in ("hopper-medium-v2", HOPPER.minari_id):
        other = d4rl.get_dataset(name)
        assert set(other) == RAW_KEYS
        np.testing.assert_array_equal(other["observations"], data["observations"])
        np.testing.assert_array_equal(other["timeouts"], data["timeouts"])


def test_qlearning_dataset_of_a_local_build_drops_timeouts_keeps_terminals(local_build):
    raw = d4rl.get_dataset("hopper-medium")
    q = d4rl.qlearning_dataset("hopper-medium-v2")
    assert set(q) == QLEARNING_KEYS
    kept = [0, 1, 2, 3, 4, 5, 7]  # rows 6 and 8 were cut by time: dropped
    assert q["observations"].shape == (7, 11) and q["next_observations"].shape == (7, 11)
    assert q["actions"].shape == (7, 3) and q["rewards"].shape == (7,) and q["terminals"].shape == (7,)
    for key in ("observations", "actions", "next_observations", "rewards"):
        assert q[key].dtype == np.float32, key
    assert q["terminals"].dtype == np.bool_
    np.testing.assert_array_equal(q["observations"], raw["observations"][kept])
    np.testing.assert_array_equal(q["rewards"], raw["rewards"][kept])
    assert q["terminals"].tolist() == [False, False, True, False, False, False, False]
    # within an episode the next observation is the following row's observation
    for out_row, row in enumerate(kept):
        if row != 2:  # row 2 is terminal: its successor is the episode's final state, not row 3
            np.testing.assert_array_equal(q["next_observations"][out_row], raw["observations"][row + 1])
    np.testing.assert_array_equal(q["next_observations"][2], local_build[0]["observations"][3].astype(np.float32))


def test_terminate_on_end_keeps_timeouts_with_their_true_successor(local_build):
    q = d4rl.qlearning_dataset("hopper-medium", terminate_on_end=True)
    assert q["observations"].shape == (9, 11)
    assert (
        q["terminals"].tolist() == [False, False, True] + [False] * 6
    )  # as D4RL's code: the time limit is no terminal
    # a local build knows the state after the time limit: not the next episode's first state
    np.testing.assert_array_equal(q["next_observations"][6], local_build[1]["observations"][4].astype(np.float32))
    np.testing.assert_array_equal(q["next_observations"][8], local_build[2]["observations"][2].astype(np.float32))


def write_d4rl_file(path, n=10, timeouts_at=(4,), terminals_at=(7,), extras=True):
    rng = np.random.default_rng(0)
    data = {
        "observations": rng.normal(size=(n, 11)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(n, 3)).astype(np.float32),
        "rewards": np.arange(n, dtype=np.float32),
        "terminals": np.isin(np.arange(n), terminals_at),
        "timeouts": np.isin(np.arange(n), timeouts_at),
    }
    with h5py.File(path, "w") as f:
        for key, value in data.items():
            f.create_dataset(key, data=value)
        if extras:
            f.create_dataset("next_observations", data=data["observations"] + 1.0)
            f.create_dataset("infos/qpos", data=rng.normal(size=(n, 6)))
            f.create_dataset("metadata/algorithm", data="SAC")
    return data


def test_a_d4rl_file_gives_its_arrays_as_stored(tmp_path):
    path = tmp_path / "hopper_medium-v2.hdf5"
    stored = write_d4rl_file(path)
    data = d4rl.get_dataset(path)
    assert set(data) == RAW_KEYS | {"next_observations", "infos/qpos", "metadata/algorithm"}  # D4RL returns every array
    assert data["infos/qpos"].shape == (10, 6) and data["metadata/algorithm"] == b"SAC"
    # the timeouts as the file has them: the last row is not marked, though it has no successor
    assert np.flatnonzero(data["timeouts"]).tolist() == [4] and data["timeouts"].dtype == np.bool_
    assert np.flatnonzero(data["terminals"]).tolist() == [7] and data["terminals"].dtype == np.bool_
    np.testing.assert_array_equal(data["observations"], stored["observations"])
    # str paths, and a file of another name with the task given, read the same
    np.testing.assert_array_equal(d4rl.get_dataset(str(path))["actions"], stored["actions"])
    other = tmp_path / "mine.hdf5"
    write_d4rl_file(other)
    np.testing.assert_array_equal(d4rl.get_dataset("hopper-medium", h5path=other)["rewards"], stored["rewards"])


def test_qlearning_dataset_of_a_d4rl_file_follows_d4rl_row_by_row(tmp_path):
    path = tmp_path / "hopper_medium-v2.hdf5"
    stored = write_d4rl_file(path)
    q = d4rl.qlearning_dataset(path)
    # row 4 (timeout) is dropped, and row 9 (the last: no following row) too; the stored
    # next_observations are ignored, as D4RL ignores them: the successor is the following row
    kept = np.array([0, 1, 2, 3, 5, 6, 7, 8])
    np.testing.assert_array_equal(q["observations"], stored["observations"][kept])
    np.testing.assert_array_equal(q["next_observations"], stored["observations"][kept + 1])
    np.testing.assert_array_equal(q["rewards"], kept.astype(np.float32))
    assert q["terminals"].tolist() == [row == 7 for row in kept]
    assert q["terminals"].dtype == np.bool_ and q["rewards"].dtype == np.float32
    ends = d4rl.qlearning_dataset(path, terminate_on_end=True)
    np.testing.assert_array_equal(ends["rewards"], np.arange(9, dtype=np.float32))  # every row but the last
    np.testing.assert_array_equal(ends["next_observations"][4], stored["observations"][5])
    assert not ends["terminals"][4]


def test_a_d4rl_file_in_the_dataset_dir_is_found_by_name(tmp_path):
    folder = Path(os.environ["D4RL_DATASET_DIR"])  # the test's own (conftest)
    folder.mkdir(parents=True)
    stored = write_d4rl_file(folder / "hopper_medium-v2.hdf5", extras=False)
    for name in ("hopper-medium", "hopper-medium-v2"):
        data = d4rl.get_dataset(name)
        assert set(data) == RAW_KEYS
        np.testing.assert_array_equal(data["rewards"], stored["rewards"])
        assert len(d4rl.qlearning_dataset(name)["rewards"]) == 8


def test_qlearning_dataset_of_a_given_dataset_dict():
    n = 2500
    dataset = {
        "observations": np.arange(n, dtype=np.float32)[:, None].repeat(11, axis=1),
        "actions": np.zeros((n, 3), np.float32),
        "rewards": np.arange(n, dtype=np.float32),
        "terminals": np.isin(np.arange(n), [500]),
    }
    # old datasets without timeouts: D4RL counts steps and treats each episode's 1000th as cut by time;
    # the episode after the terminal at row 500 starts at 501, so its 1000th step is row 1500
    q = d4rl.qlearning_dataset("hopper-medium-v2", dataset=dataset)
    assert sorted(set(range(n)) - set(q["rewards"].astype(int).tolist())) == [1500, 2499]
    dataset["timeouts"] = np.isin(np.arange(n), [10, 20])
    q = d4rl.qlearning_dataset(dataset=dataset)
    assert sorted(set(range(n)) - set(q["rewards"].astype(int).tolist())) == [10, 20, 2499]
    np.testing.assert_array_equal(q["next_observations"][:, 0], q["observations"][:, 0] + 1)
    assert q["terminals"].sum() == 1 and q["terminals"].dtype == np.bool_
    with pytest.raises(EmpoError, match="missing key\\(s\\) terminals"):
        d4rl.qlearning_dataset(dataset={k: v for k, v in dataset.items() if k != "terminals"})
    with pytest.raises(EmpoError, match="'actions' has 3 rows but 'rewards' has 2500"):
        d4rl.qlearning_dataset(dataset={**dataset, "actions": np.zeros((3, 3))})


def test_normalized_score_is_d4rls_fraction():
    random_return, expert_return = -20.272305, 3234.3  # D4RL's hopper reference returns
    expected = (1000.0 - random_return) / (expert_return - random_return)
    assert d4rl.get_normalized_score("hopper-medium-v2", 1000.0) == pytest.approx(expected, rel=1e-12)
    assert d4rl.get_normalized_score("hopper-expert", random_return) == pytest.approx(0.0)
    assert d4rl.get_normalized_score("hopper-random", expert_return) == pytest.approx(1.0)
    assert isinstance(d4rl.get_normalized_score("hopper-medium", 1000), float)
    scores = d4rl.get_normalized_score("walker2d-medium-v2", np.array([1.629008, 4592.3]))
    np.testing.assert_allclose(scores, [0.0, 1.0])
    assert d4rl.reverse_normalized_score("hopper-medium", expected) == pytest.approx(1000.0)
    assert d4rl.get_normalized_score(Path("x/halfcheetah_medium_expert-v2.hdf5"), 12135.0) == pytest.approx(1.0)


def test_normalized_score_of_a_minari_id_reads_its_metadata():
    write_minari("other/hopper/mine-v0", hand_episodes(), HOPPER, "unit test", "metadata")
    assert d4rl.get_normalized_score("other/hopper/mine-v0", 3234.3) == pytest.approx(1.0)
    with pytest.raises(EmpoError, match="'other/hopper/absent-v0' is not on disk"):
        d4rl.get_normalized_score("other/hopper/absent-v0", 1.0)


@pytest.mark.parametrize(
    ("task", "message"),
    [
        (
            "hoper-medium",
            "unknown task 'hoper-medium' \\(did you mean 'hopper-medium'\\?\\).*a D4RL name such as hopper-medium-v2",
        ),
        ("hopper-medium-v0", "only D4RL's -v2 datasets are supported"),
        ("hopper-expert", "no dataset for hopper-expert: not built \\(run `empo-data build hopper-expert`\\)"),
        ("empo/hopper/expert-v0", "not on disk.*; build it with `empo-data build hopper-expert`"),
        ("nowhere/data.hdf5", "the task cannot be told from the file name"),
        ("nowhere/hopper_medium-v2.hdf5", "D4RL file not found: nowhere/hopper_medium-v2.hdf5"),
    ],
)
def test_bad_tasks_are_one_clear_error(task, message):
    with pytest.raises(EmpoError, match=message):
        d4rl.get_dataset(task)


def test_the_docs_example_runs(local_build, capsys):
    section = DOCS.read_text().split("## Scripts written for D4RL", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1
    namespace: dict = {"episode_return": 1000.0}
    exec(compile(blocks[0], "docs/data.md", "exec"), namespace)
    assert namespace["dataset"]["observations"].shape == (7, 11)
    assert capsys.readouterr().out.strip()
