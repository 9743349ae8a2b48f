"""Shared test fixtures: isolated data roots, one torch thread."""

import pytest
import torch


@pytest.fixture(autouse=True)
def isolated_data_roots(tmp_path_factory, monkeypatch):
    """Every test gets its own empty data roots, so none reads or writes the user's datasets."""
    root = tmp_path_factory.mktemp("roots")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root / "minari" / "datasets"))
    monkeypatch.setenv("D4RL_DATASET_DIR", str(root / "d4rl"))
    monkeypatch.setenv("EMPO_HOME", str(root / "empo_home"))
    return root


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Tiny networks: one thread is fastest, and more oversubscribe a loaded 2-core machine.

    ``EMPO_THREADS=1`` keeps the commands the tests run at one thread too."""
    monkeypatch.setenv("EMPO_THREADS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
