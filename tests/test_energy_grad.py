"""The analytic energy gradient: equal to autograd's in float64 and float32, builds no graph, FLOP count."""

import pytest
import torch

from empo.models.energy_grad import energy_and_grad, energy_grad_fn, langevin_flops_per_step
from empo.models.etm import EnergyEnsemble

INPUT_DIM, HIDDEN, BATCH = 5, 16, 7


def make_case(members, hidden_layers, chains, dim, dtype, seed=0):
    torch.manual_seed(seed)
    net = EnergyEnsemble(members, INPUT_DIM, dim, HIDDEN, hidden_layers).to(dtype)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(BATCH, INPUT_DIM, generator=gen, dtype=dtype)
    y = torch.randn(members, BATCH, chains, dim, generator=gen, dtype=dtype)
    with torch.no_grad():
        code = net.encode(x)
    return net, code, y


def autograd_reference(net, code, y):
    y = y.detach().clone().requires_grad_(True)
    energy = net.energy_from_code(code, y)
    (grad,) = torch.autograd.grad(energy.sum(), y)
    return energy.detach(), grad


def relative_error(got, want):
    return ((got - want).abs().max() / want.abs().max()).item()


@pytest.mark.parametrize("dim", [2, 12])
@pytest.mark.parametrize("chains", [1, 5])
@pytest.mark.parametrize("hidden_layers", [1, 2, 4])
@pytest.mark.parametrize("members", [1, 3])
def test_equals_autograd_in_float64(members, hidden_layers, chains, dim):
    net, code, y = make_case(members, hidden_layers, chains, dim, torch.float64)
    want_energy, want_grad = autograd_reference(net, code, y)
    energy, grad = energy_and_grad(net, code, y)
    assert energy.shape == (members, BATCH, chains) and grad.shape == (members, BATCH, chains, dim)
    assert energy.dtype == grad.dtype == torch.float64
    assert want_grad.abs().max() > 0  # a dead network would compare zeros with zeros
    assert relative_error(energy, want_energy) < 1e-10
    assert relative_error(grad, want_grad) < 1e-10


def test_equals_autograd_in_float32():
    net, code, y = make_case(3, 4, 5, 12, torch.float32, seed=3)
    want_energy, want_grad = autograd_reference(net, code, y)
    energy, grad = energy_and_grad(net, code, y)
    assert energy.dtype == grad.dtype == torch.float32
    assert relative_error(energy, want_energy) < 1e-5
    assert relative_error(grad, want_grad) < 1e-5


def test_closure_matches_and_inputs_are_left_alone():
    net, code, y = make_case(3, 3, 2, 4, torch.float64, seed=5)
    # a non-contiguous y (one target broadcast over the chains), as a warm start would give
    y = y[:, :, :1].expand(-1, -1, 4, -1)
    code_before, y_before = code.clone(), y.clone()
    want_energy, want_grad = autograd_reference(net, code, y)
    energy, grad = energy_grad_fn(net, code)(y)
    assert relative_error(energy, want_energy) < 1e-10
    assert relative_error(grad, want_grad) < 1e-10
    assert torch.equal(code, code_before) and torch.equal(y, y_before)


def test_builds_no_autograd_graph():
    net, _, y = make_case(2, 3, 2, 4, torch.float32, seed=7)
    assert all(p.requires_grad for p in net.parameters())
    x = torch.randn(BATCH, INPUT_DIM)
    code = net.encode(x)  # with a graph back to the parameters
    assert code.requires_grad
    y = y.requires_grad_(True)
    for energy, grad in (energy_and_grad(net, code, y), energy_grad_fn(net, code)(y)):
        for t in (energy, grad):
            assert not t.requires_grad and t.grad_fn is None


def test_flop_count_of_a_small_case():
    # D 3, H 4, two hidden HxH layers (hidden_layers 3), 10 rows:
    # forward 2*10*3*4 + 2*(2*10*4*4) + 2*10*4*1 = 240 + 640 + 80; backward 640 + 240
    net = EnergyEnsemble(members=2, input_dim=5, target_dim=3, hidden_size=4, hidden_layers=3)
    assert langevin_flops_per_step(net, 10) == 1840
    # no hidden HxH layer: forward 2*10*3*4 + 2*10*4 = 320, backward 240
    single = EnergyEnsemble(members=2, input_dim=5, target_dim=3, hidden_size=4, hidden_layers=1)
    assert langevin_flops_per_step(single, 10) == 560
