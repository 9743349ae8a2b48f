"""The loop's runtime options (TF32, CUDA graph, sync check): validated and wired on a CPU machine."""

import pytest
import torch

from empo.agents import SAC, SACConfig
from empo.errors import EmpoError
from empo.loop.config import RuntimeConfig, resolve_config
from empo.loop.graphed import GraphedSACStep, apply_tf32, check_runtime, sync_debug
from empo.loop.trainer import Trainer
from tests.test_loop_support import FakeDynamics, synthetic_transitions


def test_runtime_defaults_are_recorded_in_the_config():
    config = resolve_config("hopper-medium", "empo", "paper")
    assert config.to_dict()["runtime"] == {"tf32": True, "cuda_graph": False, "sync_debug": False}
    with pytest.raises(EmpoError, match="cuda_grph"):
        resolve_config("hopper-medium", "empo", "paper", overrides={"runtime": {"cuda_grph": True}})


@pytest.mark.parametrize("name", ["cuda_graph", "sync_debug"])
def test_cuda_only_options_are_errors_on_a_cpu_device(tmp_path, name):
    runtime = RuntimeConfig(**{name: True})
    with pytest.raises(EmpoError, match=f"runtime.{name}"):
        check_runtime(runtime, torch.device("cpu"))
    config = resolve_config("hopper-medium", "mopo", "smoke", overrides={"runtime": {name: True}})
    data = synthetic_transitions(n=300).qlearning().to_tensors("cpu")
    with pytest.raises(EmpoError, match=f"runtime.{name}"):
        Trainer(config, data, FakeDynamics(), tmp_path / "run", progress=False)
    check_runtime(runtime, torch.device("cuda"))  # allowed where CUDA is the device


def test_tf32_setting_reaches_torch_on_cuda_devices_only():
    before = torch.backends.cuda.matmul.allow_tf32
    try:
        apply_tf32(RuntimeConfig(tf32=True), torch.device("cuda"))
        assert torch.backends.cuda.matmul.allow_tf32 is True
        apply_tf32(RuntimeConfig(tf32=False), torch.device("cuda"))
        assert torch.backends.cuda.matmul.allow_tf32 is False
        apply_tf32(RuntimeConfig(tf32=True), torch.device("cpu"))  # no effect off CUDA
        assert torch.backends.cuda.matmul.allow_tf32 is False
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def test_sync_debug_sets_and_restores_the_mode(monkeypatch):
    modes = []
    monkeypatch.setattr(torch.cuda, "get_sync_debug_mode", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)
    with sync_debug(True):
        assert modes == ["error"]
    assert modes == ["error", 0]
    with sync_debug(False):
        pass
    assert modes == ["error", 0]


def test_capturable_agent_keeps_lr_on_the_device_and_its_schedule_edits_it():
    agent = SAC(11, 3, SACConfig(hidden_sizes=[16, 16]), seed=0, total_lr_steps=10, capturable=True)
    lr = agent.actor_optim.param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor)
    agent.step_lr_schedule()
    assert agent.actor_optim.param_groups[0]["lr"] is lr and float(lr) < 1e-4  # edited in place
    with pytest.raises(EmpoError, match="CUDA"):
        GraphedSACStep(agent, None, None, 256, 0.05, torch.Generator(), ("critic_loss",), torch.zeros(1))
