"""The loop's per-epoch diagnostics: model return against real return, the penalty, Q against its bound."""

import csv
import json
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import empo.cli.train as train_cli
from empo import pipeline
from empo.data.tasks import get_task
from empo.errors import EmpoError
from empo.evaluation.policy_eval import PolicyEvaluator
from empo.loop.config import resolve_config
from empo.loop.diagnostics import DIAGNOSTICS, data_penalty, model_return
from empo.loop.penalty import Penalty
from empo.loop.trainer import Trainer
from tests.test_loop_support import FakeDynamics, synthetic_transitions


@dataclass
class Step:
    next_obs: torch.Tensor
    reward: torch.Tensor
    terminal: torch.Tensor
    penalty: torch.Tensor


class CountingModel:
    """Reward 1 a step, penalty 2; a sample ends after ``life`` = its first coordinate steps."""

    def step(self, obs, act, generator=None):
        next_obs = obs.clone()
        next_obs[:, 0] -= 1
        ones = torch.ones(obs.shape[0])
        return Step(next_obs, ones, next_obs[:, 0] <= 0, 2 * ones)


def test_the_model_return_sums_raw_and_penalised_rewards_until_each_sample_terminates():
    start = torch.tensor([[3.0, 0.0], [100.0, 0.0]])  # the first ends after 3 steps, the second lives on
    out = model_return(CountingModel(), lambda obs: torch.zeros(obs.shape[0], 1), start, horizon=10,
                       penalty=Penalty(0.25), generator=torch.Generator())
    assert out["model_length"] == pytest.approx((3 + 10) / 2)
    assert out["model_return"] == pytest.approx((3 + 10) / 2)
    assert out["model_penalised_return"] == pytest.approx((3 + 10) / 2 * (1 - 0.25 * 2))


def test_the_data_penalty_is_the_mean_penalty_of_the_data_transitions():
    model = FakeDynamics()
    obs, act = torch.zeros(6000, 11), torch.rand(6000, 3)
    assert data_penalty(model, obs, act, torch.Generator()) == pytest.approx(float(act.abs().sum(dim=1).mean()), rel=1e-5)


def test_the_evaluator_reports_discounted_and_prefix_returns():
    task = get_task("hopper-medium")
    evaluator = PolicyEvaluator(task, episodes=2)
    policy = lambda obs: torch.zeros(obs.shape[0], 3)  # noqa: E731  (hopper falls within a few hundred steps)
    try:
        full = evaluator.evaluate(policy, seed=3, gamma=1.0)
        prefix = evaluator.evaluate(policy, seed=3, gamma=0.5, prefix_steps=5)
    finally:
        evaluator.close()
    assert full.discounted_returns == pytest.approx(full.returns) and full.prefix_returns == pytest.approx(full.returns)
    assert prefix.returns == pytest.approx(full.returns) and prefix.prefix_lengths == [5, 5]
    # each healthy step is worth about 1 (alive bonus) and discounting by 0.5 keeps less than two of them
    assert all(4 < r < 6 for r in prefix.prefix_returns) and all(r < 2.1 for r in prefix.discounted_returns)


@pytest.mark.parametrize("algo", ["mopo", "empo"])
def test_a_smoke_run_logs_every_diagnostic_and_they_are_consistent(tmp_path, monkeypatch, algo):
    data = synthetic_transitions(n=600)
    monkeypatch.setattr(pipeline, "prepare_dataset", lambda *args, **kwargs: data)
    run_dir = tmp_path / "run"
    argv = ["--task", "hopper-medium", "--algo", algo, "--preset", "smoke", "--run-dir", str(run_dir), "--no-progress",
            "--set", "diagnostics.horizon=20", "--set", "diagnostics.every=2", "--set", f"{algo}.penalty_unit=data"]
    assert train_cli.main(argv) == 0
    with (run_dir / "progress.csv").open() as f:
        rows = list(csv.DictReader(f))
    odd, even = rows[0], rows[1]  # diagnostics on epochs 2 and 4 only
    assert all(math.isnan(float(odd[f"diag_{name}"])) for name in DIAGNOSTICS)
    values = {name: float(even[f"diag_{name}"]) for name in DIAGNOSTICS}
    assert all(math.isfinite(v) for v in values.values()), values
    assert values["exploitation_gap"] == pytest.approx(values["model_return"] - values["real_return"], abs=1e-3)
    assert 1 <= values["model_length"] <= 20 and 1 <= values["real_length"] <= 20
    assert values["q_bound"] == pytest.approx(float(data.rewards.max()) / (1 - 0.99), rel=1e-4)
    assert values["data_penalty_mean"] > 0 and values["penalty_vs_data"] > 0
    summary = json.loads((run_dir / "summary.json").read_text())  # the coefficient in data units, applied to the raw penalty
    assert summary["penalty_coef_applied"] == pytest.approx(summary_coef(run_dir) / values["data_penalty_mean"], rel=1e-4)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    assert {"diag/exploitation_gap", "diag/q_start", "diag/penalty_vs_data"} <= set(events.Tags()["scalars"])


def summary_coef(run_dir):
    import yaml

    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    return config[config["algo"]]["penalty_coef"]


def test_diagnostics_change_no_update_of_the_run(tmp_path):
    """The same run with and without them: the same actor, the same scores (their draws are their own)."""
    dataset = synthetic_transitions().qlearning().to_tensors("cpu")
    actors = []
    for start_states in (0, 8):
        config = resolve_config("hopper-medium", "mopo", "smoke", overrides={
            "training": {"eval_episodes": 0, "epochs": 2}, "diagnostics": {"start_states": start_states, "horizon": 5}})
        trainer = Trainer(config, dataset, FakeDynamics(), tmp_path / str(start_states), progress=False)
        trainer.run()
        actors.append(trainer.agent.state_dict()["actor"])
    assert all(torch.equal(actors[0][k], actors[1][k]) for k in actors[0])


def test_bad_diagnostics_settings_are_errors_naming_them():
    with pytest.raises(EmpoError, match="horizon"):
        resolve_config("hopper-medium", "mopo", "smoke", overrides={"diagnostics": {"horizon": 0}})
    with pytest.raises(EmpoError, match="horizn"):
        resolve_config("hopper-medium", "mopo", "smoke", overrides={"diagnostics": {"horizn": 5}})
    assert np.isfinite(resolve_config("hopper-medium", "mopo", "smoke").diagnostics.horizon)


def test_a_penalty_in_data_units_divides_the_coefficient_by_the_models_mean_penalty_on_the_data(tmp_path):
    dataset = synthetic_transitions().qlearning().to_tensors("cpu")
    model = FakeDynamics()
    expected = float(dataset["actions"].abs().sum(dim=1).mean())  # FakeDynamics' penalty: |a|_1; every row is measured
    for unit, coef in (("raw", 5.0), ("data", 5.0 / expected)):
        config = resolve_config("hopper-medium", "mopo", "smoke", overrides={
            "training": {"eval_episodes": 0}, "mopo": {"penalty_coef": 5.0, "penalty_unit": unit}})
        trainer = Trainer(config, dataset, model, tmp_path / unit, progress=False)
        assert trainer.data_penalty_mean == pytest.approx(expected, rel=1e-5)
        assert trainer.penalty.coef == pytest.approx(coef, rel=1e-5)
        assert trainer.summary()["penalty_coef_applied"] == pytest.approx(coef, rel=1e-5)


def test_a_penalty_in_data_units_needs_a_positive_data_penalty(tmp_path):
    class Certain(FakeDynamics):
        def step(self, obs, act, generator=None):
            out = super().step(obs, act, generator)
            return Step(out.next_obs, out.reward, out.terminal, torch.zeros_like(out.penalty))

    config = resolve_config("hopper-medium", "mopo", "smoke", overrides={"mopo": {"penalty_unit": "data"}})
    with pytest.raises(EmpoError, match="penalty_unit: data needs the model's mean penalty on the data"):
        Trainer(config, synthetic_transitions().qlearning().to_tensors("cpu"), Certain(), tmp_path, progress=False)


def report_of_one_run(tmp_path, seed: int, lines: list[str]) -> str:
    """The report of one learn MOPO run on hopper-medium whose progress.csv is ``lines``."""
    from empo.evaluation.report import collect_runs, write_report

    run = tmp_path / "r0"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps(
        {"task": "hopper-medium", "algo": "mopo", "preset": "learn", "seed": seed, "status": "running", "epochs": len(lines) - 1}))
    (run / "progress.csv").write_text("\n".join(lines) + "\n")
    return write_report(collect_runs([tmp_path]), tmp_path / "report").read_text()


def test_a_report_shows_each_runs_diagnostics_over_its_last_ten_measured_epochs(tmp_path):
    lines = ["epoch,updates,normalized_score,diag_exploitation_gap,diag_q_start"]
    # 12 epochs: the gap of the last 10 measured ones (3..12) averages 7.5; epoch 12 measured no Q
    lines += [f"{e},{e * 1000},1.0,{e},{'nan' if e == 12 else 100}" for e in range(1, 13)]
    text = report_of_one_run(tmp_path, 0, lines)
    row = next(line for line in text.splitlines() if line.startswith("| hopper-medium | mopo | 0 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    header = next(line for line in text.splitlines() if line.startswith("| task | algorithm | seed | model return"))
    names = [c.strip() for c in header.strip("|").split("|")]
    values = dict(zip(names, cells, strict=True))
    assert values["gap"] == "7.5" and values["Q start"] == "100" and values["model return"] == "n/a"


def test_score_tracking_ranks_the_epochs_by_each_signal_after_the_warm_up():
    from empo.evaluation.report import score_tracking

    # 20 epochs: the first two (10%) are left out; the model's return follows the score, Q runs against it
    rows = [{"normalized_score": str(s), "diag_model_penalised_return": str(10 * s + 1), "diag_q_start": str(-s)}
            for s in [99, -99] + list(range(18))]
    tracking = score_tracking(rows)
    assert tracking["diag_model_penalised_return"] == pytest.approx(1.0)
    assert tracking["diag_q_start"] == pytest.approx(-1.0)
    assert tracking["epochs"] == 18
    rows[5]["diag_q_start"] = "nan"  # an epoch without the figure drops out of that signal only
    assert score_tracking(rows)["diag_q_start"] == pytest.approx(-1.0)
    assert score_tracking(rows[:9]) == {}  # too few epochs: no figure


def test_a_report_says_which_signals_track_each_runs_score(tmp_path):
    lines = ["epoch,updates,normalized_score,diag_model_penalised_return,diag_q_start"]
    scores = [(7 * e) % 30 for e in range(1, 31)]  # a score that jumps about
    lines += [f"{e},{e * 1000},{s},{s * 50},{100 + (e % 3)}" for e, s in enumerate(scores, start=1)]
    text = report_of_one_run(tmp_path, 1, lines)
    header = next(line for line in text.splitlines() if line.startswith("| task | algorithm | seed | epochs |"))
    row = next(line for line in text.splitlines() if line.startswith("| hopper-medium | mopo | 1 | 27 |"))
    values = dict(zip([c.strip() for c in header.strip("|").split("|")], [c.strip() for c in row.strip("|").split("|")], strict=True))
    assert values["model return ~ score"] == "1.00"
    assert abs(float(values["Q start ~ score"])) < 0.5


def test_rollouts_from_the_episode_starts_add_longer_rollouts_from_the_datas_episode_starts(tmp_path):
    dataset = synthetic_transitions().qlearning().to_tensors("cpu")
    starts = 7.0 + torch.arange(4, dtype=torch.float32)[:, None].expand(4, 11)  # recognisable episode starts
    overrides = {"training": {"eval_episodes": 0}, "diagnostics": {"start_states": 0}}
    plain = resolve_config("hopper-medium", "mopo", "smoke", overrides=overrides)
    config = resolve_config("hopper-medium", "mopo", "smoke", overrides={
        **overrides, "rollout": {"episode_starts": 3, "episode_horizon": 6}})
    assert config.model_buffer_capacity == plain.model_buffer_capacity + 3 * 6 * config.rollout.retain_rollouts
    never_ends = FakeDynamics(threshold=-1e9)
    lengths = []
    for cfg, name in ((plain, "plain"), (config, "starts")):
        trainer = Trainer(cfg, dataset, never_ends, tmp_path / name, progress=False, start_observations=starts)
        trainer.do_rollout()
        lengths.append(len(trainer.model_buffer))
        stored = trainer.model_buffer.storage["observations"][: len(trainer.model_buffer)]
        from_starts = (stored[:, None, :] == starts[None]).all(-1).any(-1)
        assert int(from_starts.sum()) == (3 if name == "starts" else 0)  # one first step per episode-start rollout
    assert lengths[1] == lengths[0] + 3 * 6  # nothing ends in this model: every rollout runs its 6 steps


def test_rollouts_from_the_episode_starts_need_them_and_a_valid_count(tmp_path):
    config = resolve_config("hopper-medium", "mopo", "smoke", overrides={"rollout": {"episode_starts": 2}})
    with pytest.raises(EmpoError, match="rollout.episode_starts"):
        Trainer(config, synthetic_transitions().qlearning().to_tensors("cpu"), FakeDynamics(), tmp_path, progress=False)
    for bad in ({"episode_starts": -1}, {"episode_horizon": 0}):
        with pytest.raises(EmpoError, match=next(iter(bad))):
            resolve_config("hopper-medium", "mopo", "smoke", overrides={"rollout": bad})
