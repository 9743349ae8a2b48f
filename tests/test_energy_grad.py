"""The analytic energy gradient: equal to autograd's in float64 and float32, builds no graph, FLOP count."""

import pytest
import torch

from empo.models.energy_grad import _energy_and_grad_pure, energy_and_grad, energy_grad_fn, langevin_flops_per_step
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


@pytest.mark.parametrize("hidden_layers", [1, 4])
def test_functional_form_for_compile_equals_in_place_form(hidden_layers):
    net, code, y = make_case(3, hidden_layers, 5, 12, torch.float64, seed=7)
    params = (net.target_weight, [layer.weight for layer in net.hidden], [layer.bias for layer in net.hidden], net.output.weight, net.output.bias)
    with torch.no_grad():
        energy, grad = _energy_and_grad_pure(y, code, *params)
    want_energy, want_grad = energy_and_grad(net, code, y)
    assert relative_error(energy, want_energy) < 1e-12
    assert relative_error(grad, want_grad) < 1e-12


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


def test_the_sampler_gives_the_same_samples_with_either_gradient():
    """The published samplers (rollout, evaluation, training negatives) under one seed: the analytic
    gradient and autograd's give the same chains up to float32 rounding."""
    import dataclasses

    from empo.models import build_model, load_model_config
    from empo.models.etm import sample_negatives

    config = load_model_config("etm", "smoke")
    torch.manual_seed(0)
    model = build_model("etm", 11, 3, "hopper", config)
    model.fit_scalers(torch.randn(500, 14), torch.randn(500, 12) * 0.1)
    obs, act = torch.randn(40, 11), torch.rand(40, 3) * 2 - 1
    for sampler in (config.etm.rollout_langevin, config.etm.eval_langevin):
        a = model.sample_members(obs, act, dataclasses.replace(sampler, gradient="analytic"), torch.Generator().manual_seed(3))
        b = model.sample_members(obs, act, dataclasses.replace(sampler, gradient="autograd"), torch.Generator().manual_seed(3))
        c = model.sample_members(obs, act, dataclasses.replace(sampler, gradient="compiled"), torch.Generator().manual_seed(3))
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
        assert torch.allclose(a, c, rtol=1e-4, atol=1e-5)
    x = model.input_scaler(torch.cat([obs, act], -1)).unsqueeze(0).expand(model.members, -1, -1)
    code = model.energy.encode(x)
    negatives = {}
    for gradient in ("analytic", "compiled", "autograd"):
        etm = dataclasses.replace(config.etm, train_langevin=dataclasses.replace(config.etm.train_langevin, gradient=gradient))
        negatives[gradient] = sample_negatives(model.energy, code, 12, etm, torch.Generator().manual_seed(4))
    assert torch.allclose(negatives["analytic"], negatives["autograd"], rtol=1e-4, atol=1e-5)
    assert torch.allclose(negatives["analytic"], negatives["compiled"], rtol=1e-4, atol=1e-5)
