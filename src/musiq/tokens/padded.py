"""The padded token layout the converted runtimes read: ``(B, T, 3075)`` float32.

Each row is an image's token: 3072 patch values, the hashed position, the scale id and the
mask (1 valid, 0 padding); see docs/onnx.md. NumPy only, so that a runtime with a cached
conversion scores without importing torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from .preprocess import Tokens

__all__ = ["pad_tokens"]


def pad_tokens(tokens: "Sequence[Tokens]") -> np.ndarray:
    """Several images' valid tokens as one padded ``(B, longest, 3075)`` float32 array (mask 1
    on valid rows, all-zero padding rows): the exported model's input without the original's
    per-scale padding."""
    longest = max(len(t) for t in tokens)
    features = tokens[0].patches.shape[1]
    out = np.zeros((len(tokens), longest, features + 3), np.float32)
    for i, t in enumerate(tokens):
        n = len(t)
        out[i, :n, :features] = t.patches
        out[i, :n, features] = t.positions
        out[i, :n, features + 1] = t.scale_ids
        out[i, :n, features + 2] = 1.0
    return out
