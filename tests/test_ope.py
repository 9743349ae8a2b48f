"""Off-policy evaluation: metrics on hand-computed cases, FQE on closed-form values, the model-based
estimator with the simulator as the model, policy formats, and empo-ope end to end."""

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from empo import pipeline
from empo.data.tasks import get_task
from empo.data.transitions import Transitions
from empo.errors import EmpoError
from empo.evaluation.ope import (
    FQE,
    ModelEstimator,
    OPEPolicy,
    load_policies,
    normalised_abs_error,
    ope_metrics,
    pearson,
    rank,
    real_episodes,
    regret_at,
    spearman,
    true_values,
)
from tests.test_loop_support import synthetic_transitions

HOPPER = get_task("hopper-medium")
POLICIES = Path(__file__).resolve().parents[1] / "empo" / "data" / "policies"


def test_metrics_on_hand_computed_cases():
    true = np.array([0.0, 10.0, 20.0, 30.0])
    assert spearman(true, [1.0, 2.0, 3.0, 4.0]) == pytest.approx(1.0)
    assert spearman(true, [4.0, 3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    # one swap among 4: 1 - 6 * 2 / (4 * 15) = 0.8
    assert spearman(true, [1.0, 3.0, 2.0, 4.0]) == pytest.approx(0.8)
    assert list(rank([5.0, 1.0, 5.0, 3.0])) == [3.5, 1.0, 3.5, 2.0]
    assert pearson([1.0, 2.0, 3.0], [2.0, 4.0, 7.0]) == pytest.approx(0.9933992677987828)
    # the estimate ranks policy 2 (true 20) first: regret (30 - 20) / 30
    assert regret_at(1, true, [0.0, 1.0, 9.0, 5.0]) == pytest.approx(1 / 3)
    assert regret_at(2, true, [0.0, 1.0, 9.0, 5.0]) == 0.0
    assert normalised_abs_error(true, true + 3.0) == pytest.approx(0.1)
    metrics = ope_metrics(true, true)
    assert metrics["spearman"] == pytest.approx(1.0) and metrics["regret@1"] == 0.0 and "regret@5" not in metrics


def constant_policy(value: float) -> OPEPolicy:
    return OPEPolicy(f"const{value}", lambda obs: torch.full((obs.shape[0], HOPPER.act_dim), value), "test")


def mdp_data(n: int, reward_from_action: bool, terminal: bool, seed: int = 0) -> Transitions:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, HOPPER.obs_dim)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(n, HOPPER.act_dim)).astype(np.float32)
    rewards = act[:, 0] if reward_from_action else np.ones(n, np.float32)
    return Transitions(
        observations=obs, actions=act, rewards=rewards, next_observations=rng.normal(size=obs.shape).astype(np.float32),
        terminals=np.full(n, float(terminal)), timeouts=np.zeros(n), episode_starts=np.arange(0, n, 10),
    )


def test_fqe_finds_closed_form_values():
    # every step terminal and r = a[0]: Q(s, a) = a[0], so a constant policy is worth its constant
    data = mdp_data(2000, reward_from_action=True, terminal=True)
    fqe = FQE(data, HOPPER, steps=1500, batch_size=128, hidden=(64, 64), lr=1e-3, gamma=0.9, seed=0)
    values = fqe.estimate([constant_policy(0.5), constant_policy(-0.25)])
    assert values == pytest.approx([0.5, -0.25], abs=0.06)
    # r = 1 forever: Q = 1 / (1 - gamma) = 10 for any policy (bootstrapping through the target net)
    data = mdp_data(2000, reward_from_action=False, terminal=False)
    fqe = FQE(data, HOPPER, steps=3000, batch_size=128, hidden=(64, 64), lr=1e-3, tau=0.05, gamma=0.9, seed=0)
    policy = constant_policy(0.0)
    assert fqe.estimate([policy])[0] == pytest.approx(10.0, rel=0.05)
    # its curve: a point every 1,000 updates, the estimate climbing from near 0 to the value it returned
    curve = fqe.curves[policy.name]
    assert curve["updates"] == [1000, 2000, 3000] and len(curve["loss"]) == 3
    assert curve["value"][0] < curve["value"][-1] == pytest.approx(fqe.estimate([policy])[0])


@pytest.mark.parametrize("layer_norm", [True, False])
def test_fqe_fits_policies_together_as_it_fits_them_one_at_a_time(layer_norm):
    """Stacked weights are a speed-up, not a change: three policies fitted together get the curves
    and Q networks that three separate fits get (same initial weights and minibatches each)."""
    data = mdp_data(600, reward_from_action=True, terminal=False)
    policies = [constant_policy(0.5), constant_policy(-0.25),
                OPEPolicy("tilted", lambda obs: torch.tanh(obs[:, : HOPPER.act_dim]), "test")]
    kwargs = dict(steps=250, batch_size=64, hidden=(32, 32), lr=1e-3, tau=0.05, gamma=0.9, seed=3, layer_norm=layer_norm)
    together = FQE(data, HOPPER, policies_at_once=3, **kwargs)
    alone = FQE(data, HOPPER, policies_at_once=1, **kwargs)
    np.testing.assert_allclose(together.estimate(policies), alone.estimate(policies), rtol=1e-4, atol=1e-5)
    for policy in policies:
        assert together.curves[policy.name]["updates"] == [250]
        np.testing.assert_allclose(together.curves[policy.name]["loss"], alone.curves[policy.name]["loss"], rtol=1e-4)
    # the networks handed back are the members of the stack, as plain modules
    fits = together.fit_together(policies)
    x = torch.randn(5, HOPPER.obs_dim + HOPPER.act_dim)
    for (q, _), policy in zip(fits, policies, strict=True):
        single, _ = alone.fit(policy)
        torch.testing.assert_close(q(x), single(x), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(fits[0][0](x), fits[1][0](x))  # each policy its own network


def test_fqe_with_layer_norm_finds_the_closed_form_value():  # the default since 2026-12-07
    data = mdp_data(2000, reward_from_action=False, terminal=False)
    fqe = FQE(data, HOPPER, steps=3000, batch_size=128, hidden=(64, 64), lr=1e-3, tau=0.05, gamma=0.9, seed=0)
    assert sum(isinstance(m, torch.nn.LayerNorm) for m in fqe._q_network()) == 2  # on by default
    plain = FQE(data, HOPPER, steps=10, hidden=(64, 64), layer_norm=False)
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in plain._q_network())
    assert fqe.estimate([constant_policy(0.0)])[0] == pytest.approx(10.0, rel=0.05)


def test_fqe_in_horizon_units_fits_values_near_one_and_scales_them_back():
    # r = 1 forever, gamma 0.9: the value 10 is fitted as 1 (max|r| / (1 - gamma) = 10 per unit)
    data = mdp_data(2000, reward_from_action=False, terminal=False)
    fqe = FQE(data, HOPPER, steps=3000, batch_size=128, hidden=(64, 64), lr=1e-3, tau=0.05, gamma=0.9, seed=0,
              horizon_units=True)
    assert fqe.reward_scale == pytest.approx(10.0)
    policy = constant_policy(0.0)
    q, _ = fqe.fit(policy)
    with torch.no_grad():
        raw = q(torch.cat([fqe.starts, policy.act(fqe.starts)], -1)).mean().item()
    assert raw == pytest.approx(1.0, rel=0.05)
    assert fqe.curves == {} and fqe.estimate([policy])[0] == pytest.approx(10.0, rel=0.05)


def test_fqe_drift_reads_the_last_quarter_against_the_suites_spread():
    from empo.evaluation.ope_run import fqe_drift

    updates = [1000, 2000, 3000, 4000]
    drift = fqe_drift({"settled": {"updates": updates, "loss": [1.0] * 4, "value": [0.0, 90.0, 100.0, 100.0]},
                       "moving": {"updates": updates, "loss": [1.0] * 4, "value": [0.0, 5.0, 10.0, 20.0]}})
    assert drift["spread"] == 80.0  # final estimates 100 and 20
    assert drift["last_quarter_over_spread"] == {"settled": 0.0, "moving": pytest.approx(10.0 / 80.0)}
    assert drift["max"] == pytest.approx(0.125)
    # against each estimate's own final value, at least a quarter of the largest (100): the climber
    # moved 10 against max(20, 25)
    assert drift["last_quarter_relative"] == {"settled": 0.0, "moving": pytest.approx(0.4)}
    assert drift["max_relative"] == pytest.approx(0.4)
    small = fqe_drift({"best": {"updates": updates, "loss": [1.0] * 4, "value": [0.0, 90.0, 100.0, 100.0]},
                       "near_zero": {"updates": updates, "loss": [1.0] * 4, "value": [0.0, 1.0, 1.0, 2.0]}})
    assert small["last_quarter_relative"]["near_zero"] == pytest.approx(1.0 / 25.0)
    # on a scale given (the true values' range), not the final estimates' spread
    scaled = fqe_drift({"moving": {"updates": updates, "loss": [1.0] * 4, "value": [0.0, 5.0, 10.0, 20.0]}}, spread=50.0)
    assert scaled["spread"] == 50.0 and scaled["last_quarter_over_spread"] == {"moving": pytest.approx(0.2)}


def test_fqe_verdict_tells_a_steady_climb_from_a_swing():
    """A fit still climbing wants more updates; one that rises and falls, or collapses (hopper's suite at
    tau 0.05 and lr 1e-3: 538, 563, 597, 610, 600, 608, 568, 287, 13), may not settle with more: the
    report must say which."""
    from empo.evaluation.ope_run import fqe_drift, fqe_verdict, last_half_swing

    updates = list(range(1000, 9000, 1000))
    climb = {"updates": updates, "loss": [1.0] * 8, "value": [10.0, 50.0, 80.0, 100.0, 110.0, 120.0, 130.0, 140.0]}
    swing = {"updates": updates, "loss": [1.0] * 8, "value": [10.0, 50.0, 80.0, 100.0, 140.0, 60.0, 150.0, 110.0]}
    flat = {"updates": updates, "loss": [1.0] * 8, "value": [10.0, 50.0, 80.0, 100.0, 100.0, 100.0, 100.0, 100.0]}
    collapse = {"updates": updates, "loss": [1.0] * 8, "value": [10.0, 50.0, 80.0, 100.0, 100.0, 95.0, 60.0, 10.0]}
    assert last_half_swing(climb) == pytest.approx((40.0, 40.0))  # from 100 (at 4,000 of 8,000 updates) to 140
    assert last_half_swing(swing) == pytest.approx((40.0 + 80.0 + 90.0 + 40.0, 10.0))
    drift = fqe_drift({"climb": climb, "swing": swing, "flat": flat, "collapse": collapse})
    assert drift["falling_or_swinging"] == ["swing", "collapse"]  # the collapse moves one way: it fell
    assert fqe_verdict(drift).startswith(" (1 still climbing steadily: more --fqe-steps; 2 falling or swinging (swing, collapse)")
    steady = fqe_drift({"climb": climb, "flat": flat})
    assert steady["falling_or_swinging"] == [] and fqe_verdict(steady) == " (1 still climbing steadily: more --fqe-steps)"
    assert fqe_verdict(fqe_drift({"swing": swing})).startswith(" (1 falling or swinging (swing): not a fit cut short")
    assert fqe_verdict(fqe_drift({"flat": flat})) == ""


def test_model_estimator_with_the_simulator_as_the_model_gives_the_true_values():
    from empo.envs.simulator import SimulatorDynamics

    env = gym.make(HOPPER.gym_id)
    starts = np.stack([env.reset(seed=s)[0] for s in range(4)]).astype(np.float32)
    env.close()
    # a dataset whose episodes start where the env's episodes 0..3 start; its next states and
    # rewards span a range wide enough that the estimator's clipping never acts
    data = Transitions(
        observations=starts, actions=np.zeros((4, 3)), rewards=np.array([-10.0, 10.0, 0.0, 0.0]),
        next_observations=np.concatenate([starts[:2] - 10, starts[2:] + 10]), terminals=np.zeros(4),
        timeouts=np.zeros(4), episode_starts=np.arange(4),
    )
    policies = [constant_policy(0.0), OPEPolicy("lean", lambda obs: torch.tensor([[0.3, -0.2, 0.1]]).repeat(obs.shape[0], 1), "test")]
    true, _ = true_values(policies, HOPPER, episodes=4, gamma=0.99, max_steps=30)
    estimator = ModelEstimator(SimulatorDynamics(HOPPER), HOPPER, data, starts=4, horizon=30, gamma=0.99)
    assert estimator.estimate(policies) == pytest.approx(true, rel=0.02)
    # and its rollouts last as long as the real episodes (the constant policy falls, within 30 steps or not)
    lengths = []
    for policy in policies:
        per_start = []
        for s in range(4):
            env = gym.make(HOPPER.gym_id)
            obs, _ = env.reset(seed=s)
            steps, terminated = 0, False
            while steps < 30 and not terminated:
                obs, _, terminated, _, _ = env.step(policy.act(torch.as_tensor(obs[None], dtype=torch.float32))[0].numpy())
                steps += 1
            env.close()
            per_start.append(steps)
        lengths.append(np.mean(per_start))
    assert estimator.rollout_steps == pytest.approx(lengths, abs=0.5)
    # real_episodes, the loop of the true values, gives the same lengths and the true values' returns
    envs = [gym.make(HOPPER.gym_id) for _ in range(4)]
    for policy, length, value in zip(policies, lengths, true, strict=True):
        returns, steps = real_episodes(policy, envs, gamma=0.99, max_steps=30)
        assert steps.mean() == pytest.approx(length) and returns.mean() == pytest.approx(value)
    for env in envs:
        env.close()


def test_policy_formats_load_and_a_wrong_size_is_one_error(tmp_path):
    from stable_baselines3 import SAC

    model = SAC("MlpPolicy", gym.make(HOPPER.gym_id), policy_kwargs={"net_arch": [16, 16]}, seed=0, device="cpu")
    model.save(tmp_path / "sb3.zip")
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "m.pt").write_bytes((POLICIES / "hopper-medium.pt").read_bytes())
    (suite / "e.pt").write_bytes((POLICIES / "hopper-expert.pt").read_bytes())
    policies = load_policies(["random", str(POLICIES / "hopper-medium.pt"), str(tmp_path / "sb3.zip"), str(suite)], HOPPER)
    assert [p.name for p in policies] == ["random", "hopper-medium", "sb3", "e", "m"]
    obs = torch.zeros(5, HOPPER.obs_dim)
    for policy in policies:
        act = policy.act(obs)
        assert act.shape == (5, 3) and bool((act.abs() <= 1).all())
    assert policies[1].meta["level"] == "medium"
    with pytest.raises(EmpoError, match=r"halfcheetah-medium.pt: a policy for observations of size 17 and 6 actions \(halfcheetah\); hopper-medium has 11 and 3"):
        load_policies([str(POLICIES / "halfcheetah-medium.pt")], HOPPER)
    with pytest.raises(EmpoError, match="no such policy file or folder"):
        load_policies([str(tmp_path / "missing.pt")], HOPPER)
    # torch files that are not policies: said in one line, naming what was expected
    torch.save({"weight": torch.zeros(2)}, tmp_path / "dict.pt")
    with pytest.raises(EmpoError, match=r"dict.pt: a torch file holding a dict \(weight\), not a policy"):
        load_policies([str(tmp_path / "dict.pt")], HOPPER)
    torch.save({"state_dict": {"w": torch.zeros(2)}, "meta": {}}, tmp_path / "sd.pt")
    with pytest.raises(EmpoError, match="sd.pt: its 'state_dict' holds no actor weights"):
        load_policies([str(tmp_path / "sd.pt")], HOPPER)


def test_empo_ope_end_to_end_on_the_smoke_preset(tmp_path, monkeypatch, capsys):
    from empo.cli.ope import main

    monkeypatch.setattr(pipeline, "prepare_dataset", lambda *args, **kwargs: synthetic_transitions(n=600))
    out = tmp_path / "ope"
    argv = ["--task", "hopper-medium", "--policies", "random", str(POLICIES / "hopper-medium.pt"), str(POLICIES / "hopper-expert.pt"),
            "--preset", "smoke", "--episodes", "2", "--starts", "3", "--horizon", "20", "--fqe-steps", "200", "--sample",
            "--out", str(out), "--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    for name in ("values.csv", "metrics.json", "report.md", "scatter.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["estimators"]) == {"etm", "etm-sample", "ftm", "ftm-sample", "fqe"}
    for entry in metrics["estimators"].values():
        assert set(entry["metrics"]) >= {"abs_error", "spearman", "pearson", "regret@1"}
    rows = (out / "values.csv").read_text().splitlines()
    assert rows[0].startswith("policy,source,true_value,true_stderr,etm") and len(rows) == 4
    assert rows[0].endswith("etm_rollout_steps,etm-sample_rollout_steps,ftm_rollout_steps,ftm-sample_rollout_steps")
    assert all(1 <= float(v) <= 20 for row in rows[1:] for v in row.split(",")[-4:])
    report = (out / "report.md").read_text()
    assert "Mean model rollout length per policy" in report and "FQE's fits" in report and "| relative move |" in report
    # FQE's curve: 200 updates, so one point per policy, at the end, its value the reported estimate
    curve_rows = (out / "fqe_curve.csv").read_text().splitlines()
    assert curve_rows[0] == "policy,updates,loss,value" and len(curve_rows) == 4
    fqe_column = rows[0].split(",").index("fqe")
    assert [float(r.split(",")[-1]) for r in curve_rows[1:]] == pytest.approx([float(r.split(",")[fqe_column]) for r in rows[1:]])
    assert (out / "fqe_curve.png").is_file() and set(metrics["estimators"]["fqe"]["drift"]) == {
        "last_quarter_over_spread", "max", "spread", "last_quarter_relative", "max_relative", "falling_or_swinging"}
    assert "spearman" in capsys.readouterr().out
    assert metrics["config"]["fqe_layer_norm"] is True and "(no LayerNorm)" not in report
    # FQE without LayerNorm, as empo-ope ran it before 2026-12-07, on request
    plain = tmp_path / "plain"
    assert main(["--task", "hopper-medium", "--policies", "random", str(POLICIES / "hopper-medium.pt"), "--preset", "smoke",
                 "--estimators", "fqe", "--episodes", "2", "--fqe-steps", "50", "--fqe-no-layer-norm", "--out", str(plain),
                 "--no-progress", "--device", "cpu"]) == 0
    assert json.loads((plain / "metrics.json").read_text())["config"]["fqe_layer_norm"] is False
    assert "FQE 50 updates (no LayerNorm)" in (plain / "report.md").read_text()
    # the faster target and step, carried into the config, the fit and the report
    from empo.evaluation import ope

    built = []
    monkeypatch.setattr(ope.FQE, "fit_together", lambda self, policies, bar=None, fit=ope.FQE.fit_together:
                        built.append((self.tau, self.lr, len(policies))) or fit(self, policies, bar))
    fast = tmp_path / "fast"
    assert main(["--task", "hopper-medium", "--policies", "random", str(POLICIES / "hopper-medium.pt"), "--preset", "smoke",
                 "--estimators", "fqe", "--episodes", "2", "--fqe-steps", "50", "--fqe-tau", "0.05", "--fqe-lr", "1e-3",
                 "--out", str(fast), "--no-progress", "--device", "cpu"]) == 0
    fast_config = json.loads((fast / "metrics.json").read_text())["config"]
    assert (fast_config["fqe_tau"], fast_config["fqe_lr"]) == (0.05, 1e-3) and built == [(0.05, 1e-3, 2)]  # both policies in one fit
    assert "FQE 50 updates (tau 0.05, lr 0.001)" in (fast / "report.md").read_text()
    assert main(["--task", "hopper-medium", "--policies", "random", "random", "--fqe-tau", "0"]) == 2
    assert main(["--task", "hopper-medium", "--policies", "random", "random", "--fqe-lr", "2"]) == 2
    assert main(["--task", "hopper-medium", "--policies", "random", "--out", str(tmp_path / "x")]) == 2  # one policy
    assert main(["--task", "hopper-medium", "--policies", "random", "random", "--horizon", "0"]) == 2


def test_a_wrong_model_dir_is_an_error_before_any_slow_work(tmp_path, monkeypatch):
    """--model-dir is read by OPEConfig.check, before the dataset is built and the true values run."""
    from empo.evaluation.ope_run import OPEConfig, run_ope

    def no_slow_work(*args, **kwargs):
        raise AssertionError("the dataset was prepared before --model-dir was checked")

    monkeypatch.setattr(pipeline, "prepare_dataset", no_slow_work)
    config = OPEConfig(task="hopper-medium", policies=["random", "random"], estimators=["etm"], model_dirs={"etm": tmp_path / "none"})
    with pytest.raises(EmpoError, match="no trained model here"):
        run_ope(config, tmp_path / "out", progress=False, log=lambda m: None)
    assert not (tmp_path / "out").exists()
