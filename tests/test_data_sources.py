"""D4RL hdf5 reading, the Minari round trip, local builds and their bad-input errors."""

import os

import h5py
import numpy as np
import pytest
import torch

from empo.data import get_task, load_transitions
from empo.data.behaviour import POLICY_DIR, PolicyActor, load_policy, save_policy
from empo.data.build import build_dataset, replay_episodes
from empo.data.d4rl import load_d4rl
from empo.data.minari_io import is_built, load_minari, minari_root, write_minari
from empo.data.tasks import ENVS
from empo.errors import EmpoError

HOPPER = get_task("hopper-medium")


def write_d4rl(path, n=10, obs_dim=11, act_dim=3, next_obs=True, drop=(), timeouts_at=(4,), terminals_at=(7,), **override):
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
    data = {
        "observations": obs,
        "actions": rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32),
        "rewards": np.arange(n, dtype=np.float32),
        "terminals": np.isin(np.arange(n), terminals_at),
        "timeouts": np.isin(np.arange(n), timeouts_at),
    }
    if next_obs:
        data["next_observations"] = obs + 1.0
    data.update(override)
    with h5py.File(path, "w") as f:
        for key, value in data.items():
            if key not in drop:
                f.create_dataset(key, data=value, compression="gzip")
    return data


def test_d4rl_with_next_observations_follows_qlearning_semantics(tmp_path):
    data = write_d4rl(tmp_path / "d.hdf5")
    tr = load_d4rl(tmp_path / "d.hdf5", HOPPER)
    assert len(tr) == 10 and list(tr.episode_starts) == [0, 5, 8]
    q = tr.qlearning()
    assert len(q) == 9  # the timeout step 4 is dropped
    assert 4.0 not in q.rewards
    assert q.terminals.sum() == 1 and q.rewards[q.terminals > 0][0] == 7.0  # terminal kept
    np.testing.assert_allclose(q.next_observations, np.delete(data["next_observations"], 4, axis=0))
    s = tr.summary(HOPPER)
    assert (s["transitions"], s["episodes"], s["terminals"], s["timeouts"]) == (9, 3, 1, 1)
    assert s["mean_return"] == pytest.approx(45 / 3)
    assert s["source"].startswith("d4rl:")


def test_d4rl_without_next_observations_uses_the_following_row(tmp_path):
    data = write_d4rl(tmp_path / "d.hdf5", next_obs=False)
    q = load_d4rl(tmp_path / "d.hdf5", HOPPER).qlearning()
    # step 4 (timeout) and step 9 (last, no successor) are dropped
    assert len(q) == 8
    np.testing.assert_allclose(q.next_observations[0], data["observations"][1])
    assert 9.0 not in q.rewards


def test_d4rl_found_by_file_name_in_dataset_dir(tmp_path):
    d4rl_dir = tmp_path / "dd"
    d4rl_dir.mkdir()
    os.environ["D4RL_DATASET_DIR"] = str(d4rl_dir)
    write_d4rl(d4rl_dir / "hopper_medium-v2.hdf5")
    assert load_transitions("hopper-medium").source.endswith("hopper_medium-v2.hdf5")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"drop": ("timeouts",)}, "missing hdf5 key\\(s\\) timeouts"),
        ({"rewards": np.zeros(9, np.float32)}, "'rewards' has 9 rows but 'observations' has 10"),
        ({"obs_dim": 17}, "observations have 17 dimensions, but task hopper-medium \\(Hopper-v5\\) expects 11"),
        ({"act_dim": 6}, "actions have 6 dimensions, but task hopper-medium \\(Hopper-v5\\) expects 3"),
        ({"rewards": np.r_[np.zeros(5), np.inf, np.zeros(4)].astype(np.float32)}, "'rewards' contains NaN or inf \\(first at row 5\\)"),
    ],
)
def test_d4rl_bad_input_errors(tmp_path, kwargs, message):
    write_d4rl(tmp_path / "bad.hdf5", **kwargs)
    with pytest.raises(EmpoError, match=message) as err:
        load_d4rl(tmp_path / "bad.hdf5", HOPPER)
    assert "bad.hdf5" in str(err.value)


def test_d4rl_missing_and_unreadable_files(tmp_path):
    with pytest.raises(EmpoError, match="D4RL file not found: .*nope.hdf5"):
        load_d4rl(tmp_path / "nope.hdf5", HOPPER)
    (tmp_path / "text.hdf5").write_text("not hdf5")
    with pytest.raises(EmpoError, match="text.hdf5: not a readable hdf5 file"):
        load_d4rl(tmp_path / "text.hdf5", HOPPER)


def _episodes(rng, lengths, obs_dim=11, act_dim=3):
    eps = []
    for i, t in enumerate(lengths):
        eps.append(
            {
                "observations": rng.normal(size=(t + 1, obs_dim)),
                "actions": rng.uniform(-1, 1, size=(t, act_dim)),
                "rewards": rng.normal(size=t),
                "terminations": np.r_[np.zeros(t - 1, bool), i % 2 == 0],
                "truncations": np.r_[np.zeros(t - 1, bool), i % 2 == 1],
            }
        )
    return eps


def test_minari_round_trip_keeps_every_array():
    rng = np.random.default_rng(1)
    eps = _episodes(rng, [5, 7, 3])
    write_minari("test/hopper/rt-v0", eps, HOPPER, "unit test", "round trip")
    tr = load_minari("test/hopper/rt-v0", HOPPER)
    assert len(tr) == 15 and tr.num_episodes == 3
    np.testing.assert_allclose(tr.observations[:5], eps[0]["observations"][:-1], rtol=1e-6)
    np.testing.assert_allclose(tr.next_observations[5:12], eps[1]["observations"][1:], rtol=1e-6)
    np.testing.assert_allclose(tr.rewards[12:], eps[2]["rewards"], rtol=1e-6)
    assert tr.terminals.sum() == 2 and tr.timeouts.sum() == 1
    assert tr.metadata["ref_max_score"] == pytest.approx(3234.3)
    assert tr.metadata["env_id"] == "Hopper-v5"


def test_minari_missing_id_and_wrong_env():
    with pytest.raises(EmpoError, match="Minari dataset 'nobody/none-v0' is not on disk"):
        load_transitions("hopper-medium", minari_id="nobody/none-v0")
    write_minari("test/walker-v0", _episodes(np.random.default_rng(2), [4], 17, 6), get_task("walker2d-random"), "t", "t")
    with pytest.raises(EmpoError, match="collected in Walker2d-v5, but task hopper-medium uses Hopper-v5"):
        load_transitions("hopper-medium", minari_id="test/walker-v0")


def test_interrupted_write_leaves_no_dataset(monkeypatch):
    import minari

    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(minari, "create_dataset_from_buffers", explode)
    with pytest.raises(KeyboardInterrupt):
        write_minari(HOPPER.minari_id, _episodes(np.random.default_rng(3), [4]), HOPPER, "t", "t")
    assert not is_built(HOPPER.minari_id)
    assert not list(minari_root().parent.glob(".empo-staging-*"))
    with pytest.raises(EmpoError, match="no dataset for hopper-medium: not built"):
        load_transitions("hopper-medium")


def test_tiny_builds_end_to_end(tmp_path):
    behaviour = tmp_path / "behaviour"
    actor = PolicyActor(11, 3)
    for level in ("medium", "expert"):
        save_policy(behaviour / f"hopper-{level}.pt", actor.state_dict(), {"level": level})
    build_dataset(get_task("hopper-random"), size=1500, seed=0, progress=False, log=lambda m: None)
    build_dataset(get_task("hopper-medium"), size=1200, seed=0, behaviour_dir=behaviour, progress=False, log=lambda m: None)
    build_dataset(get_task("hopper-medium-expert"), size=600, seed=0, behaviour_dir=behaviour, progress=False, log=lambda m: None)
    for name, size in (("hopper-random", 1500), ("hopper-medium", 1200), ("hopper-medium-expert", 1200)):
        tr = load_transitions(name)
        assert len(tr) == size, name
        ends = np.append(tr.episode_starts[1:], len(tr)) - 1
        # every episode ends with exactly one of terminal / timeout, and nothing else is flagged
        np.testing.assert_array_equal(tr.terminals[ends] + tr.timeouts[ends], np.ones(len(ends)))
        assert tr.terminals.sum() + tr.timeouts.sum() == len(ends)
        assert np.all(np.diff(np.append(tr.episode_starts, len(tr))) <= 1000)
        # consecutive steps of one episode chain together
        inner = np.setdiff1d(np.arange(len(tr) - 1), ends)
        np.testing.assert_allclose(tr.next_observations[inner], tr.observations[inner + 1])
    actions = load_transitions("hopper-random").actions
    assert actions.min() >= -1 and actions.max() <= 1 and abs(actions.mean()) < 0.1


def test_medium_replay_from_a_saved_replay_buffer(tmp_path):
    rng = np.random.default_rng(4)
    n = 30
    obs = rng.normal(size=(n, 11)).astype(np.float32)
    nxt = np.roll(obs, -1, axis=0)
    terminals = np.zeros(n, np.float32)
    terminals[9] = 1
    timeouts = np.zeros(n, np.float32)
    timeouts[19] = 1
    (tmp_path / "hopper").mkdir()
    np.savez(tmp_path / "hopper" / "medium_replay.npz", observations=obs, actions=rng.uniform(-1, 1, (n, 3)).astype(np.float32),
             rewards=np.ones(n, np.float32), next_observations=nxt, terminals=terminals, timeouts=timeouts)
    eps = replay_episodes(tmp_path / "hopper" / "medium_replay.npz")
    assert [len(e["actions"]) for e in eps] == [10, 10, 10]
    assert [bool(e["truncations"][-1]) for e in eps] == [False, True, True]  # the last, unfinished one is cut
    build_dataset(get_task("hopper-medium-replay"), behaviour_dir=tmp_path / "hopper", progress=False, log=lambda m: None)
    s = load_transitions("hopper-medium-replay").summary()
    assert (s["episodes"], s["terminals"], s["timeouts"], s["transitions"]) == (3, 1, 2, 28)


def test_building_without_a_policy_says_what_to_run(tmp_path, monkeypatch):
    import empo.data.behaviour as behaviour

    # as for an env whose policies do not ship with the package
    monkeypatch.setattr(behaviour, "POLICY_DIR", tmp_path / "shipped-none")
    with pytest.raises(EmpoError, match="empo-data train-behaviour walker2d-expert"):
        build_dataset(get_task("walker2d-expert"), size=10, behaviour_dir=tmp_path, progress=False)
    with pytest.raises(EmpoError, match="empo-data train-behaviour hopper-medium"):
        build_dataset(get_task("hopper-medium-replay"), behaviour_dir=tmp_path, progress=False)


def test_behaviour_actor_is_seeded():
    actor = PolicyActor(11, 3)
    obs = np.ones((4, 11), np.float32)
    a = actor.act(obs, generator=torch.Generator().manual_seed(0))
    b = actor.act(obs, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a).max() <= 1


def test_train_behaviour_then_build_medium_and_replay(tmp_path):
    """The real training path on a tiny budget: thresholds reached, policies and replay written, builds use them."""
    import json

    from empo.data.behaviour import train_behaviour

    out = tmp_path / "hopper"
    state = train_behaviour(
        "hopper", out, until="expert", max_steps=400, eval_every=300, eval_episodes=2, learning_starts=200,
        bands={"medium": (-1e9, 1e9), "expert": (-1e9, None)}, checkpoint_every=350, progress=False, log=lambda m: None,
    )
    assert set(state["reached"]) == {"medium", "expert"}
    assert state["reached"]["medium"]["train_steps"] == 300
    assert json.loads((out / "state.json").read_text())["reached"]["medium"]["train_steps"] == 300
    replay = np.load(out / "medium_replay.npz")
    assert replay["observations"].shape == (299, 11)  # SB3 stores step 300 after the callback ran
    for level in ("medium-replay", "expert"):
        build_dataset(get_task(f"hopper-{level}"), size=300, behaviour_dir=out, progress=False, log=lambda m: None)
    assert len(load_transitions("hopper-medium-replay")) == 299
    assert len(load_transitions("hopper-expert")) == 300


def test_overshooting_the_medium_band_takes_a_snapshot_inside_it(tmp_path):
    """Every evaluation lands above a band set below any return: snapshots are evaluated and,
    none being inside, the closest one is taken, flagged, and the replay is cut at its step."""
    from empo.data.behaviour import train_behaviour

    out = tmp_path / "hopper"
    state = train_behaviour(
        "hopper", out, until="medium", max_steps=400, eval_every=300, eval_episodes=2, learning_starts=100,
        bands={"medium": (-1e9, -1e8)}, snapshots=3, progress=False, log=lambda m: None,
    )
    medium = state["reached"]["medium"]
    assert medium["in_band"] is False
    steps = sorted(e["step"] for e in state["evaluations"])
    assert steps == [100, 200, 300]  # the eval at 300 and the snapshots at 100 and 200
    assert np.load(out / "medium_replay.npz")["observations"].shape[0] == medium["train_steps"] - 1


def test_sigterm_checkpoints_at_the_next_step_and_the_run_resumes(tmp_path, monkeypatch):
    """SIGTERM during an evaluation: the run stops at the next step with a checkpoint there (not the
    periodic one), raises KeyboardInterrupt, and the same call resumes from that step."""
    import os
    import signal

    from stable_baselines3 import SAC

    import empo.data.behaviour as behaviour

    def evaluate_then_stop(actor, gym_id, episodes, seed, deterministic=False):
        os.kill(os.getpid(), signal.SIGTERM)
        return 0.0, 1.0

    monkeypatch.setattr(behaviour, "evaluate_actor", evaluate_then_stop)
    out = tmp_path / "hopper"
    logs: list[str] = []
    kwargs = dict(until="medium", max_steps=400, eval_every=150, eval_episodes=2, learning_starts=100,
                  bands={"medium": (50.0, None)}, confirm_episodes=0, checkpoint_every=10_000, progress=False,
                  log=logs.append)
    with pytest.raises(KeyboardInterrupt):
        behaviour.train_behaviour("hopper", out, **kwargs)
    assert SAC.load(out / "checkpoint.zip", device="cpu").num_timesteps == 151
    assert not list(out.glob("*.tmp"))  # written through temporary files, renamed into place
    assert "stopped at step 151" in logs[-1]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back

    monkeypatch.setattr(behaviour, "evaluate_actor", lambda actor, gym_id, episodes, seed, deterministic=False: (60.0, 1.0))
    state = behaviour.train_behaviour("hopper", out, **kwargs)
    assert "hopper: resuming from step 151" in logs
    assert state["reached"]["medium"]["train_steps"] == 300
    assert [e["step"] for e in state["evaluations"]] == [150, 300]


def test_choose_in_band_prefers_the_centre_of_the_band():
    import torch

    from empo.data.behaviour import Candidate, choose_in_band

    def c(step, mean):
        return Candidate(step, mean, 0.0, {"w": torch.zeros(1)})

    chosen, inside = choose_in_band([c(5000, 2400.0), c(4000, 1500.0), c(3000, 1300.0), c(2000, 800.0)], (1200.0, 1600.0))
    assert (chosen.step, inside) == (4000, True)
    chosen, inside = choose_in_band([c(5000, 2400.0), c(4000, 900.0)], (1200.0, 1600.0))
    assert (chosen.step, inside) == (4000, False)  # 300 below the band beats 800 above it
    chosen, inside = choose_in_band([c(5000, 3300.0)], (3150.0, None))
    assert (chosen.step, inside) == (5000, True)


def test_a_policy_in_band_over_few_episodes_must_hold_over_more(tmp_path, monkeypatch):
    """The 2-episode evaluation lands in the band but the confirming one does not: not accepted."""
    import empo.data.behaviour as behaviour

    calls = []

    def fake_evaluate(actor, gym_id, episodes, seed, deterministic=False):
        calls.append(episodes)
        return (100.0, 5.0) if episodes == 2 else (10.0, 5.0)

    monkeypatch.setattr(behaviour, "evaluate_actor", fake_evaluate)
    out = tmp_path / "hopper"
    state = behaviour.train_behaviour(
        "hopper", out, until="medium", max_steps=400, eval_every=300, eval_episodes=2, confirm_episodes=7,
        learning_starts=100, bands={"medium": (50.0, 150.0)}, progress=False, log=lambda m: None,
    )
    assert calls == [2, 7]
    assert state["reached"] == {}
    assert not (out / "hopper-medium.pt").exists() and not (out / "medium_replay.npz").exists()
    assert {"step": 300, "stochastic_return": 10.0, "std": 5.0, "episodes": 7} in state["evaluations"]

    # confirmed: accepted, with the confirming figures in the policy's metadata
    monkeypatch.setattr(behaviour, "evaluate_actor", lambda actor, gym_id, episodes, seed, deterministic=False: (120.0, 5.0))
    state = behaviour.train_behaviour(
        "hopper", tmp_path / "again", until="medium", max_steps=400, eval_every=300, eval_episodes=2, confirm_episodes=7,
        learning_starts=100, bands={"medium": (50.0, 150.0)}, progress=False, log=lambda m: None,
    )
    medium = state["reached"]["medium"]
    assert (medium["confirmed_return"], medium["confirm_episodes"]) == (120.0, 7)


def test_suite_snapshots_keep_the_actor_with_its_evaluation(tmp_path, monkeypatch):
    """--suite-every keeps the actor at each multiple, loadable, with the return it was evaluated at."""
    import empo.data.behaviour as behaviour
    from empo.data.tasks import ENVS

    returns = iter([11.0, 22.0, 33.0, 44.0])
    monkeypatch.setattr(behaviour, "evaluate_actor", lambda actor, gym_id, episodes, seed, deterministic=False: (next(returns), 1.0))
    out = tmp_path / "hopper"
    behaviour.train_behaviour(
        "hopper", out, until="medium", max_steps=400, eval_every=100, eval_episodes=2, learning_starts=50,
        bands={"medium": (1e8, None)}, suite_every=200, progress=False, log=lambda m: None,
    )
    suite = sorted((out / "suite").iterdir())
    assert [p.name for p in suite] == ["hopper-step0000200.pt", "hopper-step0000400.pt"]
    policy = behaviour.load_policy(suite[1], ENVS["hopper"])
    assert policy.meta["train_steps"] == 400 and policy.meta["stochastic_return"] == 44.0
    with pytest.raises(EmpoError, match="multiple of --eval-every"):
        behaviour.train_behaviour("hopper", tmp_path / "x", eval_every=100, suite_every=150, progress=False)


@pytest.mark.parametrize("path", sorted(POLICY_DIR.glob("*.pt")), ids=lambda p: p.stem)
def test_every_shipped_behaviour_policy_loads_for_its_env_and_was_accepted(path):
    """Each file in empo/data/policies is what `empo-data build ENV-LEVEL` will load: the actor fits
    the env's sizes, its meta names the same env and level, and its level was accepted in band."""
    env_name, level = path.stem.split("-", 1)
    policy = load_policy(path, ENVS[env_name])
    assert (policy.meta["env"], policy.meta["level"]) == (env_name, level)
    assert policy.meta["gym_id"] == ENVS[env_name].gym_id
    # the first policies were accepted at a return threshold ("target"), later ones in a band
    low, high = policy.meta["band"] if "band" in policy.meta else (policy.meta["target"], None)
    assert low <= policy.meta["stochastic_return"] and (high is None or policy.meta["stochastic_return"] <= high)
    act = policy.actor.act(np.zeros((2, ENVS[env_name].obs_dim), np.float32), generator=torch.Generator().manual_seed(0))
    assert act.shape == (2, ENVS[env_name].act_dim) and np.abs(act).max() <= 1
