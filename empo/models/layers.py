"""Scalers and member-batched layers shared by the ETM and FTM ensembles.

Hand-written because every ensemble must run as one batched computation on the device: the
weights of all members sit in one tensor with a leading member dimension and one ``baddbmm``
computes every member's layer at once (no Python loop over members).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class Standardizer(nn.Module):
    """z-score per dimension: (x - mean) / std; std below 1e-6 counts as 1."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, x: Tensor) -> Standardizer:
        self.mean.copy_(x.mean(0))
        std = x.std(0, correction=0)
        self.std.copy_(torch.where(std < 1e-6, torch.ones_like(std), std))
        return self

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def inverse(self, z: Tensor) -> Tensor:
        return z * self.std + self.mean


class MaxAbsScaler(nn.Module):
    """Per-dimension division by max |x|, so fitted data lies in [-1, 1]; max below 1e-6 counts as 1."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(dim))

    @torch.no_grad()
    def fit(self, x: Tensor) -> MaxAbsScaler:
        scale = x.abs().amax(0)
        self.scale.copy_(torch.where(scale < 1e-6, torch.ones_like(scale), scale))
        return self

    def forward(self, x: Tensor) -> Tensor:
        return x / self.scale

    def inverse(self, z: Tensor) -> Tensor:
        return z * self.scale


class EnsembleLinear(nn.Module):
    """``members`` independent linear layers applied as one batched matmul.

    Input [M, N, in] -> output [M, N, out]. Initialised like ``nn.Linear`` per member.
    """

    def __init__(self, members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.members, self.in_features, self.out_features = members, in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(members, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias, x, self.weight)

    def member(self, index: int) -> nn.Linear:
        """Member ``index`` as a plain ``nn.Linear`` (for tests of the batched computation)."""
        layer = nn.Linear(self.in_features, self.out_features)
        with torch.no_grad():
            layer.weight.copy_(self.weight[index].T)
            layer.bias.copy_(self.bias[index, 0])
        return layer.to(self.weight.device)
