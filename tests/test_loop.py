"""The whole pipeline on a tiny synthetic hopper dataset: both algorithms, resume, divergence.

The CLI runs end to end on the smoke preset with the real transition models (trained in
seconds on the synthetic data) and evaluates in the real Hopper-v5 env (1 episode an epoch).
"""

import csv
import json

import pytest
import torch

import empo.cli.train as train_cli
from empo import pipeline
from empo.data.tasks import get_task
from empo.errors import EmpoError
from empo.loop.config import resolve_config
from empo.loop.trainer import CSV_COLUMNS, Trainer
from empo.runs import load_run
from tests.test_loop_support import FakeDynamics, FakeStep, synthetic_transitions

NON_TIMING = [c for c in CSV_COLUMNS if not c.startswith("time_") and c != "wall_time"]


@pytest.fixture
def synthetic_dataset(monkeypatch):
    data = synthetic_transitions(n=600)
    monkeypatch.setattr(pipeline, "prepare_dataset", lambda *args, **kwargs: data)
    return data


def read_rows(run_dir):
    with (run_dir / "progress.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("algo", ["empo", "mopo"])
def test_pipeline_smoke(tmp_path, synthetic_dataset, algo, capsys):
    run_dir = tmp_path / "run"
    argv = ["--task", "hopper-medium", "--algo", algo, "--preset", "smoke", "--run-dir", str(run_dir), "--no-progress"]
    assert train_cli.main(argv) == 0
    out = capsys.readouterr().out
    for name in ("config.yaml", "run.json", "progress.csv", "summary.json", "checkpoint.pt"):
        assert (run_dir / name).is_file(), name
    summary = json.loads((run_dir / "summary.json").read_text())
    # the data's own score, beside which reports set the agent's
    info = json.loads((run_dir / "run.json").read_text())
    assert info["dataset_normalized_score"] == pytest.approx(synthetic_dataset.summary(get_task("hopper-medium"))["normalized_score"])
    # "final" is the finished policy's own evaluation, not the last epoch's few episodes
    episodes = summary["final_eval"]["episodes"]
    assert f"normalised score final {summary['final_eval_normalized_score']:.1f} ({episodes} episodes), last epoch" in out
    assert any((run_dir / "tb").iterdir())
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    assert {"eval/return", "eval/return_std", "eval/normalized_score_std", "eval/length"} <= set(events.Tags()["scalars"])
    # the finished run's config and figures as TensorBoard hparams (a sweep folder compares runs by them)
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
    assert "hparams/final_eval_normalized_score" in events.Tags()["scalars"]
    assert (run_dir / "model_config.yaml").is_file()  # the resolved model settings beside config.yaml
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["algo"] == algo and summary["updates"] == 80
    assert summary["final_normalized_score"] is not None and summary["best_normalized_score"] is not None
    # the finished policy evaluated once more over training.final_eval_episodes (2 in the smoke preset)
    assert summary["final_eval"]["episodes"] == 2 and summary["final_eval_normalized_score"] == summary["final_eval"]["normalized_score"]
    rows = read_rows(run_dir)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[-1]["eval_length"]) >= 1 and int(rows[-1]["model_buffer_size"]) > 0
    # the model was cached: a second run reuses it
    assert train_cli.main([*argv[:-3], "--run-dir", str(tmp_path / "again"), "--no-progress", "--set", "training.epochs=1"]) == 0
    assert "using the cached" in capsys.readouterr().out


def test_resume_reproduces_the_uninterrupted_run(tmp_path, synthetic_dataset, capsys):
    common = ["--task", "hopper-medium", "--algo", "mopo", "--preset", "smoke", "--seed", "7", "--no-progress"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train_cli.main([*common, "--run-dir", str(straight)]) == 0
    assert train_cli.main([*common, "--run-dir", str(split), "--stop-after", "2"]) == 0
    assert json.loads((split / "summary.json").read_text())["status"] == "running"
    assert "--resume" in capsys.readouterr().out
    assert train_cli.main(["--resume", str(split), "--no-progress"]) == 0
    a, b = read_rows(straight), read_rows(split)
    assert len(a) == len(b) == 4
    for row_a, row_b in zip(a, b, strict=True):
        assert {k: row_a[k] for k in NON_TIMING} == {k: row_b[k] for k in NON_TIMING}
    state_a = torch.load(straight / "checkpoint.pt", weights_only=False)
    state_b = torch.load(split / "checkpoint.pt", weights_only=False)
    for key, value in state_a["agent"]["actor"].items():
        assert torch.equal(value, state_b["agent"]["actor"][key]), key
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (straight, split))
    assert sa["final_normalized_score"] == sb["final_normalized_score"] and sa["updates"] == sb["updates"]


def test_final_policy_best_model_return_finishes_with_the_chosen_epochs_agent(tmp_path, synthetic_dataset):
    common = ["--task", "hopper-medium", "--algo", "mopo", "--preset", "smoke", "--seed", "5", "--no-progress",
              "--set", "training.final_policy=best_model_return", "--set", "training.final_policy_from=0.5"]
    chosen, split, upto = tmp_path / "chosen", tmp_path / "split", tmp_path / "upto"
    assert train_cli.main([*common, "--run-dir", str(chosen)]) == 0
    summary = json.loads((chosen / "summary.json").read_text())
    rows = read_rows(chosen)
    # the epoch whose penalised model return was the highest, from epoch 3 on (0.5 x 4 epochs); with
    # this seed neither the last epoch nor the best of all (epoch 2, before the window)
    returns = {int(r["epoch"]): float(r["diag_model_penalised_return"]) for r in rows}
    best = max((e for e in returns if e >= 3), key=lambda e: (returns[e], -e))
    assert best != 4 and max(returns, key=returns.get) < 3
    info = summary["final_policy"]
    assert info["rule"] == "best_model_return" and info["epoch"] == best and info["from_epoch"] == 3
    assert info["model_penalised_return"] == pytest.approx(returns[best])
    # the last epoch's policy is evaluated too, over the same number of episodes
    assert summary["last_policy_eval"]["episodes"] == summary["final_eval"]["episodes"] == 2
    # the finished checkpoint holds the chosen epoch's agent: the same run stopped after that epoch has it
    assert train_cli.main([*common, "--run-dir", str(upto), "--stop-after", str(best)]) == 0
    final, at_best = (torch.load(d / "checkpoint.pt", weights_only=False)["agent"]["actor"] for d in (chosen, upto))
    assert all(torch.equal(final[k], at_best[k]) for k in final)
    # the report puts the last epoch's policy beside the chosen one
    import empo.cli.report as report_cli

    assert report_cli.main([str(chosen), "--out", str(tmp_path / "report")]) == 0
    table = (tmp_path / "report" / "report.md").read_text()
    assert "| final | last policy | last epoch |" in table
    assert f"{summary['last_policy_eval_normalized_score']:.1f}" in table.split("| final | last policy |")[1]
    # interrupted and resumed, the run chooses the same and ends with the same figures
    assert train_cli.main([*common, "--run-dir", str(split), "--stop-after", "2"]) == 0
    assert train_cli.main(["--resume", str(split), "--no-progress"]) == 0
    resumed = json.loads((split / "summary.json").read_text())
    for key in ("final_policy", "final_eval", "last_policy_eval"):
        assert resumed[key] == summary[key], key
    # where the rule picks the last epoch (this seed, from epoch 2 on), one evaluation serves as both
    last = tmp_path / "last"
    assert train_cli.main([*common[:7], "6", *common[8:-2], "--set", "training.final_policy_from=0.25", "--run-dir", str(last)]) == 0
    picked = json.loads((last / "summary.json").read_text())
    assert picked["final_policy"]["epoch"] == 4 and picked["last_policy_eval"] == picked["final_eval"]
    # the rule reads the diagnostics: a run without them is refused before it starts
    with pytest.raises(EmpoError, match=r"needs them every epoch: set diagnostics.start_states above 0 \(it is 0\)"):
        resolve_config("hopper-medium", "mopo", "smoke", overrides={"training": {"final_policy": "best_model_return"},
                                                                    "diagnostics": {"start_states": 0}})
    with pytest.raises(EmpoError, match="training.final_policy: 'best' is not one of 'last', 'best_model_return'"):
        resolve_config("hopper-medium", "mopo", "smoke", overrides={"training": {"final_policy": "best"}})


class ExplodingModel(FakeDynamics):
    """Behaves until its ``explode_after``-th step, then predicts NaN states."""

    def __init__(self, explode_after):
        super().__init__()
        self.explode_after = explode_after

    def step(self, obs, act, generator=None):
        out = super().step(obs, act, generator)
        if len(self.calls) > self.explode_after:
            return FakeStep(torch.full_like(out.next_obs, float("nan")), out.reward, out.terminal, out.penalty)
        return out


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    # no diagnostics: their model steps would count towards explode_after
    config = resolve_config("hopper-medium", "empo", "smoke", overrides={"training": {"eval_episodes": 0}, "diagnostics": {"start_states": 0}})
    dataset = synthetic_transitions().qlearning().to_tensors("cpu")
    trainer = Trainer(config, dataset, ExplodingModel(explode_after=5), tmp_path, progress=False)
    with pytest.raises(EmpoError, match=r"diverged in epoch 2: non-finite .*model outputs.*checkpoint \(epoch 1\)"):
        trainer.run()
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["epoch"] == 1
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_in_epoch"] == 2
    assert all(torch.isfinite(v).all() for v in state["agent"]["actor"].values())


def test_non_finite_actions_in_an_evaluation_mark_the_run_diverged(tmp_path):
    from empo.evaluation.policy_eval import PolicyEvaluator

    config = resolve_config("hopper-medium", "mopo", "smoke", overrides={"training": {"eval_episodes": 1, "epochs": 2}, "diagnostics": {"start_states": 0}})
    dataset = synthetic_transitions().qlearning().to_tensors("cpu")
    evaluator = PolicyEvaluator(get_task("hopper-medium"), 1, "cpu")
    trainer = Trainer(config, dataset, FakeDynamics(), tmp_path, progress=False, evaluator=evaluator)
    act = trainer.agent.act
    # the deterministic actions (the evaluation's) turn NaN; the updates' sampled ones stay finite
    trainer.agent.act = lambda obs, deterministic=False, generator=None: (
        torch.full_like(act(obs), float("nan")) if deterministic else act(obs, generator=generator))
    with pytest.raises(EmpoError, match=r"diverged in epoch 1: non-finite policy actions \(episode 0, step 0 of the evaluation\)"):
        trainer.run()
    evaluator.close()
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "diverged"


def test_trainer_with_a_fake_model_fills_the_model_buffer(tmp_path):
    config = resolve_config("hopper-medium", "mopo", "smoke", overrides={"training": {"eval_episodes": 0, "epochs": 2}})
    dataset = synthetic_transitions().qlearning().to_tensors("cpu")
    model = FakeDynamics()
    trainer = Trainer(config, dataset, model, tmp_path, progress=False)
    summary = trainer.run()
    assert summary["updates"] == 40 and summary["final_normalized_score"] is None
    # the first step measures the model's penalty on the data (every row of this small dataset), the next is a rollout's
    assert model.calls[:2] == [len(dataset["observations"]), config.rollout.start_states]
    assert 0 < len(trainer.model_buffer) <= config.model_buffer_capacity


def test_train_agent_runs_with_a_model_of_ones_own(tmp_path, synthetic_dataset):
    # benchmarks/archive/diag_swap_penalty.py runs the pipeline with a model of its own this way
    model = FakeDynamics()
    config = resolve_config("hopper-medium", "empo", "smoke", overrides={"training": {"epochs": 1}})
    run_dir = tmp_path / "run"
    summary = pipeline.train_agent(config, run_dir, device="cpu", model=model, progress=False, log=lambda message: None)
    assert summary["status"] == "finished" and model.calls, "the given model did the rollouts"
    assert json.loads((run_dir / "run.json").read_text())["model_dir"] is None


def test_a_model_missing_part_of_the_contract_is_a_clear_error(tmp_path, synthetic_dataset):
    class NoPredict(FakeDynamics):
        predict = None  # not a method

    class NoDevice:
        kind, obs_dim, act_dim = "bare", 11, 3

        def step(self, obs, act, generator=None):
            raise AssertionError("never stepped")

    config = resolve_config("hopper-medium", "mopo", "smoke", overrides={"training": {"epochs": 1}})
    with pytest.raises(EmpoError, match=r"\(NoDevice\) lacks device, predict: a model needs kind, obs_dim, act_dim, device, step, predict"):
        pipeline.train_agent(config, tmp_path / "a", device="cpu", model=NoDevice(), progress=False)
    with pytest.raises(EmpoError, match=r"\(NoPredict\): 'predict' must be a method"):
        pipeline.train_agent(config, tmp_path / "b", device="cpu", model=NoPredict(), progress=False)
    with pytest.raises(EmpoError, match=r"has obs_dim=17, but task hopper-medium needs 11"):
        pipeline.train_agent(config, tmp_path / "c", device="cpu", model=FakeDynamics(obs_dim=17), progress=False)
    assert not (tmp_path / "a" / "run.json").exists()


def test_a_misspelt_model_override_fails_before_the_dataset_is_read(tmp_path, monkeypatch):
    def no_data(*args, **kwargs):
        raise AssertionError("the dataset was read before the model settings were checked")

    monkeypatch.setattr(pipeline, "prepare_dataset", no_data)
    argv = ["--task", "hopper-medium", "--preset", "smoke", "--run-dir", str(tmp_path / "r"), "--set", "model.overrides.etm.epochz=2"]
    assert train_cli.main(argv) == 2
    config = resolve_config("hopper-medium", "empo", "smoke", overrides={"model": {"overrides": {"etm": {"hidden_size": "wide"}}}})
    with pytest.raises(EmpoError, match="hidden_size"):
        pipeline.train_agent(config, tmp_path / "r2", device="cpu", progress=False)


def test_a_resumed_run_logs_each_tensorboard_step_once(tmp_path):
    """An epoch logged after the last checkpoint (the process died before the next one) is run
    again on resume: TensorBoard must hold its step once, not twice."""
    import shutil

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = resolve_config("hopper-medium", "mopo", "smoke", overrides={"training": {"eval_episodes": 0}})
    dataset = synthetic_transitions().qlearning().to_tensors("cpu")
    Trainer(config, dataset, FakeDynamics(), tmp_path, progress=False).run(stop_after_epochs=2)
    shutil.copy(tmp_path / "checkpoint.pt", tmp_path / "after-2.pt")
    trainer = Trainer(config, dataset, FakeDynamics(), tmp_path, progress=False)
    trainer.load_checkpoint()
    trainer.run(stop_after_epochs=1)  # epoch 3 logged and checkpointed ...
    shutil.copy(tmp_path / "after-2.pt", tmp_path / "checkpoint.pt")  # ... but its checkpoint lost
    resumed = Trainer(config, dataset, FakeDynamics(), tmp_path, progress=False)
    resumed.load_checkpoint()
    resumed.run()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    steps = [event.step for event in events.Scalars("sac/critic_loss")]
    updates = [int(row["updates"]) for row in read_rows(tmp_path)]
    assert steps == updates == [20, 40, 60, 80]  # the step is the update count, each once
    # every CSV figure but the counters is in TensorBoard, its group not repeated in the tag
    tags = set(events.Tags()["scalars"])
    assert {"rollout/mean_length", "sac/critic_loss", "time/epoch", "time/wall_time", "rollout/model_buffer_size"} <= tags
    finite = [c for c, v in read_rows(tmp_path)[-1].items() if c not in ("epoch", "updates") and v not in ("nan", "")]
    assert len(tags) == len(finite)  # no evaluation here (eval_episodes 0): its NaN columns are not logged
    assert not any(tag.split("/")[1].startswith(tag.split("/")[0]) for tag in tags)


def test_resume_drops_a_progress_row_that_a_kill_cut_short(tmp_path):
    from empo.recorder import RunRecorder

    recorder = RunRecorder(tmp_path, "progress.csv", ["epoch", "score"])
    for epoch in (1, 2, 3):
        recorder.log_row({"epoch": epoch, "score": epoch * 10})
    with (tmp_path / "progress.csv").open("a") as f:
        f.write("4,4")  # killed mid-line... then the next line glues onto it
        f.write("\n5")
    recorder.resume_after(epoch=2, step=200)
    assert (tmp_path / "progress.csv").read_text().splitlines() == ["epoch,score", "1,10", "2,20"]


def test_devices_that_are_not_compute_devices_are_one_line_errors():
    with pytest.raises(EmpoError, match="this project runs on cpu, cuda or auto, not on meta"):
        pipeline.resolve_device("meta")


def test_a_new_start_clears_the_logs_of_one_that_died_before_its_first_checkpoint(tmp_path, synthetic_dataset):
    run_dir = tmp_path / "run"
    (run_dir / "tb").mkdir(parents=True)
    (run_dir / "progress.csv").write_text("epoch,updates\n1,20\n")  # killed after its first row, before the checkpoint
    config = resolve_config("hopper-medium", "mopo", "smoke", overrides={"training": {"epochs": 2}})
    said = []
    pipeline.train_agent(config, run_dir, device="cpu", progress=False, log=said.append)
    assert [int(r["epoch"]) for r in read_rows(run_dir)] == [1, 2]
    assert any("ended before its first checkpoint" in line for line in said)


def test_a_new_algorithm_is_one_registry_entry(tmp_path, synthetic_dataset, monkeypatch, capsys):
    # MOPO's penalty mechanism on the energy model: no new config field, no branch in the loop
    from empo.loop.algorithms import ALGORITHMS, AlgoConfig, Algorithm

    monkeypatch.setitem(ALGORITHMS, "mopo-etm", Algorithm("MOPO on the ETM", lambda: AlgoConfig(model_kind="etm", horizon=2)))
    config = resolve_config("hopper-medium", "mopo-etm", "smoke", overrides={"mopo-etm": {"penalty_coef": 0.5}})
    assert (config.algorithm.model_kind, config.algorithm.horizon, config.algorithm.penalty_coef) == ("etm", 2, 0.5)
    run_dir = tmp_path / "run"
    argv = ["--task", "hopper-medium", "--algo", "mopo-etm", "--preset", "smoke", "--run-dir", str(run_dir), "--no-progress",
            "--set", "mopo-etm.penalty_coef=0.5"]
    assert train_cli.main(argv) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["algo"] == "mopo-etm"
    saved = load_run(run_dir).config
    assert saved.algorithm == config.algorithm and saved.algorithms["empo"] == config.algorithms["empo"]
    assert "mopo-etm:" in (run_dir / "config.yaml").read_text()


def test_sb3_sac_as_the_loop_agent(tmp_path, synthetic_dataset, capsys):
    """SB3's SAC learns from the loop's mixed batches; the run folder, summary and exact resume are the built-in's."""
    import numpy as np

    from empo.integrations.sb3_agent import MixedReplayBuffer

    common = ["--task", "hopper-medium", "--algo", "mopo", "--preset", "smoke", "--agent", "sb3-sac", "--no-progress"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train_cli.main([*common, "--run-dir", str(straight)]) == 0
    summary = json.loads((straight / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["agent"] == "sb3-sac" and summary["updates"] == 80
    assert "sb3-sac does not apply" in capsys.readouterr().out  # the settings SB3's SAC has no place for
    state = (torch.random.get_rng_state(), np.random.get_state()[1].copy())
    load_run(straight)  # building SB3's SAC to load a run leaves the global generators alone
    assert torch.equal(state[0], torch.random.get_rng_state()) and (state[1] == np.random.get_state()[1]).all()
    rows = read_rows(straight)
    assert all(np.isfinite(float(r["critic_loss"])) and np.isfinite(float(r["alpha"])) for r in rows)
    assert all(r["q1_mean"] == "nan" for r in rows)  # SB3 does not report it: logged as not measured
    run = load_run(straight)
    obs = np.random.default_rng(0).normal(size=(5, 11)).astype(np.float32)
    actions = run.act(obs)
    assert actions.shape == (5, 3) and np.all(np.abs(actions) <= 1.0)
    # the same actions as SB3's own deterministic actor, and through a TorchScript export
    from empo.integrations.sb3_agent import make_sac
    from empo.runs import export_policy

    sac = make_sac(run.config, get_task("hopper-medium"), "cpu")
    sac.policy.load_state_dict(torch.load(straight / "checkpoint.pt", weights_only=False)["agent"]["parameters"]["policy"])
    with torch.no_grad():
        assert np.allclose(sac.actor(torch.as_tensor(obs), deterministic=True).numpy(), actions, atol=1e-6)
    exported = export_policy(run, tmp_path / "sb3.pt", "torchscript")
    with torch.no_grad():
        assert np.allclose(torch.jit.load(str(exported))(torch.as_tensor(obs)).numpy(), actions, atol=1e-6)
    # exact resume, as with the built-in agent
    assert train_cli.main([*common, "--run-dir", str(split), "--stop-after", "2"]) == 0
    assert train_cli.main(["--resume", str(split), "--no-progress"]) == 0
    for row_a, row_b in zip(rows, read_rows(split), strict=True):
        assert {k: row_a[k] for k in NON_TIMING} == {k: row_b[k] for k in NON_TIMING}
    # the mixed buffer serves the configured real ratio: real rows first, then model rows
    config = resolve_config("hopper-medium", "mopo", "smoke", overrides={"agent": "sb3-sac"})
    trainer = Trainer(config, synthetic_dataset.qlearning().to_tensors(), FakeDynamics(), tmp_path / "t", progress=False)
    trainer.do_rollout()
    buffer = trainer.agent.sac.replay_buffer
    assert isinstance(buffer, MixedReplayBuffer)
    sample = buffer.sample(200)
    real = int(200 * config.training.real_ratio)
    real_obs = trainer.real_buffer.storage["observations"][: len(trainer.real_buffer)]
    in_real = [(real_obs == row).all(dim=1).any().item() for row in sample.observations]
    assert all(in_real[:real]) and not all(in_real) and sample.rewards.shape == (200, 1) and sample.dones.shape == (200, 1)


def test_framework_agents_refuse_what_only_the_builtin_agent_does():
    # the published EMPO (penalty in the critic target, temperature clamp) runs with every agent
    # (tests/test_framework_penalty.py); the CUDA graph and sync_debug stay the built-in agent's
    for agent in ("sb3-sac", "tianshou-sac"):
        assert resolve_config("hopper-medium", "empo", "paper", overrides={"agent": agent}).agent == agent
    with pytest.raises(
        EmpoError,
        match=r"agent 'sb3-sac' cannot run runtime.cuda_graph=true .*; with this agent set runtime.cuda_graph=false$",
    ):
        resolve_config(
            "hopper-medium", "empo", "paper", overrides={"agent": "sb3-sac", "runtime": {"cuda_graph": True}}
        )
    with pytest.raises(EmpoError, match=r"agent 'tianshou-sac' cannot run sac.bc_weight=0.4 .*set sac.bc_weight=0$"):
        resolve_config("hopper-medium", "mopo", "smoke", overrides={"agent": "tianshou-sac", "sac": {"bc_weight": 0.4}})
    assert resolve_config("hopper-medium", "mopo", "smoke", overrides={"sac": {"bc_weight": 0.4}}).sac.bc_weight == 0.4
    with pytest.raises(EmpoError, match=r"agent 'sb3-sac' cannot run sac.actor_average_rate=0.001 .*set sac.actor_average_rate=null$"):
        resolve_config("hopper-medium", "mopo", "smoke", overrides={"agent": "sb3-sac", "sac": {"actor_average_rate": 0.001}})
    with pytest.raises(EmpoError, match="unknown agent 'sb4'"):
        resolve_config("hopper-medium", "mopo", "smoke", overrides={"agent": "sb4"})
    # the quick preset's EMPO takes the penalty at rollout time, so a framework's agent runs it
    assert resolve_config("hopper-medium", "empo", "quick", overrides={"agent": "sb3-sac"}).agent == "sb3-sac"


def test_model_samplers_change_inference_without_a_new_fit(tmp_path, synthetic_dataset, capsys):
    import yaml

    base = ["--task", "hopper-medium", "--algo", "empo", "--preset", "smoke", "--no-progress"]
    assert train_cli.main([*base, "--run-dir", str(tmp_path / "a")]) == 0
    assert train_cli.main([*base, "--run-dir", str(tmp_path / "b"), "--set", "model.samplers.etm.rollout_langevin.steps=3"]) == 0
    out = capsys.readouterr().out
    assert "using the cached etm model" in out and "inference samplers changed" in out
    saved = yaml.safe_load((tmp_path / "b" / "model_config.yaml").read_text())
    first = yaml.safe_load((tmp_path / "a" / "model_config.yaml").read_text())
    assert saved["etm"]["rollout_langevin"]["steps"] == 3 != first["etm"]["rollout_langevin"]["steps"]
    assert {k: v for k, v in saved["etm"].items() if k != "rollout_langevin"} == {
        k: v for k, v in first["etm"].items() if k != "rollout_langevin"}
    # bad settings fail before any data is loaded
    for samplers, message in [
        ({"etm": {"train_langevin": {"steps": 3}}}, "the inference samplers are rollout_langevin, eval_langevin"),
        ({"etm": {"rollout_langevin": {"stepz": 3}}}, "unknown key 'stepz'"),
        ({"etm": {"rollout_langevin": {"init": "mean_head"}}}, "needs mean_head: true"),
    ]:
        with pytest.raises(EmpoError, match=message):
            pipeline.model_config_for(resolve_config("hopper-medium", "empo", "smoke", overrides={"model": {"samplers": samplers}}))
    with pytest.raises(EmpoError, match="the samplers are the ETM's; this is a ftm model"):
        pipeline.model_config_for(resolve_config("hopper-medium", "mopo", "smoke",
                                                 overrides={"model": {"samplers": {"etm": {"eval_langevin": {"steps": 3}}}}}))


def test_model_cache_keys_stay_those_of_the_models_already_cached():
    """A new model setting at its default must not move the key (every cached model would be fitted
    again); these keys were computed by the code before etm.mean_head existed."""
    from empo.models import load_model_config

    data = synthetic_transitions(n=300)
    expected = {("etm", "quick"): "2d7f9d2110be", ("etm", "paper"): "cc20142268b8", ("ftm", "quick"): "3fc0655b1431"}
    for (kind, preset), digest in expected.items():
        assert (
            pipeline.model_cache_dir("hopper-medium", load_model_config(kind, preset), data, 0).name
            == f"hopper-medium-{kind}-{digest}-s0"
        )
    with_head = load_model_config("etm", "quick", {"etm": {"mean_head": True}})
    assert "2d7f9d2110be" not in pipeline.model_cache_dir("hopper-medium", with_head, data, 0).name
