"""The Langevin sampler: one function for ETM training negatives and for inference.

Hand-written because it is the hot loop of ETM: it must stay batched (batch x chains x ensemble
members in one tensor) and on the device, with no host synchronisation inside the loop (no
``.item()``, no printing, no Python branching on tensor values; only on config values).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from empo.errors import EmpoError
from empo.models.config import LangevinConfig
from empo.models.energy_grad import EnergyGradFn

EnergyFn = Callable[[Tensor], Tensor]


def step_sizes(config: LangevinConfig) -> list[float]:
    """Polynomial step-size schedule from start to end with ``step_size_power`` (docs/models.md, Langevin).

    With ``step_size_reaches_end`` (the authors' schedule) the fraction is t / (steps - 1), so the
    last step uses ``step_size_end`` exactly; a single step uses ``step_size_start``.
    """
    start, end, power, steps = config.step_size_start, config.step_size_end, config.step_size_power, config.steps
    span = max(steps - 1, 1) if config.step_size_reaches_end else steps
    return [(start - end) * (1.0 - t / span) ** power + end for t in range(steps)]


def langevin_sample(
    energy_fn: EnergyFn,
    batch_shape: tuple[int, ...],
    dim: int,
    config: LangevinConfig,
    *,
    generator: torch.Generator | None = None,
    init: Tensor | None = None,
    keep_chains: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    grad_fn: EnergyGradFn | None = None,
) -> Tensor:
    """Refine targets ``y`` by Langevin dynamics on ``energy_fn`` and return the last iterate.

    ``energy_fn`` maps y of shape ``[*batch_shape, K, dim]`` to energies ``[*batch_shape, K]``
    (K = ``config.chains``); ``batch_shape`` is e.g. ``(members, batch)``. Each step:
    ``y <- clamp(y - clamp(eta_t * (grad_scale * clamp(dE/dy) + noise * eps), move_clip), bound)``.

    Start: ``init`` (a warm start, shape ``[*batch_shape, dim]`` or ``[*batch_shape, K, dim]``)
    if given, else zeros or uniform in [-1, 1] per ``config.init``; plus Gaussian noise of std
    ``config.init_noise`` per chain. With ``keep_chains`` all K
    chains are returned (``[*batch_shape, K, dim]``, used for training negatives); otherwise the
    lowest-energy chain per input (``[*batch_shape, dim]``). Reproducible under ``generator``.

    ``grad_fn`` (y -> (energy, dE/dy)) replaces autograd for the gradient, e.g. the ETM's
    analytic gradient (``empo.models.energy_grad``); ``energy_fn`` still ranks the chains.
    """
    chains = config.chains
    shape = (*batch_shape, chains, dim)
    if init is not None:
        device = init.device
        dtype = init.dtype
        start = init.unsqueeze(-2) if init.dim() == len(batch_shape) + 1 else init
        y = start.expand(shape).clone()
    elif config.init in ("mean_head", "positive"):
        raise EmpoError(f"a sampler with init {config.init} needs its start (init=...) from the caller")
    elif config.init == "uniform":
        y = torch.rand(shape, generator=generator, device=device, dtype=dtype) * 2.0 - 1.0
    else:
        y = torch.zeros(shape, device=device, dtype=dtype)
    if config.init_noise > 0.0:
        y = y + config.init_noise * torch.randn(shape, generator=generator, device=y.device, dtype=y.dtype)
    bound = config.bound
    y = y.clamp(-bound, bound)
    with torch.enable_grad():
        for eta in step_sizes(config):
            if grad_fn is not None:
                _, grad = grad_fn(y)
            else:
                y = y.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(energy_fn(y).sum(), y)
            move = config.grad_scale * grad.clamp(-config.grad_clip, config.grad_clip)
            if config.noise > 0.0:
                move = move + config.noise * torch.randn(shape, generator=generator, device=y.device, dtype=y.dtype)
            move = (eta * move).clamp(-config.move_clip, config.move_clip)
            y = (y.detach() - move).clamp(-bound, bound)
    y = y.detach()
    if keep_chains:
        return y
    if chains == 1:
        return y.squeeze(-2)
    with torch.no_grad():
        best = energy_fn(y).argmin(dim=-1)  # [*batch_shape]
    index = best[..., None, None].expand(*batch_shape, 1, dim)
    return y.gather(-2, index).squeeze(-2)
