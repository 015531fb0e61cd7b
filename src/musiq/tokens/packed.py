"""Packed tokens: the valid tokens of several images, concatenated, as the network reads them.

One type for every path: made from NumPy :class:`~musiq.tokens.preprocess.Tokens` on the host
(:meth:`PackedBatch.from_tokens`) or by the torch preprocessing on the scoring device
(:func:`musiq.tokens.preprocess_torch.tokenize`), and read by :class:`~musiq.network.model.Musiq` and the
engine's runtimes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from .preprocess import ScaleInfo, Tokens

__all__ = ["PackedBatch"]


@dataclass
class PackedBatch:
    """Valid tokens of several images, concatenated, on one device.

    ``patches`` float ``(N, patch * patch * 3)`` in [-1, 1]; ``positions`` and ``scale_ids``
    int64 ``(N,)``; ``lengths``: tokens per image (sum N); ``scales``: each image's
    :class:`~musiq.tokens.preprocess.ScaleInfo` list where known (empty lists otherwise).
    """

    patches: torch.Tensor
    positions: torch.Tensor
    scale_ids: torch.Tensor
    lengths: list[int]
    scales: list[list[ScaleInfo]] = field(default_factory=list)

    @classmethod
    def from_tokens(cls, tokens: Sequence[Tokens]) -> "PackedBatch":
        """Concatenate the valid tokens of several images (no copy for a single image)."""
        def cat(arrays: list[np.ndarray]) -> torch.Tensor:
            return torch.from_numpy(arrays[0] if len(arrays) == 1 else np.concatenate(arrays))

        return cls(cat([t.patches for t in tokens]), cat([t.positions for t in tokens]),
                   cat([t.scale_ids for t in tokens]), [len(t) for t in tokens],
                   [list(t.scales) for t in tokens])

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "PackedBatch":
        return PackedBatch(self.patches.to(device, dtype), self.positions.to(device),
                           self.scale_ids.to(device), self.lengths, self.scales)

    def padded(self, rows: int) -> "PackedBatch":
        """The same batch with ``rows`` zero patches appended (for shape bucketing; the
        extra rows belong to no image)."""
        def pad(t: torch.Tensor) -> torch.Tensor:
            return torch.cat([t, t.new_zeros((rows, *t.shape[1:]))])

        return PackedBatch(pad(self.patches), pad(self.positions), pad(self.scale_ids),
                           self.lengths, self.scales)

    def image(self, i: int) -> Tokens:
        """Image ``i`` as NumPy :class:`~musiq.tokens.preprocess.Tokens` (on the host)."""
        start = sum(self.lengths[:i])
        sl = slice(start, start + self.lengths[i])
        return Tokens(self.patches[sl].detach().cpu().numpy(),
                      self.positions[sl].cpu().numpy(), self.scale_ids[sl].cpu().numpy(),
                      list(self.scales[i]) if self.scales else [])
