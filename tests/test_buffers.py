"""Device ring buffers and the real/model mix of a batch."""

import pytest
import torch

from empo.errors import EmpoError
from empo.loop.buffers import TransitionBuffer, sample_mixed


def rows(start, n, obs_dim=2, act_dim=1, reward=None):
    ids = torch.arange(start, start + n, dtype=torch.float32)
    return {
        "observations": ids[:, None].repeat(1, obs_dim),
        "actions": ids[:, None].repeat(1, act_dim),
        "rewards": ids if reward is None else torch.full((n,), float(reward)),
        "next_observations": ids[:, None].repeat(1, obs_dim) + 0.5,
        "terminals": torch.zeros(n),
    }


def test_ring_buffer_keeps_the_newest_rows():
    buffer = TransitionBuffer(10, 2, 1)
    buffer.add(rows(0, 7))
    assert len(buffer) == 7 and buffer.position == 7
    buffer.add(rows(7, 6))  # wraps: rows 3..12 remain
    assert len(buffer) == 10 and buffer.position == 3
    assert sorted(buffer.storage["rewards"].tolist()) == list(range(3, 13))
    buffer.add(rows(100, 25))  # more than the capacity: only the last 10 fit
    assert sorted(buffer.storage["rewards"].tolist()) == list(range(115, 125))


def test_sampling_is_reproducible_with_a_generator_and_stays_in_the_filled_part():
    buffer = TransitionBuffer(100, 2, 1)
    buffer.add(rows(0, 30))
    a = buffer.sample(64, torch.Generator().manual_seed(1))
    b = buffer.sample(64, torch.Generator().manual_seed(1))
    assert torch.equal(a["rewards"], b["rewards"])
    assert a["rewards"].max() < 30
    with pytest.raises(EmpoError, match="empty"):
        TransitionBuffer(5, 2, 1).sample(4)


def test_mixed_batch_takes_real_ratio_of_real_rows():
    real = TransitionBuffer.from_tensors(rows(0, 50, reward=1.0))
    model = TransitionBuffer(1000, 2, 1)
    gen = torch.Generator().manual_seed(0)
    # before the first rollout the whole batch is real
    assert torch.all(sample_mixed(real, model, 256, 0.05, gen)["rewards"] == 1.0)
    model.add(rows(0, 500, reward=-1.0))
    batch = sample_mixed(real, model, 256, 0.05, gen)
    assert batch["observations"].shape == (256, 2)
    assert int((batch["rewards"] == 1.0).sum()) == 12  # int(256 * 0.05)
    assert int((batch["rewards"] == -1.0).sum()) == 244
    assert torch.all(sample_mixed(real, model, 64, 0.0, gen)["rewards"] == -1.0)
    assert torch.all(sample_mixed(real, model, 64, 1.0, gen)["rewards"] == 1.0)


def test_state_dict_round_trip():
    buffer = TransitionBuffer(10, 2, 1)
    buffer.add(rows(0, 13))
    copy = TransitionBuffer(10, 2, 1)
    copy.load_state_dict(buffer.state_dict())
    assert (copy.position, copy.size) == (buffer.position, buffer.size)
    for key, value in buffer.storage.items():
        assert torch.equal(copy.storage[key], value)
    with pytest.raises(EmpoError, match="capacity"):
        TransitionBuffer(11, 2, 1).load_state_dict(buffer.state_dict())


def test_penalties_are_kept_default_to_zero_and_old_checkpoints_load():
    buffer = TransitionBuffer(10, 2, 1)
    with_penalty = rows(0, 3)
    with_penalty["penalties"] = torch.tensor([0.5, 1.0, 1.5])
    buffer.add(with_penalty)
    buffer.add(rows(3, 2))  # real data: no penalties given
    assert buffer.storage["penalties"][:5].tolist() == [0.5, 1.0, 1.5, 0.0, 0.0]
    state = buffer.state_dict()
    del state["storage"]["penalties"]  # a checkpoint written before the key existed
    restored = TransitionBuffer(10, 2, 1)
    restored.storage["penalties"].fill_(9.0)
    restored.load_state_dict(state)
    assert restored.storage["penalties"][:5].tolist() == [0.0] * 5
    assert torch.equal(restored.storage["rewards"][:5], buffer.storage["rewards"][:5])
    del state["storage"]["rewards"]
    with pytest.raises(EmpoError, match="rewards"):
        TransitionBuffer(10, 2, 1).load_state_dict(state)
