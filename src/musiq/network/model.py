"""The MUSIQ network in PyTorch, with the official parameter names mapped in.

Architecture (docs/spec.md section 3; sizes from :class:`musiq.network.architecture.Architecture`): a per-patch ResNet stem (standardised 7x7
conv, GroupNorm, max-pool, one bottleneck unit) embeds each 32x32 patch to 384 values; hashed
spatial and scale embeddings are added; a CLS token goes first; 14 pre-norm Transformer blocks;
the CLS output goes through the head.

Images of different lengths are batched by packing: the stem runs on the valid patches only,
sequences are padded per batch, and attention uses a key-padding mask through
``scaled_dot_product_attention`` (memory linear in sequence length).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .architecture import (LAYER_NORM_EPS, OFFICIAL, Architecture, OfficialParam,
                           official_parameters)
from ..tokens.packed import PackedBatch


def _tf_same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding: the odd pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class StdConv(nn.Module):
    """Convolution with weight standardisation (population std, eps 1e-5), no bias, TF SAME."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, cin, kernel, kernel))
        nn.init.kaiming_normal_(self.weight)  # a random start; checkpoints overwrite it
        self.kernel, self.stride = kernel, stride
        self._cached: tuple[tuple, torch.Tensor] | None = None

    def standardised_weight(self) -> torch.Tensor:
        w = self.weight
        w = w - w.mean(dim=(1, 2, 3), keepdim=True)
        return w / (w.std(dim=(1, 2, 3), unbiased=False, keepdim=True) + 1e-5)

    def _weight(self) -> torch.Tensor:
        """The standardised weight, computed once per weight value when no gradient is needed
        (it is invariant in inference, and recomputing it cost ~5 % of the stem)."""
        if torch.is_grad_enabled() and self.weight.requires_grad:
            return self.standardised_weight()
        key = (self.weight._version, self.weight.data_ptr(), self.weight.device, self.weight.dtype)
        if (self._cached is None or self._cached[0] != key
                # made under inference_mode: autograd (w.r.t. the input) cannot save it
                or (self._cached[1].is_inference() and not torch.is_inference_mode_enabled())):
            with torch.no_grad():
                self._cached = (key, self.standardised_weight().float())
        return self._cached[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padding: int | str = 0
        if self.kernel > 1:
            ph = _tf_same_pad(x.shape[-2], self.kernel, self.stride)
            pw = _tf_same_pad(x.shape[-1], self.kernel, self.stride)
            if ph[0] == ph[1] and pw[0] == pw[1]:
                padding = (ph[0], pw[0])  # symmetric: let the convolution pad (no copy)
            else:
                x = F.pad(x, (*pw, *ph))
        return F.conv2d(x, self._weight(), stride=self.stride, padding=padding)


class Bottleneck(nn.Module):
    """ResNet v1 bottleneck unit with a projection shortcut (``block1/unit1``)."""

    def __init__(self, cin: int, mid: int, cout: int, eps: float = 1e-4) -> None:
        super().__init__()
        self.conv_proj = StdConv(cin, cout, 1)
        self.gn_proj = nn.GroupNorm(32, cout, eps=eps)
        self.conv1 = StdConv(cin, mid, 1)
        self.gn1 = nn.GroupNorm(32, mid, eps=eps)
        self.conv2 = StdConv(mid, mid, 3)
        self.gn2 = nn.GroupNorm(32, mid, eps=eps)
        self.conv3 = StdConv(mid, cout, 1)
        self.gn3 = nn.GroupNorm(32, cout, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.gn_proj(self.conv_proj(x))
        y = F.relu(self.gn1(self.conv1(x)), inplace=True)
        y = F.relu(self.gn2(self.conv2(y)), inplace=True)
        y = self.gn3(self.conv3(y))
        return F.relu(residual + y, inplace=True)


class PatchStem(nn.Module):
    """``patch x patch x 3`` pixels -> ``hidden``-d embedding (32x32x3 -> 384 officially)."""

    def __init__(self, arch: Architecture = OFFICIAL) -> None:
        super().__init__()
        self.patch = arch.patch
        w, out = arch.stem_width, arch.stem_out
        self.conv_root = StdConv(3, w, 7, stride=2)
        self.gn_root = nn.GroupNorm(32, w, eps=1e-6)
        self.unit1 = Bottleneck(w, w, out)
        self.embedding = nn.Linear(arch.patch_features, arch.hidden)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """``patches``: ``(N, patch * patch * 3)`` in (row, column, RGB) order -> ``(N, hidden)``."""
        x = patches.reshape(-1, self.patch, self.patch, 3).permute(0, 3, 1, 2)
        x = F.relu(self.gn_root(self.conv_root(x)), inplace=True)
        # 3x3/2 max-pool, TF SAME: 16 -> 8, padding (-inf) after. ceil_mode's last window
        # hangs over the end by one and ignores it: the same maxima without a padded copy.
        x = F.max_pool2d(x, 3, stride=2, ceil_mode=True)
        x = self.unit1(x)
        # Flatten in (h, w, c) order, as the original's NHWC reshape.
        return self.embedding(x.permute(0, 2, 3, 1).reshape(x.shape[0], -1))


class Attention(nn.Module):
    """Multi-head self-attention with a fused q/k/v projection."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.hidden, self.heads = hidden, heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None,
                queries: int | None = None) -> torch.Tensor:
        """``(B, S, hidden)`` -> ``(B, S, hidden)``; with ``queries``, only the first
        ``queries`` rows attend (``(B, queries, hidden)``), over every key."""
        b, n, _ = x.shape
        hd = self.hidden // self.heads
        if queries is None:
            q, k, v = self.qkv(x).view(b, n, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        else:  # the q rows of the fused projection for those rows only; k and v for all
            h, w, bias = self.hidden, self.qkv.weight, self.qkv.bias
            # contiguous: a strided slice takes another product kernel for 2+ images
            q = F.linear(x[:, :queries].contiguous(), w[:h], bias[:h]
                         ).view(b, queries, self.heads, hd).transpose(1, 2)
            k, v = F.linear(x, w[h:], bias[h:]).view(b, n, 2, self.heads, hd
                                                      ).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(b, q.shape[2], self.hidden))


#: Rows :meth:`EncoderBlock.forward_cls` computes: the CLS row and the next three (see there).
CLS_ROWS = 4


class EncoderBlock(nn.Module):
    """Pre-norm Transformer block: attention, then a tanh-GELU MLP, each with a residual."""

    def __init__(self, hidden: int, mlp_dim: int, heads: int) -> None:
        super().__init__()
        self.ln0 = nn.LayerNorm(hidden, eps=LAYER_NORM_EPS)
        self.attention = Attention(hidden, heads)
        self.ln2 = nn.LayerNorm(hidden, eps=LAYER_NORM_EPS)
        self.mlp0 = nn.Linear(hidden, mlp_dim)
        self.mlp1 = nn.Linear(mlp_dim, hidden)

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp1(F.gelu(self.mlp0(x), approximate="tanh"))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attention(self.ln0(x), mask)
        return x + self.mlp(self.ln2(x))

    def forward_cls(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The block's output at the CLS token only, ``(B, 1, hidden)``: row 0 of
        :meth:`forward` by the same arithmetic, without the other rows' queries, attention
        and MLP (the last block: nothing reads them; ~4 % of the network's work).

        The first ``CLS_ROWS`` rows are computed, not one: matrix products of fewer than 4
        rows take another kernel, whose rounding would make an image's score depend on how
        many images share its pass (the full block's products are never that small)."""
        rows = min(CLS_ROWS, x.shape[1])
        head = x[:, :rows] + self.attention(self.ln0(x), mask, queries=rows)
        return (head + self.mlp(self.ln2(head)))[:, :1]


class Musiq(nn.Module):
    """MUSIQ: packed valid tokens of B images -> ``(B, num_classes)`` logits.

    ``variant``: the :class:`~musiq.network.architecture.Architecture` (head size, scales and every
    other size); ``stem_chunk``: patches per stem call, which bounds the stem's memory.
    """

    def __init__(self, variant: Architecture = OFFICIAL, stem_chunk: int = 256) -> None:
        super().__init__()
        a = self.variant = variant
        self.stem = PatchStem(a)
        self.pos_embedding = nn.Parameter(torch.zeros(a.pos_grid ** 2, a.hidden))
        self.scale_embedding = nn.Parameter(torch.zeros(a.num_scales, a.hidden))
        self.cls = nn.Parameter(torch.zeros(a.hidden))
        self.blocks = nn.ModuleList(EncoderBlock(a.hidden, a.mlp_dim, a.heads)
                                    for _ in range(a.layers))
        self.encoder_norm = nn.LayerNorm(a.hidden, eps=LAYER_NORM_EPS)
        self.head = nn.Linear(a.hidden, a.num_classes)
        self.stem_chunk = stem_chunk
        #: The last block computes the CLS row only (what the head reads; the same numbers,
        #: ~4 % less work). False computes every row, for layer-by-layer comparisons.
        self.last_block_cls_only = True
        for p in (self.pos_embedding, self.scale_embedding, self.cls):
            nn.init.normal_(p, std=0.02)  # a random start; checkpoints overwrite it

    def embed(self, batch: PackedBatch) -> torch.Tensor:
        """``(N, hidden)`` token embeddings with position and scale added."""
        parts = [self.stem(batch.patches[i:i + self.stem_chunk])
                 for i in range(0, batch.patches.shape[0], self.stem_chunk)]
        x = torch.cat(parts) if len(parts) != 1 else parts[0]
        return x + self.pos_embedding[batch.positions] + self.scale_embedding[batch.scale_ids]

    def encode(self, tokens: torch.Tensor, lengths: list[int],
               on_block: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
        """Packed embeddings -> ``(B, hidden)`` normalised CLS outputs. ``on_block(i, x)``
        is called with each encoder block's input ``(B, S, hidden)`` (for attention maps);
        it must not change ``x``."""
        b, longest = len(lengths), max(lengths)
        x = tokens.new_zeros(b, longest + 1, tokens.shape[-1])
        x[:, 0] = self.cls
        lengths_t = torch.tensor(lengths, device=tokens.device)
        slot = torch.arange(longest + 1, device=tokens.device)
        valid = (slot[None, :] >= 1) & (slot[None, :] <= lengths_t[:, None])
        x[valid] = tokens
        mask = None
        if any(n != longest for n in lengths):
            keep = (slot[None, :] <= lengths_t[:, None])
            mask = keep[:, None, None, :]  # (B, 1, 1, S): padding keys excluded
        return self.encoder_norm(self._blocks(x, mask, on_block))

    def forward(self, batch: PackedBatch) -> torch.Tensor:
        return self.head(self.encode(self.embed(batch), batch.lengths))

    def forward_padded(self, tokens: torch.Tensor) -> torch.Tensor:
        """The original's token layout: ``(B, T, 3075)`` float32 -> ``(B, num_classes)`` logits.

        Each row is 3072 patch values (row, column, RGB; in [-1, 1]), the hashed position
        (0-99), the scale id and the mask (1 valid, 0 padding). Padding rows change nothing,
        whatever they hold: their embeddings are zeroed and attention excludes them. Equal to
        :meth:`forward` on the valid tokens within float32 rounding; traceable (no Python
        branch on values, dynamic ``B`` and ``T``), so it exports to ONNX.
        """
        b, t = tokens.shape[0], tokens.shape[1]
        features = tokens.shape[2] - 3
        valid = tokens[..., features + 2] > 0.5
        zero = torch.zeros((), dtype=torch.long, device=tokens.device)
        positions = torch.where(valid, tokens[..., features].long(), zero)
        scale_ids = torch.where(valid, tokens[..., features + 1].long(), zero)
        patches = tokens[..., :features].reshape(b * t, features)
        hidden = self.variant.hidden
        x = self.stem(patches).reshape(b, t, hidden)
        x = x + self.pos_embedding[positions] + self.scale_embedding[scale_ids]
        # A NaN in a padding row would reach the output through 0 * NaN in attention.
        x = torch.where(valid[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))
        x = torch.cat([self.cls.to(x.dtype).expand(b, 1, hidden), x], dim=1)
        keep = torch.cat([torch.ones_like(valid[:, :1]), valid], dim=1)
        mask = keep[:, None, None, :]  # (B, 1, 1, 1 + T): padding keys excluded
        return self.head(self.encoder_norm(self._blocks(x, mask)))

    def _blocks(self, x: torch.Tensor, mask: torch.Tensor | None,
                on_block: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
        """The encoder blocks over ``(B, S, hidden)`` -> ``(B, hidden)`` CLS states; the last
        block computes the CLS row only (what the head reads)."""
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            if on_block is not None:
                on_block(i, x)
            if i == last and self.last_block_cls_only:
                return block.forward_cls(x, mask)[:, 0]
            x = block(x, mask)
        return x[:, 0]

    @torch.no_grad()
    def load_official(self, params: dict[str, np.ndarray]) -> "Musiq":
        """Copy official parameters (keys without ``opt/target/``) into this module."""
        own = dict(self.named_parameters())
        for p in official_parameters(self.variant):
            dest = _rows(own[p.attr], p)
            dest.copy_(_to_torch(p, params[p.key], dest.shape))
        return self

    @torch.no_grad()
    def official_params(self) -> dict[str, np.ndarray]:
        """The inverse of :meth:`load_official`: parameters under their official names."""
        own = dict(self.named_parameters())
        return {p.key: _to_official(p, _rows(own[p.attr], p)) for p in
                official_parameters(self.variant)}


def _rows(t: torch.Tensor, p: OfficialParam) -> torch.Tensor:
    return t if p.rows is None else t[p.rows[0]:p.rows[1]]


def _to_torch(p: OfficialParam, array: np.ndarray, shape: torch.Size) -> torch.Tensor:
    """An official array in the layout of the PyTorch parameter (of ``shape``) it fills."""
    a = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if p.layout == "conv":  # HWIO -> OIHW
        return a.permute(3, 2, 0, 1)
    if p.layout == "kernel":  # (in..., out...) -> (out, in)
        return a.reshape(shape[1], shape[0]).T
    return a.reshape(shape)


def _to_official(p: OfficialParam, t: torch.Tensor) -> np.ndarray:
    t = t.detach().float().cpu()
    if p.layout == "conv":
        t = t.permute(2, 3, 1, 0)
    elif p.layout == "kernel":
        t = t.T
    return t.reshape(p.shape).numpy().copy()
