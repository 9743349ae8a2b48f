"""Model fits that stop: the shared early-stopping rule, the ETM's early stopping, the update and minute caps."""

import csv

import numpy as np
import pytest
import torch

from empo.data.tasks import get_task
from empo.errors import EmpoError
from empo.models import load_dynamics, load_model_config, train_dynamics
from empo.models.fitting import HoldoutStopper, holdout_target_mse
from tests.test_models import synthetic_transitions


def test_the_stopper_counts_epochs_without_a_relative_improvement_per_member():
    stopper = HoldoutStopper(improvement=0.01, patience=2)
    assert stopper.improves(torch.tensor([1.0, 1.0])).tolist() == [True, True]  # the first epoch always improves
    assert stopper.improves(torch.tensor([0.995, 0.5])).tolist() == [False, True]  # 0.5% is not enough; 50% is
    assert stopper.best.tolist() == [1.0, 0.5] and not stopper.stalled()
    assert stopper.improves(torch.tensor([0.999, 0.499])).tolist() == [False, False]
    assert not stopper.stalled()
    assert stopper.improves(torch.tensor([0.98, 0.6])).tolist() == [True, False]  # member 0 improves: the count restarts
    assert stopper.epochs_since_update == 0
    stopper.improves(torch.tensor([1.0, 1.0]))
    stopper.improves(torch.tensor([1.0, 1.0]))
    assert stopper.stalled()
    restored = HoldoutStopper(0.01, 2)
    restored.load_state_dict(stopper.state_dict())
    assert restored.stalled() and restored.best.tolist() == stopper.best.tolist()
    assert not HoldoutStopper(0.01, None).stalled()  # no patience: never stalls


def test_with_a_window_the_stopper_compares_the_mean_of_the_last_epochs():
    errors = (3.0, 1.0, 2.0, 1.0, 1.6)
    stopper = HoldoutStopper(improvement=0.01, patience=2, window=2)
    # the means of the last two: 3 (one so far), 2, 1.5, 1.5, 1.3
    assert [bool(stopper.improves(torch.tensor([e]))[0]) for e in errors] == [True, True, True, False, True]
    assert stopper.best.item() == pytest.approx(1.3)
    single = HoldoutStopper(improvement=0.01, patience=2)
    assert [bool(single.improves(torch.tensor([e]))[0]) for e in errors] == [True, True, False, False, False]
    restored = HoldoutStopper(0.01, 2, window=2)
    restored.load_state_dict(stopper.state_dict())
    assert bool(restored.improves(torch.tensor([0.9]))[0])  # (1.6 + 0.9) / 2 = 1.25: the window came back with the state
    assert restored.best.item() == pytest.approx(1.25)


def test_the_etm_saves_its_polyak_averaged_weights(tmp_path):
    """One update an epoch: the saved ETM is the exponential average of the epochs' raw weights."""
    task, data = get_task("hopper-medium"), synthetic_transitions()
    decay = 0.6
    config = load_model_config("etm", "smoke", {"etm": {"epochs": 3, "steps_per_epoch": 1, "weight_ema": decay}})
    raw = []
    train_dynamics(data, task, config, tmp_path / "m", progress=False,
                   on_epoch=lambda e, m: raw.append({k: v.clone() for k, v in m.named_parameters()}) and False)
    expected = dict(raw[0])
    for params in raw[1:]:
        expected = {k: decay * expected[k] + (1 - decay) * params[k] for k in expected}
    saved = dict(load_dynamics(tmp_path / "m").named_parameters())
    assert all(torch.allclose(saved[k], expected[k], atol=1e-6) for k in expected)
    assert not all(torch.allclose(saved[k], raw[-1][k], atol=1e-6) for k in expected)  # not the last raw weights


def test_a_resumed_etm_fit_with_averaged_weights_ends_as_an_uninterrupted_one(tmp_path):
    task, data = get_task("hopper-medium"), synthetic_transitions()
    settings = {"etm": {"epochs": 4, "weight_ema": 0.9, "early_stop_patience": 3, "early_stop_window": 2}}
    whole = train_dynamics(data, task, load_model_config("etm", "smoke", settings), tmp_path / "whole", progress=False)
    train_dynamics(data, task, load_model_config("etm", "smoke", settings), tmp_path / "cut", progress=False,
                   on_epoch=lambda e, m: e == 2)
    resumed = train_dynamics(data, task, load_model_config("etm", "smoke", settings), tmp_path / "cut", progress=False, resume=True)
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in whole.state_dict().items())
    with open(tmp_path / "whole" / "train_log.csv") as f, open(tmp_path / "cut" / "train_log.csv") as g:
        assert [r["holdout_next_obs_mse"] for r in csv.DictReader(f)] == [r["holdout_next_obs_mse"] for r in csv.DictReader(g)]


def test_the_target_mse_weighs_next_state_and_reward_by_their_dimensions():
    assert holdout_target_mse({"holdout_next_obs_mse": 2.0, "holdout_reward_mse": 5.0}, obs_dim=3) == pytest.approx(11.0 / 4)


def test_an_etm_with_patience_stops_when_its_holdout_stalls_and_keeps_its_best_epoch(tmp_path):
    """With an improvement threshold no epoch can meet, epoch 1 is the best and the fit ends after 1 + patience epochs."""
    task, data = get_task("hopper-medium"), synthetic_transitions()
    config = load_model_config("etm", "smoke", {"etm": {"epochs": 10, "early_stop_patience": 2, "early_stop_improvement": 1e9}})
    states = {}
    train_dynamics(data, task, config, tmp_path / "m", progress=False,
                   on_epoch=lambda e, m: states.__setitem__(e, {k: v.clone() for k, v in m.state_dict().items()}))
    assert sorted(states) == [1, 2, 3]
    model = load_dynamics(tmp_path / "m")
    assert model.meta["stopped_by"] == "early_stopping" and model.meta["fit_epochs"] == 3
    saved = model.state_dict()
    assert all(torch.equal(saved[k], v) for k, v in states[1].items())  # epoch 1's ETM, not the last epoch's
    assert not all(torch.equal(saved[k], v) for k, v in states[3].items())


def test_without_patience_the_etm_runs_its_published_epochs(tmp_path):
    task, data = get_task("hopper-medium"), synthetic_transitions()
    config = load_model_config("etm", "smoke", {"etm": {"epochs": 3, "early_stop_improvement": 1e9}})
    train_dynamics(data, task, config, tmp_path / "m", progress=False)
    assert load_dynamics(tmp_path / "m").meta["stopped_by"] == "epochs"


@pytest.mark.parametrize("kind", ["etm", "ftm"])
def test_an_update_cap_ends_the_fit_says_so_and_logs_the_curve(tmp_path, capsys, kind):
    task, data = get_task("hopper-medium"), synthetic_transitions()
    settings = {"etm": {"epochs": 6, "max_updates": 10}} if kind == "etm" else {"ftm": {"max_epochs": 6, "max_updates": 10}}
    train_dynamics(data, task, load_model_config(kind, "smoke", settings), tmp_path / "m", progress=False)
    meta = load_dynamics(tmp_path / "m").meta
    assert meta["stopped_by"] == "max_updates=10" and meta["fit_updates"] == 10 and meta["fit_epochs"] == 2
    assert f"{kind} fit: the cap max_updates=10 binds after epoch 2 (10 updates" in capsys.readouterr().out
    with (tmp_path / "m" / "train_log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["updates"]) for r in rows] == [5, 10]
    minutes = [float(r["fit_minutes"]) for r in rows]
    assert 0 < minutes[0] < minutes[1]


def test_a_minutes_cap_ends_the_fit_after_the_epoch_that_passes_it(tmp_path):
    task, data = get_task("hopper-medium"), synthetic_transitions()
    config = load_model_config("ftm", "smoke", {"ftm": {"max_epochs": 6, "max_minutes": 1e-9}})
    train_dynamics(data, task, config, tmp_path / "m", progress=False)
    meta = load_dynamics(tmp_path / "m").meta
    assert meta["stopped_by"] == "max_minutes=1e-09" and meta["fit_epochs"] == 1


def test_a_resumed_fit_counts_its_minutes_on_from_the_checkpoint(tmp_path):
    task, data = get_task("hopper-medium"), synthetic_transitions()
    config = load_model_config("ftm", "smoke", {"ftm": {"max_epochs": 2}})
    train_dynamics(data, task, config, tmp_path / "m", progress=False, on_epoch=lambda e, m: e == 1)
    first = torch.load(tmp_path / "m" / "checkpoint.pt", weights_only=True)["fit_seconds"]
    train_dynamics(data, task, config, tmp_path / "m", progress=False, resume=True)
    assert torch.load(tmp_path / "m" / "checkpoint.pt", weights_only=True)["fit_seconds"] > first > 0


@pytest.mark.parametrize("setting", ["max_updates=0", "max_minutes=0", "early_stop_patience=0", "early_stop_improvement=-1",
                                     "early_stop_window=0", "weight_ema=1"])
def test_bad_budgets_are_errors_naming_the_setting(setting):
    key, value = setting.split("=")
    with pytest.raises(EmpoError, match=key):
        load_model_config("etm", "smoke", {"etm": {key: int(value)}})


@pytest.mark.parametrize("task", ["hopper-medium", "halfcheetah-medium", "walker2d-medium"])
def test_the_learn_presets_models_stop_on_their_holdout_error_under_a_cap(task):
    """configs/models/learn.yaml's promise (docs/models.md): both kinds stop early, and a cap bounds each fit."""
    ftm = load_model_config("ftm", "learn", task=task).ftm
    assert ftm.max_epochs is None and ftm.steps_per_epoch is None  # full passes, as OfflineRL-Kit's rule counts them
    assert ftm.early_stop_patience == 5 and ftm.max_updates is not None
    etm = load_model_config("etm", "learn", task=task).etm
    assert etm.early_stop_patience is not None and etm.max_updates is not None
    assert etm.max_updates <= etm.epochs * etm.steps_per_epoch  # the cap, not the epochs, bounds the fit


@pytest.mark.parametrize("kind", ["etm", "ftm"])
def test_finishing_a_fit_saves_what_its_checkpoint_holds_without_training(tmp_path, kind):
    """--resume DIR --finish: the model a fit cut at epoch 2 would save (averaged ETM weights; the FTM's
    best snapshots and elites), no further epoch, and a meta that says the fit was ended by hand."""
    task, data = get_task("hopper-medium"), synthetic_transitions()
    settings = {"etm": {"epochs": 5, "weight_ema": 0.9}} if kind == "etm" else {"ftm": {"max_epochs": 5}}
    cut = train_dynamics(data, task, load_model_config(kind, "smoke", settings), tmp_path / "m", progress=False,
                         on_epoch=lambda e, m: e == 2)
    (tmp_path / "m" / "model.pt").unlink()
    finished = train_dynamics(data, task, load_model_config(kind, "smoke", settings), tmp_path / "m", progress=False,
                              resume=True, finish=True)
    assert all(torch.equal(v, finished.state_dict()[k]) for k, v in cut.state_dict().items())
    saved = load_dynamics(tmp_path / "m")
    assert saved.meta["stopped_by"] == "hand" and saved.meta["fit_epochs"] == 2
    with (tmp_path / "m" / "train_log.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 2
    assert torch.load(tmp_path / "m" / "checkpoint.pt", weights_only=True)["epoch"] == 2


def test_finishing_needs_a_fit_to_resume(tmp_path):
    task, data = get_task("hopper-medium"), synthetic_transitions()
    with pytest.raises(EmpoError, match="--resume DIR --finish"):
        train_dynamics(data, task, load_model_config("ftm", "smoke"), tmp_path / "m", progress=False, finish=True)


def test_fall_weights_mark_the_rows_before_a_termination_within_its_episode():
    from empo.data import Transitions
    from empo.models.train import fall_row_weights

    base = synthetic_transitions(n=30, episode_len=10)
    terminals = np.zeros(30)
    terminals[[9, 21]] = 1  # episode 0 falls; episode 1 ends by timeout; episode 2 falls on its 2nd row
    data = Transitions(base.observations, base.actions, base.rewards, base.next_observations, terminals, np.zeros(30),
                       np.array([0, 10, 20, 22]))
    weights = fall_row_weights(data, 5.0, window=3)  # episode 2 is shorter than the window: episode 1 is not marked
    assert weights.tolist() == [1] * 7 + [5] * 3 + [1] * 10 + [5] * 2 + [1] * 8


def test_an_etm_fit_with_a_fall_weight_draws_the_rows_before_a_fall_that_much_more_often(tmp_path, monkeypatch):
    from empo.models.fitting import EnsembleTrainer

    task, data = get_task("hopper-medium"), synthetic_transitions(n=600)
    data.terminals[49::50] = 1  # every episode ends in a fall (and no longer by timeout)
    data.timeouts[:] = 0
    drawn, weights = [], []
    original = EnsembleTrainer.minibatch_indices

    def recording(self):
        weights.append(self.row_weights)
        for index in original(self):
            drawn.append(index)
            yield index

    monkeypatch.setattr(EnsembleTrainer, "minibatch_indices", recording)
    config = load_model_config("etm", "smoke", {"etm": {"epochs": 1, "steps_per_epoch": 4, "fall_weight": 30.0, "fall_window": 5}})
    train_dynamics(data, task, config, tmp_path / "weighted", progress=False)
    rows = torch.cat([d.flatten() for d in drawn])
    before_fall = weights[0][rows] > 1
    # 10% of the rows are within 5 steps of a fall: drawn 30x as often, about 77% of a minibatch
    assert weights[0] is not None and (weights[0] > 1).float().mean() == pytest.approx(0.1, abs=0.01)
    assert 0.65 < before_fall.float().mean() < 0.9
    drawn.clear(), weights.clear()
    train_dynamics(data, task, load_model_config("etm", "smoke", {"etm": {"epochs": 1, "steps_per_epoch": 4}}), tmp_path / "plain", progress=False)
    assert weights[0] is None
    with pytest.raises(EmpoError, match="fall_weight other than 1 draws weighted random minibatches: it needs steps_per_epoch"):
        load_model_config("etm", "smoke", {"etm": {"steps_per_epoch": None, "fall_weight": 3.0}})
