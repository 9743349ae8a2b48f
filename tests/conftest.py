"""Every test runs with its own empty data roots, so none reads or writes the user's datasets."""

import pytest
import torch

# Tiny networks: one thread is fastest, and more oversubscribe a loaded 2-core machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def isolated_data_roots(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.mktemp("roots")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root / "minari" / "datasets"))
    monkeypatch.setenv("D4RL_DATASET_DIR", str(root / "d4rl"))
    monkeypatch.setenv("EMPO_HOME", str(root / "empo_home"))
    return root
