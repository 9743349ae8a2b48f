"""The ETM's energy network: an ensemble of ReLU MLPs E(x, y) -> scalar, all members in one tensor.

Hand-written because it must be fast and batched on the device: the (s, a) part of the first
layer is computed once per input (``encode``) and reused by every Langevin step and every chain or
negative (``energy_from_code``). Its analytic gradient is in empo/models/energy_grad.py, the
model around it in empo/models/etm.py.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from empo.models.layers import EnsembleLinear


class EnergyEnsemble(nn.Module):
    """``members`` ReLU MLPs (``hidden_layers`` x ``hidden_size``) with a linear scalar output."""

    def __init__(self, members: int, input_dim: int, target_dim: int, hidden_size: int, hidden_layers: int) -> None:
        super().__init__()
        self.members, self.input_dim, self.target_dim = members, input_dim, target_dim
        # First layer on [x, y] split into an x part (with bias) and a y part (no bias): same function.
        first = EnsembleLinear(members, input_dim + target_dim, hidden_size)
        self.input_layer = EnsembleLinear(members, input_dim, hidden_size)
        self.target_weight = nn.Parameter(first.weight.detach()[:, input_dim:].clone())
        with torch.no_grad():
            self.input_layer.weight.copy_(first.weight[:, :input_dim])
            self.input_layer.bias.copy_(first.bias)
        self.hidden = nn.ModuleList(
            EnsembleLinear(members, hidden_size, hidden_size) for _ in range(hidden_layers - 1)
        )
        self.output = EnsembleLinear(members, hidden_size, 1)

    def encode(self, x: Tensor) -> Tensor:
        """The input's share of the first layer: x [M, B, input_dim] (or [B, input_dim]) -> [M, B, H]."""
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.members, -1, -1)
        return self.input_layer(x)

    def energy_from_code(self, code: Tensor, y: Tensor) -> Tensor:
        """Energies for code [M, B, H] and targets y [M, B, K, target_dim] -> [M, B, K]."""
        members, batch, chains, dim = y.shape
        hidden = code.shape[-1]
        h = torch.bmm(y.reshape(members, batch * chains, dim), self.target_weight)
        h = torch.relu(h.view(members, batch, chains, hidden) + code.unsqueeze(2)).view(members, batch * chains, hidden)
        for layer in self.hidden:
            h = torch.relu(layer(h))
        return self.output(h).view(members, batch, chains)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """E(x, y): x [M, B, input_dim], y [M, B, K, target_dim] -> [M, B, K]."""
        return self.energy_from_code(self.encode(x), y)

    def member(self, index: int) -> nn.Sequential:
        """Member ``index`` as a plain MLP on cat(x, y) (for tests of the batched computation)."""
        first = nn.Linear(self.input_dim + self.target_dim, self.target_weight.shape[-1])
        with torch.no_grad():
            first.weight.copy_(torch.cat([self.input_layer.weight[index], self.target_weight[index]], 0).T)
            first.bias.copy_(self.input_layer.bias[index, 0])
        layers: list[nn.Module] = [first, nn.ReLU()]
        for layer in self.hidden:
            layers += [layer.member(index), nn.ReLU()]
        layers.append(self.output.member(index))
        return nn.Sequential(*layers).to(self.target_weight.device)
