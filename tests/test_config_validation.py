"""Training configs: every task YAML and preset resolves; unknown keys are errors naming them."""

import copy

import pytest

from empo.data.tasks import task_names
from empo.errors import EmpoError
from empo.loop.config import PRESETS, resolve_config


@pytest.mark.parametrize("task", task_names())
def test_every_task_resolves_for_both_algorithms(task):
    for algo in ("empo", "mopo"):
        config = resolve_config(task, algo, "paper")
        assert config.algorithm.model_kind == ("etm" if algo == "empo" else "ftm")
        assert config.algorithm.horizon in (1, 5)


def test_published_values():
    config = resolve_config("hopper-medium", "mopo", "paper")
    assert (config.algorithms["mopo"].horizon, config.algorithms["mopo"].penalty_coef) == (5, 5.0)
    assert (config.algorithms["empo"].horizon, config.algorithms["empo"].penalty_coef) == (5, 2.0)
    assert config.training.epochs == 3000 and config.training.steps_per_epoch == 1000
    assert config.training.real_ratio == 0.05 and config.training.batch_size == 256
    assert config.model_buffer_capacity == 50_000 * 5 * 5
    assert config.sac.actor_lr == 1e-4 and config.sac.critic_lr == 3e-4 and config.sac.alpha_lr == 1e-4
    expected = {
        "hopper-medium-replay": (5, 2.5),
        "hopper-medium-expert": (5, 5.0),
        "halfcheetah-medium": (5, 0.5),
        "halfcheetah-medium-replay": (5, 0.5),
        "halfcheetah-medium-expert": (5, 2.5),
        "walker2d-medium": (5, 0.5),
        "walker2d-medium-replay": (1, 2.5),
        "walker2d-medium-expert": (1, 2.5),
    }
    for task, (horizon, coef) in expected.items():
        config = resolve_config(task, "mopo", "paper")
        assert (config.algorithms["mopo"].horizon, config.algorithms["mopo"].penalty_coef) == (horizon, coef), task
        assert config.algorithms["empo"].horizon == horizon


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_resolve(preset):
    config = resolve_config("walker2d-medium", "empo", preset, seed=3)
    assert config.preset == preset and config.model.preset == preset and config.seed == 3


def test_unknown_key_is_an_error_naming_it():
    with pytest.raises(EmpoError, match="unknown key 'epohcs'.*did you mean 'epochs'"):
        resolve_config("hopper-medium", "empo", "smoke", overrides={"training": {"epohcs": 3}})
    with pytest.raises(EmpoError, match="unknown key 'rolout'"):
        resolve_config("hopper-medium", "empo", "smoke", overrides={"rolout": {}})


def test_bad_values_and_names_are_errors():
    with pytest.raises(EmpoError, match="training.epochs.*integer"):
        resolve_config("hopper-medium", "empo", "smoke", overrides={"training": {"epochs": "many"}})
    with pytest.raises(EmpoError, match="real_ratio"):
        resolve_config("hopper-medium", "empo", "smoke", overrides={"training": {"real_ratio": 1.5}})
    with pytest.raises(EmpoError, match="horizon"):
        resolve_config("hopper-medium", "empo", "smoke", overrides={"empo": {"horizon": 0}})
    with pytest.raises(EmpoError, match="unknown task 'hopper-meduim'.*hopper-medium"):
        resolve_config("hopper-meduim")
    with pytest.raises(EmpoError, match="unknown preset"):
        resolve_config("hopper-medium", preset="fast")
    with pytest.raises(EmpoError, match="unknown algorithm"):
        resolve_config("hopper-medium", algo="cql")


def test_set_accepts_exponent_floats_and_rejects_words():
    from empo.models.config import parse_overrides

    # PyYAML reads 3e-4 (no dot) as a string; a float field must still take it
    config = resolve_config("hopper-medium", "mopo", "quick", overrides=parse_overrides(["sac.actor_lr=3e-4"]))
    assert config.sac.actor_lr == pytest.approx(3e-4)
    with pytest.raises(EmpoError, match=r"sac\.actor_lr: expected a number, got 'fast'"):
        resolve_config("hopper-medium", "mopo", "quick", overrides=parse_overrides(["sac.actor_lr=fast"]))


def test_simulator_is_a_model_kind():
    config = resolve_config("hopper-medium", "mopo", "quick", overrides={"mopo": {"model_kind": "simulator"}})
    assert config.algorithm.model_kind == "simulator"
    with pytest.raises(EmpoError, match="model_kind"):
        resolve_config("hopper-medium", "mopo", "quick", overrides={"mopo": {"model_kind": "oracle"}})


def test_quick_preset_gives_empo_the_tasks_mopo_coefficient():
    # the quick preset takes EMPO's penalty off at rollout time as MOPO does, with MOPO's coefficient
    # for the task (configs/tasks/*.yaml, presets.quick): one value for all tasks collapsed walker2d
    for task in ("hopper-medium", "halfcheetah-medium", "walker2d-medium", "walker2d-medium-replay", "hopper-random"):
        paper, quick = resolve_config(task, "empo", "paper"), resolve_config(task, "empo", "quick")
        assert paper.algorithms["empo"].penalty_coef == 2.0
        assert quick.algorithms["empo"].penalty_coef == quick.algorithms["mopo"].penalty_coef
        assert quick.algorithms["empo"].horizon == paper.algorithms["empo"].horizon and quick.algorithms["mopo"] == paper.algorithms["mopo"]
    assert resolve_config("hopper-medium", "empo", "quick").algorithm.penalty_coef == 5.0
    assert resolve_config("walker2d-medium", "empo", "quick").algorithm.penalty_coef == 0.5
    # the smoke preset has no such section: the published coefficient; --set still wins over the section
    assert resolve_config("walker2d-medium", "empo", "smoke").algorithm.penalty_coef == 2.0
    assert resolve_config("walker2d-medium", "empo", "quick", overrides={"empo": {"penalty_coef": 3.0}}).algorithm.penalty_coef == 3.0


@pytest.mark.parametrize("presets, message", [
    ({"quik": {"empo": {"penalty_coef": 1.0}}}, "presets.quik: unknown preset; valid presets: paper, learn, quick, smoke"),
    ({"quick": 1.0}, "presets.quick: expected a mapping"),
    ([1], "presets: expected a mapping of preset names"),
])
def test_a_task_yamls_preset_section_is_validated(monkeypatch, presets, message):
    from empo.loop import config as loop_config

    monkeypatch.setattr(loop_config, "packaged_yaml", lambda folder, name: {"mopo": {"horizon": 5}, "presets": presets})
    with pytest.raises(EmpoError, match=f"configs/tasks/hopper-medium.yaml: {message}"):
        resolve_config("hopper-medium", "empo", "quick")


def test_a_misspelt_key_in_a_tasks_preset_section_is_named(monkeypatch):
    from empo.loop import config as loop_config

    real = loop_config.packaged_yaml

    def read(folder, name):
        data = real(folder, name)
        return {**data, "presets": {"quick": {"empo": {"penalty_cof": 1.0}}}} if folder == "tasks" else data

    monkeypatch.setattr(loop_config, "packaged_yaml", read)
    with pytest.raises(EmpoError, match="penalty_cof"):
        resolve_config("hopper-medium", "empo", "quick")
    assert resolve_config("hopper-medium", "empo", "paper").algorithm.penalty_coef == 2.0  # other presets ignore it


def test_quick_accurate_is_the_recorded_recipe_with_the_tasks_step_size():
    # configs/models/quick-accurate.yaml is benchmarks/archive/bench_etm_recipes.py's ens-head8-neg10, whose errors are
    # recorded; its epochs and its samplers' first step size per task, samplers 10 steps from the heads
    import dataclasses

    from benchmarks.archive.bench_etm_recipes import recipe_config
    from empo.models import load_model_config

    hopper = load_model_config("etm", "quick-accurate", task="hopper-medium")
    cheetah = load_model_config("etm", "quick-accurate", task="halfcheetah-medium")
    # 110 epochs on hopper-medium; halfcheetah-medium's task YAML doubles them (30 min of an idle 2-core CPU)
    for config, epochs in ((hopper, 110), (cheetah, 210)):
        recipe = recipe_config("ens-head8-neg10", epochs)
        fit = {key: value for key, value in dataclasses.asdict(recipe.etm).items() if key not in ("rollout_langevin", "eval_langevin")}
        assert {key: dataclasses.asdict(config.etm)[key] for key in fit} == fit
        for sampler in (config.etm.rollout_langevin, config.etm.eval_langevin):
            assert (sampler.init, sampler.steps) == ("mean_head", 10)
    assert hopper.etm.rollout_langevin.step_size_start == hopper.etm.eval_langevin.step_size_start == 0.01
    assert cheetah.etm.rollout_langevin.step_size_start == cheetah.etm.eval_langevin.step_size_start == 0.1
    # without the task, or for another preset, the task YAML's section does not apply
    assert load_model_config("etm", "quick-accurate").etm.rollout_langevin.step_size_start == 0.1
    assert load_model_config("etm", "quick-accurate").etm.epochs == 110
    assert load_model_config("etm", "quick", task="halfcheetah-medium") == load_model_config("etm", "quick")
    assert load_model_config("etm", "quick-warm", task="hopper-medium") == load_model_config("etm", "quick-warm")
    # overrides win over the task's section
    given = load_model_config("etm", "quick-accurate", {"etm": {"eval_langevin": {"step_size_start": 0.03}}}, task="hopper-medium")
    assert given.etm.eval_langevin.step_size_start == 0.03 and given.etm.rollout_langevin.step_size_start == 0.01
    # a run on the preset resolves the task's model settings (what its model cache key and guard compare)
    from empo.pipeline import model_config_for

    run = resolve_config("hopper-medium", "empo", "quick", overrides={"model": {"preset": "quick-accurate"}})
    assert model_config_for(run) == hopper


@pytest.mark.parametrize("models, message", [
    ({"quik": {"etm": {"epochs": 1}}}, "models.quik: unknown model preset; valid presets: paper, quick, quick-warm, quick-accurate, learn, smoke"),
    ({"quick-accurate": [1]}, "models.quick-accurate: expected a mapping"),
    ("quick", "models: expected a mapping of model preset names"),
])
def test_a_task_yamls_model_section_is_validated(monkeypatch, models, message):
    from empo.loop import config as loop_config
    from empo.models import config as model_config
    from empo.models import load_model_config

    task_yaml, real = {"mopo": {"horizon": 5}, "models": models}, model_config.packaged_yaml
    for module in (loop_config, model_config):
        # a fresh dict a call, as the file gives (resolve_config pops the task YAML's sections)
        monkeypatch.setattr(module, "packaged_yaml", lambda folder, name: copy.deepcopy(task_yaml) if folder == "tasks" else real(folder, name))
    with pytest.raises(EmpoError, match=f"configs/tasks/hopper-medium.yaml: {message}"):
        resolve_config("hopper-medium", "mopo", "paper")  # checked with any preset, before slow work
    with pytest.raises(EmpoError, match=f"configs/tasks/hopper-medium.yaml: {message}"):
        load_model_config("etm", "quick", task="hopper-medium")


def test_a_misspelt_key_in_a_tasks_model_section_is_named(monkeypatch):
    from empo.models import config as model_config
    from empo.models import load_model_config

    real = model_config.packaged_yaml

    def read(folder, name):
        data = real(folder, name)
        return {**data, "models": {"quick": {"etm": {"epohcs": 3}}}} if folder == "tasks" else data

    monkeypatch.setattr(model_config, "packaged_yaml", read)
    with pytest.raises(EmpoError, match="epohcs.*configs/tasks/hopper-medium.yaml's models.quick|configs/tasks/hopper-medium.yaml's models.quick.*epohcs"):
        load_model_config("etm", "quick", task="hopper-medium")
    assert load_model_config("etm", "paper", task="hopper-medium") == load_model_config("etm", "paper")
