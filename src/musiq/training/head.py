"""The MOS head during training, in standardised label units.

A MOS is predicted in the label's units (e.g. 0-100), so a head trained directly needs
weights of that size: plain SGD would take thousands of steps just to scale the output.
During training the head predicts ``(mos - mean) / std`` of the training labels and this
module maps it back; :meth:`ScaledHead.folded` bakes the mapping into an ordinary Dense
layer, which is what the official checkpoint format holds.
"""
from __future__ import annotations

import torch
from torch import nn


class ScaledHead(nn.Module):
    """``output = mean + std * linear(x)`` with fixed ``mean``/``std`` (label units)."""

    def __init__(self, linear: nn.Linear, mean: float, std: float) -> None:
        super().__init__()
        self.linear = linear
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    @classmethod
    def wrap(cls, head: nn.Linear, mean: float, std: float) -> "ScaledHead":
        """Wrap an existing label-unit head without changing its outputs."""
        inner = nn.Linear(head.in_features, head.out_features)
        with torch.no_grad():
            inner.weight.copy_(head.weight / std)
            inner.bias.copy_((head.bias - mean) / std)
        return cls(inner, mean, std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) * self.std + self.mean

    @torch.no_grad()
    def folded(self) -> nn.Linear:
        """An equivalent plain Dense layer in label units."""
        out = nn.Linear(self.linear.in_features, self.linear.out_features)
        out.weight.copy_(self.linear.weight * self.std)
        out.bias.copy_(self.linear.bias * self.std + self.mean)
        return out.to(self.linear.weight.device)
