"""The Langevin sampler: lowers the energy, reproducible under a seed, chains and warm starts."""

import dataclasses

import pytest
import torch

from empo.models import LangevinConfig, langevin_sample
from empo.models.langevin import step_sizes


def quadratic_energy(center: torch.Tensor):
    """E(y) = ||y - center||^2 per chain; center [*batch, dim] broadcast over chains."""
    return lambda y: (y - center.unsqueeze(-2)).square().sum(-1)


def test_step_size_schedule_is_polynomial_from_start_to_end():
    sizes = step_sizes(LangevinConfig(steps=4, step_size_start=0.1, step_size_end=1e-3, step_size_power=2.0))
    assert sizes[0] == pytest.approx(0.1)
    assert sizes == sorted(sizes, reverse=True)
    # t / (steps - 1): t = 2 of 0..3 gives (1 - 2/3)^2 = 1/9 of the span
    assert sizes[2] == pytest.approx((0.1 - 1e-3) / 9 + 1e-3)
    # the authors' schedule: the last step uses the final size exactly
    assert sizes[-1] == 1e-3
    for steps in (2, 30, 100):
        assert step_sizes(LangevinConfig(steps=steps, step_size_end=1e-5))[-1] == 1e-5
    assert step_sizes(LangevinConfig(steps=1, step_size_start=0.1, step_size_end=1e-5)) == [pytest.approx(0.1)]


def test_legacy_step_size_schedule_stops_above_the_end():
    legacy = LangevinConfig(steps=4, step_size_start=0.1, step_size_end=1e-3, step_size_reaches_end=False)
    sizes = step_sizes(legacy)
    assert sizes[2] == pytest.approx((0.1 - 1e-3) * 0.25 + 1e-3)  # t / steps
    assert sizes[-1] > 1e-3


def test_sampler_settings_are_validated():
    for bad in ({"grad_clip": 0.0}, {"noise": -0.1}, {"step_size_start": 1e-3, "step_size_end": 0.1}, {"move_clip": -1.0}):
        with pytest.raises(ValueError):
            LangevinConfig(**bad)


def test_gradient_clip_bounds_each_move():
    """A steep energy (gradient 100 everywhere): one noiseless step moves by eta * 0.5 * clip."""
    steep = lambda y: 100.0 * y.sum(-1)  # noqa: E731
    for clip in (0.5, 10.0):
        config = LangevinConfig(steps=1, noise=0.0, step_size_start=0.1, step_size_end=0.1, grad_clip=clip, move_clip=5.0)
        out = langevin_sample(steep, (1, 3), 2, config)
        assert torch.allclose(out, torch.full_like(out, -0.1 * 0.5 * clip))


def test_langevin_lowers_the_energy_and_keeps_shape_and_bounds():
    center = torch.rand(3, 8, 2) * 1.6 - 0.8  # [members, batch, dim]
    energy = quadratic_energy(center)
    config = LangevinConfig(steps=60, noise=0.0, step_size_start=0.5, step_size_end=0.05, init="uniform")
    gen = torch.Generator().manual_seed(0)
    start = langevin_sample(energy, (3, 8), 2, dataclasses.replace(config, steps=0), generator=gen)
    gen = torch.Generator().manual_seed(0)
    out = langevin_sample(energy, (3, 8), 2, config, generator=gen)
    assert out.shape == (3, 8, 2)
    e_start = energy(start.unsqueeze(-2)).mean()
    e_end = energy(out.unsqueeze(-2)).mean()
    assert e_end < 0.05 * e_start
    assert out.abs().max() <= config.bound


def test_langevin_is_reproducible_under_a_seeded_generator():
    center = torch.rand(2, 5, 3)
    config = LangevinConfig(steps=10, noise=0.5, chains=4)
    a = langevin_sample(quadratic_energy(center), (2, 5), 3, config, generator=torch.Generator().manual_seed(7))
    b = langevin_sample(quadratic_energy(center), (2, 5), 3, config, generator=torch.Generator().manual_seed(7))
    c = langevin_sample(quadratic_energy(center), (2, 5), 3, config, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_chains_return_the_lowest_energy_chain_and_keep_chains_returns_all():
    center = torch.zeros(1, 4, 1)
    config = LangevinConfig(steps=1, noise=0.5, chains=16, init="uniform", step_size_start=1e-6, step_size_end=1e-6)
    chains = langevin_sample(
        quadratic_energy(center), (1, 4), 1, config, generator=torch.Generator().manual_seed(0), keep_chains=True
    )
    best = langevin_sample(quadratic_energy(center), (1, 4), 1, config, generator=torch.Generator().manual_seed(0))
    assert chains.shape == (1, 4, 16, 1)
    assert torch.allclose(best, chains.gather(-2, chains.abs().argmin(-2, keepdim=True)).squeeze(-2))


def test_warm_start_replaces_the_zero_start():
    center = torch.full((1, 2, 1), 0.9)
    config = LangevinConfig(steps=0)
    assert torch.equal(langevin_sample(quadratic_energy(center), (1, 2), 1, config), torch.zeros(1, 2, 1))
    init = torch.full((1, 2, 1), 0.3)
    assert torch.equal(langevin_sample(quadratic_energy(center), (1, 2), 1, config, init=init), init)
    # A move clamp limits each step: 3 steps of at most 0.1 from the warm start.
    moved = langevin_sample(
        quadratic_energy(center), (1, 2), 1, LangevinConfig(steps=3, noise=0.0, move_clip=0.1, step_size_start=1.0, step_size_end=1.0), init=init
    )
    assert torch.allclose(moved, torch.full_like(moved, 0.6))
