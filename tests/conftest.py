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
def one_thread():
    """Tiny networks: one thread is fastest, and more oversubscribe a loaded 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
