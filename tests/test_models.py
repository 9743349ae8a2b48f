"""ETM and FTM ensembles: shapes, scalers, batched == per member, InfoNCE learns, save/load, errors."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from empo.data.tasks import get_task
from empo.data.transitions import Transitions
from empo.errors import EmpoError
from empo.models import (
    DynamicsModel,
    ModelConfig,
    StepResult,
    load_dynamics,
    load_model_config,
    train_dynamics,
)
from empo.models.config import parse_overrides
from empo.models.etm import EnergyEnsemble, infonce_loss
from empo.models.ftm import GaussianEnsemble
from empo.models.layers import MaxAbsScaler, Standardizer


def synthetic_transitions(obs_dim=11, act_dim=3, n=600, seed=0, episode_len=50):
    """Smooth toy dynamics with hopper's sizes; heights stay healthy."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32) * 0.1
    obs[:, 0] += 1.25
    act = rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32)
    mix = rng.normal(size=(act_dim, obs_dim)).astype(np.float32) * 0.05
    nxt = obs + act @ mix
    rew = act.sum(1) * 0.5
    timeouts = np.zeros(n)
    timeouts[episode_len - 1 :: episode_len] = 1
    return Transitions(obs, act, rew, nxt, np.zeros(n), timeouts, np.arange(0, n, episode_len))


def test_scalers_map_to_unit_ranges_and_back():
    x = torch.randn(100, 4) * torch.tensor([1.0, 10.0, 0.0, 3.0]) + 5.0
    z = Standardizer(4).fit(x)
    assert torch.allclose(z(x).mean(0), torch.zeros(4), atol=1e-4)
    assert torch.allclose(z.inverse(z(x)), x, atol=1e-4)
    assert z.std[2] == 1.0  # constant column: no division by zero
    m = MaxAbsScaler(4).fit(x - 5.0)
    assert m(x - 5.0).abs().max() <= 1.0 + 1e-6
    assert torch.allclose(m.inverse(m(x)), x)


def test_batched_energy_ensemble_equals_per_member_computation():
    torch.manual_seed(0)
    net = EnergyEnsemble(members=3, input_dim=5, target_dim=4, hidden_size=16, hidden_layers=3)
    x, y = torch.randn(3, 7, 5), torch.randn(3, 7, 2, 4)
    batched = net(x, y)
    assert batched.shape == (3, 7, 2)
    for m in range(3):
        mlp = net.member(m)
        single = mlp(torch.cat([x[m].unsqueeze(1).expand(-1, 2, -1), y[m]], dim=-1)).squeeze(-1)
        assert torch.allclose(batched[m], single, atol=1e-5)


def test_batched_gaussian_ensemble_equals_per_member_computation():
    torch.manual_seed(0)
    cfg = load_model_config("ftm", "smoke").ftm
    net = GaussianEnsemble(cfg, input_dim=5, target_dim=4)
    x = torch.randn(7, 5)
    mean, logvar = net(x)
    assert mean.shape == logvar.shape == (cfg.ensemble_size, 7, 4)
    assert (logvar <= net.max_logvar + 1e-6).all() and (logvar >= net.min_logvar - 1e-6).all()
    for m in range(cfg.ensemble_size):
        h = x
        for layer in net.hidden:
            h = torch.nn.functional.silu(layer.member(m)(h))
        raw_mean = net.output.member(m)(h)[:, :4]
        assert torch.allclose(mean[m], raw_mean, atol=1e-5)


def test_infonce_loss_falls_on_a_toy_problem():
    """y = sign(x) * 0.8 in 1-D: the contrastive loss should drop well below its start."""
    torch.manual_seed(0)
    cfg = load_model_config(
        "etm", "smoke", {"etm": {"num_negatives": 8, "train_langevin": {"steps": 5}}}
    ).etm
    net = EnergyEnsemble(members=2, input_dim=1, target_dim=1, hidden_size=32, hidden_layers=2)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(150):
        x = torch.rand(2, 64, 1, generator=gen) * 2 - 1
        y = torch.sign(x) * 0.8
        loss, nce, _ = infonce_loss(net, x, y, cfg, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(nce.mean()))
    # Langevin negatives end up close to the positive (hard negatives), so the loss plateaus
    # well above 0; it must still fall clearly below log(1 + K) and put the minimum in place.
    assert np.mean(losses[:5]) > 2.0 and np.mean(losses[-20:]) < 0.8 * np.mean(losses[:5])
    grid = torch.linspace(-1, 1, 41)
    x = torch.tensor([-0.7, -0.4, 0.4, 0.7]).view(1, 4, 1).expand(2, -1, -1)
    with torch.no_grad():
        energy = net(x, grid.view(1, 1, -1, 1).expand(2, 4, -1, -1))
    argmin = grid[energy.argmin(-1)]
    assert torch.allclose(argmin, torch.sign(x[..., 0]) * 0.8, atol=0.2)


def test_model_config_presets_and_overrides():
    paper = load_model_config("etm")
    defaults = ModelConfig(kind="etm")
    assert paper.etm == defaults.etm and paper.ftm == defaults.ftm  # paper.yaml == dataclass defaults
    assert paper.etm.num_negatives == 16 and paper.etm.train_langevin.steps == 50
    assert paper.etm.eval_langevin.noise == 0.0 and paper.ftm.elites == 5
    quick = load_model_config("ftm", "quick", {"ftm": {"elites": 3}})
    assert quick.kind == "ftm" and quick.ftm.elites == 3
    # The quick ETM may cut negatives and updates, not the negatives' Langevin refinement: with 10
    # steps InfoNCE collapsed and the ETM was 6x less accurate (docs/models.md).
    quick_etm = load_model_config("etm", "quick")
    assert quick_etm.etm.train_langevin == paper.etm.train_langevin
    assert quick_etm.etm.num_negatives < paper.etm.num_negatives
    assert parse_overrides(["etm.train_langevin.steps=7", "etm.lr=0.01"]) == {
        "etm": {"train_langevin": {"steps": 7}, "lr": 0.01}
    }


def test_unknown_config_key_is_an_error_naming_it():
    with pytest.raises(EmpoError, match="num_negativs"):
        load_model_config("etm", "smoke", {"etm": {"num_negativs": 3}})
    with pytest.raises(EmpoError, match="stepz"):
        load_model_config("etm", "paper", {"etm": {"train_langevin": {"stepz": 3}}})
    with pytest.raises(EmpoError, match="preset"):
        load_model_config("etm", "fast")
    with pytest.raises(EmpoError, match="kind"):
        load_model_config("gp")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One smoke-trained model of each kind (shared by the tests below)."""
    torch.set_num_threads(1)
    task = get_task("hopper-medium")
    data = synthetic_transitions()
    out = {}
    for kind in ("etm", "ftm"):
        model_dir = tmp_path_factory.mktemp(kind)
        model = train_dynamics(data, task, load_model_config(kind, "smoke"), model_dir, progress=False)
        out[kind] = (model, model_dir)
    return task, data, out


@pytest.mark.parametrize("kind", ["etm", "ftm"])
def test_step_contract_and_reproducibility(trained, kind):
    task, data, models = trained
    model, _ = models[kind]
    assert isinstance(model, DynamicsModel) and model.kind == kind
    assert (model.obs_dim, model.act_dim) == (11, 3)
    obs, act = torch.as_tensor(data.observations[:9]), torch.as_tensor(data.actions[:9])
    result = model.step(obs, act, torch.Generator().manual_seed(1))
    assert isinstance(result, StepResult)
    assert result.next_obs.shape == (9, 11) and result.next_obs.dtype == torch.float32
    assert result.reward.shape == result.penalty.shape == result.terminal.shape == (9,)
    assert result.terminal.dtype == torch.bool and (result.penalty >= 0).all()
    again = model.step(obs, act, torch.Generator().manual_seed(1))
    assert torch.equal(result.next_obs, again.next_obs) and torch.equal(result.penalty, again.penalty)
    next_obs, reward = model.predict(obs, act)
    assert next_obs.shape == (9, 11) and reward.shape == (9,)
    # Terminal comes from the hopper rule on next_obs: a fallen state is terminal.
    fallen = obs.clone()
    fallen[:, 0] = 0.2
    assert model.step(fallen, act).terminal.all()


def test_etm_penalty_is_norm_of_member_std_of_next_states(trained):
    _, data, models = trained
    model, _ = models["etm"]
    obs, act = torch.as_tensor(data.observations[:5]), torch.as_tensor(data.actions[:5])
    delta = model.sample_members(obs, act, model.config.etm.rollout_langevin, torch.Generator().manual_seed(2))
    expected = (obs + delta[..., :-1]).std(0, correction=0).norm(dim=-1)
    assert torch.allclose(model.step(obs, act, torch.Generator().manual_seed(2)).penalty, expected, atol=1e-6)


def test_ftm_penalty_is_max_over_elites_of_std_norm(trained):
    _, data, models = trained
    model, _ = models["ftm"]
    obs, act = torch.as_tensor(data.observations[:5]), torch.as_tensor(data.actions[:5])
    _, std = model.distribution(obs, act)
    assert std.shape[0] == model.config.ftm.elites
    assert torch.allclose(model.step(obs, act).penalty, std.norm(dim=-1).max(0).values)


@pytest.mark.parametrize("kind", ["etm", "ftm"])
def test_save_load_round_trip(trained, kind):
    task, data, models = trained
    model, model_dir = models[kind]
    for name in ("model.pt", "model.json", "config.yaml", "checkpoint.pt", "train_log.csv"):
        assert (Path(model_dir) / name).is_file()
    loaded = load_dynamics(model_dir, task)
    assert loaded.kind == kind and loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    obs, act = torch.as_tensor(data.observations[:4]), torch.as_tensor(data.actions[:4])
    a = model.step(obs, act, torch.Generator().manual_seed(3))
    b = loaded.step(obs, act, torch.Generator().manual_seed(3))
    assert torch.equal(a.next_obs, b.next_obs) and torch.equal(a.reward, b.reward)


def test_loading_for_a_task_of_other_sizes_fails_clearly(trained):
    _, _, models = trained
    _, model_dir = models["ftm"]
    with pytest.raises(EmpoError, match=r"size 11.*walker2d-medium.*size 17"):
        load_dynamics(model_dir, get_task("walker2d-medium"))
    with pytest.raises(EmpoError, match="no trained model"):
        load_dynamics(Path(model_dir) / "nowhere")


def test_wrong_input_sizes_are_errors(trained):
    _, _, models = trained
    model, _ = models["etm"]
    with pytest.raises(EmpoError, match="obs must have shape"):
        model.step(torch.zeros(2, 17), torch.zeros(2, 3))
    with pytest.raises(EmpoError, match="act must have shape"):
        model.step(torch.zeros(2, 11), torch.zeros(2, 6))


def test_resume_continues_from_the_checkpoint(tmp_path):
    task = get_task("hopper-medium")
    data = synthetic_transitions()
    cfg = load_model_config("ftm", "smoke", {"ftm": {"max_epochs": 1}})
    train_dynamics(data, task, cfg, tmp_path, progress=False)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 1
    # Resume uses the checkpoint's config; raise max_epochs through a fresh config is not possible,
    # so resuming a finished run just re-saves the model.
    model = train_dynamics(data, task, cfg, tmp_path, progress=False, resume=True)
    assert model.kind == "ftm"
    with pytest.raises(EmpoError, match="no checkpoint.pt"):
        train_dynamics(data, task, cfg, tmp_path / "empty", progress=False, resume=True)


@pytest.mark.parametrize("per_member", [False, True])
def test_etm_mean_head_is_trained_saved_and_starts_the_sampler(tmp_path, per_member):
    task = get_task("hopper-medium")
    data = synthetic_transitions(n=2000)
    warm = {"mean_head": True, "mean_head_ensemble": per_member, "epochs": 10, "steps_per_epoch": 40,
            "train_langevin": {"steps": 5}, "rollout_langevin": {"init": "mean_head", "steps": 0}}
    model = train_dynamics(data, task, load_model_config("etm", "smoke", {"etm": warm}), tmp_path / "m", progress=False)
    assert model.mean_head is not None
    obs, act = torch.as_tensor(data.observations[:500]), torch.as_tensor(data.actions[:500])
    target = torch.cat([torch.as_tensor(data.next_observations[:500]) - obs, torch.as_tensor(data.rewards[:500])[:, None]], -1)
    x = model.input_scaler(torch.cat([obs, act], -1))
    if per_member:
        x = x.unsqueeze(0).expand(model.members, -1, -1)
    with torch.no_grad():
        guess = model.target_scaler.inverse(model.mean_head(x))
    # the head learned the toy dynamics: well below the error of predicting no change
    assert (guess - target).square().mean() < 0.2 * target.square().mean()
    # a 0-step sampler starting from the head returns the head's prediction, for every member
    samples = model.sample_members(obs, act, model.config.etm.rollout_langevin)
    assert torch.allclose(samples, guess.expand_as(samples), atol=1e-5)
    if per_member:  # each member starts from its own head, each trained on its own minibatches
        assert guess.shape == samples.shape and float((guess[0] - guess[1]).abs().max()) > 1e-3
        assert float(model.step(obs, act).penalty.min()) > 0  # members disagree even with no steps
    loaded = load_dynamics(tmp_path / "m", task)
    assert torch.allclose(loaded.sample_members(obs, act, loaded.config.etm.rollout_langevin), samples, atol=1e-6)


def test_the_mean_head_size_is_a_setting_and_its_default_is_the_old_network():
    from empo.models.etm import ETMDynamics

    config = load_model_config("etm", "smoke", {"etm": {"mean_head": True}})
    default = ETMDynamics(3, 2, "never", config).mean_head
    # the layout of models saved before the setting existed: Linear, ReLU, Linear, ReLU, Linear
    assert list(default.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    assert default[0].out_features == config.etm.hidden_size
    bigger = load_model_config("etm", "smoke", {"etm": {"mean_head": True, "mean_head_ensemble": True,
                                                        "mean_head_layers": 4, "mean_head_hidden_size": 24}})
    head = ETMDynamics(3, 2, "never", bigger).mean_head
    weights = [p for name, p in head.named_parameters() if name.endswith("weight")]
    members = bigger.etm.ensemble_size
    assert [tuple(w.shape) for w in weights] == [(members, 5, 24), (members, 24, 24), (members, 24, 24), (members, 24, 24), (members, 24, 4)]
    assert head(torch.zeros(members, 7, 5)).shape == (members, 7, 4)
    with pytest.raises(EmpoError, match="mean_head_layers must be >= 1"):
        load_model_config("etm", "smoke", {"etm": {"mean_head": True, "mean_head_layers": 0}})


@pytest.mark.parametrize("per_member", [False, True])
def test_the_mean_head_takes_its_further_updates_alone(per_member):
    """etm.mean_head_updates: k head steps per ETM update, the energies one; the default is one."""
    from empo.models import build_model
    from empo.models.etm import ETMTrainer
    from empo.models.fitting import DeviceTimer

    x, y = torch.randn(300, 14), torch.randn(300, 12) * 0.1
    steps = {}
    for k in (1, 3):
        config = load_model_config("etm", "smoke", {"etm": {"mean_head": True, "mean_head_ensemble": per_member, "mean_head_updates": k}})
        torch.manual_seed(0)
        model = build_model("etm", 11, 3, "hopper", config)
        model.fit_scalers(x, y)
        trainer = ETMTrainer(model, x, y, x[:0], y[:0], torch.Generator().manual_seed(1))
        energy_before = [p.detach().clone() for p in model.energy.parameters()]
        index = torch.randint(300, (model.members, 16), generator=torch.Generator().manual_seed(2))
        trainer.update(index, DeviceTimer(torch.device("cpu")))
        state = trainer.optimizer.state
        steps[k] = ({int(state[p]["step"]) for p in model.mean_head.parameters()}, {int(state[p]["step"]) for p in model.energy.parameters()})
        steps[k] += ([p.detach().clone() for p in model.energy.parameters()],)
        assert all(not torch.equal(a, b) for a, b in zip(energy_before, steps[k][2], strict=True))
    assert steps[1][:2] == ({1}, {1}) and steps[3][:2] == ({3}, {1})
    # the energies' one update is the same whatever the head does after it
    assert all(torch.equal(a, b) for a, b in zip(steps[1][2], steps[3][2], strict=True))
    with pytest.raises(EmpoError, match="mean_head_updates above 1 needs mean_head: true"):
        load_model_config("etm", "smoke", {"etm": {"mean_head_updates": 2}})
    with pytest.raises(EmpoError, match="mean_head_updates must be >= 1"):
        load_model_config("etm", "smoke", {"etm": {"mean_head": True, "mean_head_updates": 0}})


def test_a_mean_head_start_needs_the_mean_head():
    with pytest.raises(EmpoError, match="rollout_langevin.init is mean_head, which needs mean_head: true"):
        load_model_config("etm", "smoke", {"etm": {"rollout_langevin": {"init": "mean_head"}}})
    with pytest.raises(EmpoError, match="train_langevin.init is mean_head, which needs mean_head: true"):
        load_model_config("etm", "smoke", {"etm": {"train_langevin": {"init": "mean_head"}}})
    with pytest.raises(EmpoError, match="mean_head_ensemble needs mean_head: true"):
        load_model_config("etm", "smoke", {"etm": {"mean_head_ensemble": True}})
    with pytest.raises(EmpoError, match="eval_langevin.init: positive is for training negatives"):
        load_model_config("etm", "smoke", {"etm": {"eval_langevin": {"init": "positive"}}})
    with pytest.raises(EmpoError, match="init_noise must be >= 0"):
        load_model_config("etm", "smoke", {"etm": {"train_langevin": {"init_noise": -0.1}}})


@pytest.mark.parametrize("init", ["positive", "mean_head"])
def test_warm_started_negatives_start_at_their_start_plus_init_noise(init):
    from empo.models.etm import ETMDynamics, negative_start, sample_negatives

    torch.manual_seed(0)
    config = load_model_config("etm", "smoke", {"etm": {"mean_head": True, "num_negatives": 4000, "train_langevin": {"init": init, "steps": 0}}})
    model = ETMDynamics(3, 2, "never", config)
    x = torch.randn(config.etm.ensemble_size, 2, 5)
    y_pos = torch.rand(config.etm.ensemble_size, 2, 4) - 0.5
    head = model.mean_head(x)
    start = negative_start(config.etm, y_pos, head)
    assert torch.equal(start, y_pos if init == "positive" else head.detach())
    code = model.energy.encode(x)
    # no steps, no noise: every negative is its start
    still = sample_negatives(model.energy, code, 4, config.etm, torch.Generator().manual_seed(1), start)
    assert still.shape == (config.etm.ensemble_size, 2, 4000, 4)
    assert torch.equal(still, start.unsqueeze(2).expand_as(still))
    noisy_cfg = dataclasses.replace(config.etm, train_langevin=dataclasses.replace(config.etm.train_langevin, init_noise=0.1))
    noisy = sample_negatives(model.energy, code, 4, noisy_cfg, torch.Generator().manual_seed(1), start)
    spread = noisy - start.unsqueeze(2)
    assert abs(float(spread.mean())) < 0.01 and abs(float(spread.std()) - 0.1) < 0.01
    if init == "mean_head":
        with pytest.raises(EmpoError, match="needs the mean head's prediction"):
            negative_start(config.etm, y_pos, None)


def test_an_etm_fits_with_negatives_warm_started_from_its_mean_head(tmp_path):
    task, transitions = get_task("hopper-medium"), synthetic_transitions()
    overrides = {"etm": {"mean_head": True, "epochs": 2, "train_langevin": {"init": "mean_head", "init_noise": 0.2, "steps": 5}}}
    config = load_model_config("etm", "smoke", overrides)
    model = train_dynamics(transitions, task, config, tmp_path / "etm", progress=False)
    log = (tmp_path / "etm" / "train_log.csv").read_text().splitlines()
    assert len(log) == 3
    assert all(np.isfinite(float(value)) for value in log[-1].split(",")[1:])
    assert model.config.etm.train_langevin.init == "mean_head"


def test_a_model_fit_logs_its_settings_as_tensorboard_hparams(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, _, models = trained
    for kind, (_, model_dir) in models.items():
        events = EventAccumulator(str(model_dir / "tb"))
        events.Reload()
        assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams"), kind
        assert "hparams/holdout_next_obs_mse" in events.Tags()["scalars"], kind


def test_on_epoch_sees_every_epoch_and_can_end_the_fit(tmp_path):
    task, transitions = get_task("hopper-medium"), synthetic_transitions()
    config = load_model_config("etm", "smoke", {"etm": {"epochs": 5}})
    seen: list[int] = []

    def on_epoch(epoch, model):
        seen.append(epoch)
        assert not model.training  # scored in eval mode
        return epoch == 2

    train_dynamics(transitions, task, config, tmp_path / "m", progress=False, on_epoch=on_epoch)
    assert seen == [1, 2]
    assert len((tmp_path / "m" / "train_log.csv").read_text().splitlines()) == 3
    assert (tmp_path / "m" / "model.pt").is_file()
    assert load_dynamics(tmp_path / "m").meta["ended_early_at_epoch"] == 2
    # a resumed fit goes on from the stop to the configured epochs, and is then a full fit
    train_dynamics(transitions, task, config, tmp_path / "m", progress=False, resume=True, on_epoch=lambda e, m: seen.append(e))
    assert seen == [1, 2, 3, 4, 5] and "ended_early_at_epoch" not in load_dynamics(tmp_path / "m").meta


def test_an_ftm_that_stops_early_on_its_own_is_not_marked_ended_by_on_epoch(tmp_path):
    """Its early stop and on_epoch's stop fall in the same epoch (2): the fit finished normally."""
    task, transitions = get_task("hopper-medium"), synthetic_transitions()
    settings = {"max_epochs": None, "early_stop_improvement": 1e9, "early_stop_patience": 1}
    config = load_model_config("ftm", "smoke", {"ftm": settings})
    seen: list[int] = []
    train_dynamics(transitions, task, config, tmp_path / "m", progress=False, on_epoch=lambda e, m: seen.append(e) or e == 2)
    assert seen == [1, 2] and "ended_early_at_epoch" not in load_dynamics(tmp_path / "m").meta


def test_the_quick_warm_preset_is_the_quick_preset_with_warm_started_chains():
    quick, warm = load_model_config("etm", "quick"), load_model_config("etm", "quick-warm")
    assert warm.etm.mean_head and warm.etm.epochs * warm.etm.steps_per_epoch == 6400
    for sampler in ("train_langevin", "rollout_langevin", "eval_langevin"):
        assert getattr(warm.etm, sampler).init == "mean_head" and getattr(warm.etm, sampler).steps == 10
    assert warm.etm.train_langevin.init_noise == 0.25 and warm.etm.rollout_langevin.init_noise == 0.0
    # everything else is the quick preset's: network, batch, negatives, loss, the samplers' clamps
    same = {"mean_head", "epochs", "train_langevin", "rollout_langevin", "eval_langevin"}
    for field in dataclasses.fields(quick.etm):
        if field.name not in same:
            assert getattr(warm.etm, field.name) == getattr(quick.etm, field.name), field.name
    assert warm.etm.rollout_langevin.grad_clip == quick.etm.rollout_langevin.grad_clip == 10.0
    assert warm.ftm == quick.ftm


def test_a_preset_that_extends_an_unknown_preset_is_an_error(monkeypatch):
    from empo.models import config as model_config

    files = {"paper": {}, "quick": {"extends": "quik", "etm": {"epochs": 3}}}
    monkeypatch.setattr(model_config, "packaged_yaml", lambda folder, name: dict(files[name]))
    with pytest.raises(EmpoError, match=r"configs/models/quick.yaml: extends 'quik'"):
        model_config.preset_dict("quick")
    files["quick"]["extends"] = "quick"  # itself: no endless chain
    with pytest.raises(EmpoError, match=r"extends 'quick'"):
        model_config.preset_dict("quick")


def test_the_run_config_and_the_commands_take_every_model_preset():
    import typing

    from empo.config import MODEL_PRESETS
    from empo.loop.config import ModelSection
    from empo.models.config import PRESETS

    assert PRESETS == MODEL_PRESETS
    assert set(typing.get_args(typing.get_type_hints(ModelSection)["preset"])) == set(MODEL_PRESETS)
    for name in MODEL_PRESETS:
        load_model_config("etm", name)  # every listed preset has its YAML and validates


def test_an_etm_fits_and_samples_with_the_quick_warm_preset(tmp_path):
    task, transitions = get_task("hopper-medium"), synthetic_transitions()
    small = {"etm": {"hidden_size": 16, "epochs": 2, "steps_per_epoch": 3, "batch_size": 32, "holdout_eval_size": 16}}
    model = train_dynamics(transitions, task, load_model_config("etm", "quick-warm", small), tmp_path / "etm", progress=False)
    obs = torch.as_tensor(transitions.observations[:6])
    act = torch.as_tensor(transitions.actions[:6])
    step = model.step(obs, act, generator=torch.Generator().manual_seed(0))
    assert step.next_obs.shape == obs.shape and torch.isfinite(step.next_obs).all()
