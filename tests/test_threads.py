"""The CPU thread default: free cores counted from the machine's load, overrides, and the wiring."""

import pytest
import torch

import empo.threads as threads_module
from empo.cli.common import start_threads
from empo.errors import EmpoError
from empo.loop.config import resolve_config
from empo.loop.trainer import Trainer
from empo.threads import ThreadCounter
from tests.test_loop_support import FakeDynamics, synthetic_transitions


class FakeMachine:
    """/proc readings advanced by hand: ``others`` busy cores over each ``step`` seconds."""

    def __init__(self, monkeypatch, cores=2, hz=100):
        self.now, self.machine, self.own, self.hz = 0.0, 0, 0, hz
        self.others = 0.0
        monkeypatch.setattr(threads_module, "available_cores", lambda: cores)
        monkeypatch.setattr(threads_module, "_busy_ticks", lambda: (self.machine, self.own))
        monkeypatch.setattr(threads_module.time, "monotonic", lambda: self.now)
        monkeypatch.setattr(threads_module.time, "sleep", self.advance)
        monkeypatch.setattr(threads_module.os, "sysconf", lambda name: hz)

    def advance(self, seconds, own_cores=1.0):
        self.now += seconds
        self.own += int(own_cores * seconds * self.hz)
        self.machine += int((own_cores + self.others) * seconds * self.hz)


def test_idle_machine_uses_every_core(monkeypatch):
    FakeMachine(monkeypatch, cores=2)
    counter = ThreadCounter()
    assert counter.update() == 2 and torch.get_num_threads() == 2
    assert counter.describe().startswith("threads: 2 (2 cores, other processes busy on 0.0")


def test_a_busy_process_beside_takes_a_core_and_the_count_follows_the_load(monkeypatch):
    machine = FakeMachine(monkeypatch, cores=2)
    machine.others = 1.0
    said = []
    counter = ThreadCounter(log=said.append)
    assert counter.update() == 1 and torch.get_num_threads() == 1
    machine.others = 0.0  # the other process ended during this epoch
    machine.advance(10.0, own_cores=1.0)
    assert counter.update() == 2 and torch.get_num_threads() == 2
    assert said == ["threads: 1 -> 2 (2 cores, other processes busy on 0.0)"]
    machine.others = 2.0  # our own load (two threads) is not counted as someone else's
    machine.advance(10.0, own_cores=2.0)
    assert counter.update() == 1


def test_fixed_count_wins_and_bad_counts_are_errors(monkeypatch):
    machine = FakeMachine(monkeypatch, cores=2)
    machine.others = 2.0
    assert ThreadCounter(fixed=2).update() == 2 and torch.get_num_threads() == 2
    with pytest.raises(EmpoError, match="--threads must be at least 1, got 0"):
        ThreadCounter(fixed=0)


def test_without_proc_the_default_is_torchs(monkeypatch):
    monkeypatch.setattr(threads_module, "_busy_ticks", lambda: None)
    torch.set_num_threads(1)
    assert ThreadCounter(probe_s=0.0).update() == 1


def test_start_threads_reads_the_flag_then_the_environment(monkeypatch, capsys):
    FakeMachine(monkeypatch, cores=2)
    monkeypatch.setenv("EMPO_THREADS", "1")
    assert start_threads(None).threads == 1 and torch.get_num_threads() == 1
    assert "threads: 1 (EMPO_THREADS)" in capsys.readouterr().err
    assert start_threads(2).threads == 2 and torch.get_num_threads() == 2
    monkeypatch.delenv("EMPO_THREADS")
    counter = start_threads(None)
    assert counter.threads == 2 and "re-counted every epoch" in capsys.readouterr().err
    for bad in ("two", "0"):
        monkeypatch.setenv("EMPO_THREADS", bad)
        with pytest.raises(EmpoError, match=f"EMPO_THREADS='{bad}'"):
            start_threads(None)


def test_the_trainer_recounts_before_every_epoch(tmp_path):
    class CountingCounter:
        calls = 0

        def update(self):
            self.calls += 1
            return 1

    config = resolve_config("hopper-medium", "mopo", "smoke", overrides={"training": {"eval_episodes": 0, "epochs": 3}})
    dataset = synthetic_transitions().qlearning().to_tensors("cpu")
    counter = CountingCounter()
    Trainer(config, dataset, FakeDynamics(), tmp_path, progress=False, threads=counter).run()
    assert counter.calls == 3


def test_empo_model_train_applies_the_flag(tmp_path, monkeypatch, capsys):
    import empo.cli.model as model_cli

    seen = {}

    def fake_train(*args, threads=None, **kwargs):
        seen["threads"], seen["torch"] = threads.threads, torch.get_num_threads()

    import empo.models

    monkeypatch.setattr(empo.models, "train_dynamics", fake_train)
    monkeypatch.setattr("empo.data.load_transitions", lambda *a, **k: synthetic_transitions(n=300))
    argv = ["train", "--task", "hopper-medium", "--model", "ftm", "--preset", "smoke", "--out", str(tmp_path / "m"), "--threads", "2"]
    assert model_cli.main(argv) == 0
    assert seen == {"threads": 2, "torch": 2}
    assert "threads: 2 (--threads)" in capsys.readouterr().err


def test_thread_counter_makes_denormals_count_as_zero():
    # the decayed weights of dead units are denormal; x86 arithmetic on them takes a slow path
    tiny = torch.finfo(torch.float32).tiny
    torch.set_flush_denormal(False)  # other tests' commands have set it already
    try:
        denormal = torch.tensor([tiny / 4.0])
        assert 0.0 < denormal.item() < tiny
        assert (denormal * 2.0).item() > 0.0  # without the setting: a denormal result
        ThreadCounter(1)
        assert (denormal * 2.0).item() == 0.0  # read as zero (and results below tiny flushed)
        assert (torch.tensor([tiny]) * 0.5).item() == 0.0
        assert (torch.tensor([tiny]) * 2.0).item() == 2.0 * tiny  # normal numbers are unchanged
    finally:
        torch.set_flush_denormal(True)
