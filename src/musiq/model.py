"""The MUSIQ network in PyTorch, with the official parameter names mapped in.

Architecture (``../shared/SPEC.md`` section 3): a per-patch ResNet stem (standardised 7x7
conv, GroupNorm, max-pool, one bottleneck unit) embeds each 32x32 patch to 384 values; hashed
spatial and scale embeddings are added; a CLS token goes first; 14 pre-norm Transformer blocks;
the CLS output goes through the head.

Images of different lengths are batched by packing: the stem runs on the valid patches only,
sequences are padded per batch, and attention uses a key-padding mask through
``scaled_dot_product_attention`` (memory linear in sequence length).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import HEADS, HIDDEN, LAYERS, MLP_DIM, POS_GRID, STEM, STEM_OUT, Variant
from .preprocess import Tokens

PATCH = 32


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
        if self._cached is None or self._cached[0] != key:
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
    """32x32x3 patch -> 384-d embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_root = StdConv(3, STEM, 7, stride=2)
        self.gn_root = nn.GroupNorm(32, STEM, eps=1e-6)
        self.unit1 = Bottleneck(STEM, STEM, STEM_OUT)
        self.embedding = nn.Linear(8 * 8 * STEM_OUT, HIDDEN)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """``patches``: ``(N, 3072)`` in (row, column, RGB) order -> ``(N, 384)``."""
        x = patches.reshape(-1, PATCH, PATCH, 3).permute(0, 3, 1, 2)
        x = F.relu(self.gn_root(self.conv_root(x)), inplace=True)
        # 3x3/2 max-pool, TF SAME: 16 -> 8, padding (-inf) after. ceil_mode's last window
        # hangs over the end by one and ignores it: the same maxima without a padded copy.
        x = F.max_pool2d(x, 3, stride=2, ceil_mode=True)
        x = self.unit1(x)
        # Flatten in (h, w, c) order, as the original's NHWC reshape.
        return self.embedding(x.permute(0, 2, 3, 1).reshape(x.shape[0], -1))


class Attention(nn.Module):
    """Multi-head self-attention with a fused q/k/v projection."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(HIDDEN, 3 * HIDDEN)
        self.out = nn.Linear(HIDDEN, HIDDEN)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, HEADS, HIDDEN // HEADS).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(b, n, HIDDEN))


class EncoderBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln0 = nn.LayerNorm(HIDDEN, eps=1e-6)
        self.attention = Attention()
        self.ln2 = nn.LayerNorm(HIDDEN, eps=1e-6)
        self.mlp0 = nn.Linear(HIDDEN, MLP_DIM)
        self.mlp1 = nn.Linear(MLP_DIM, HIDDEN)

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp1(F.gelu(self.mlp0(x), approximate="tanh"))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attention(self.ln0(x), mask)
        return x + self.mlp(self.ln2(x))


@dataclass
class PackedBatch:
    """Valid tokens of several images, concatenated.

    ``patches`` ``(N, 3072)`` float, ``positions`` and ``scale_ids`` ``(N,)`` int64,
    ``lengths``: tokens per image (sum N).
    """

    patches: torch.Tensor
    positions: torch.Tensor
    scale_ids: torch.Tensor
    lengths: list[int]

    @classmethod
    def from_tokens(cls, tokens: Sequence[Tokens]) -> "PackedBatch":
        """Concatenate the valid tokens of several images (no copy for a single image)."""
        def cat(arrays: list[np.ndarray]) -> torch.Tensor:
            return torch.from_numpy(arrays[0] if len(arrays) == 1 else np.concatenate(arrays))

        return cls(cat([t.patches for t in tokens]), cat([t.positions for t in tokens]),
                   cat([t.scale_ids for t in tokens]), [len(t) for t in tokens])

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "PackedBatch":
        return PackedBatch(self.patches.to(device, dtype), self.positions.to(device),
                           self.scale_ids.to(device), self.lengths)


class Musiq(nn.Module):
    """MUSIQ: packed valid tokens of B images -> ``(B, num_classes)`` logits."""

    def __init__(self, variant: Variant, stem_chunk: int = 256) -> None:
        super().__init__()
        self.variant = variant
        self.stem = PatchStem()
        self.pos_embedding = nn.Parameter(torch.zeros(POS_GRID * POS_GRID, HIDDEN))
        self.scale_embedding = nn.Parameter(torch.zeros(variant.num_scales, HIDDEN))
        self.cls = nn.Parameter(torch.zeros(HIDDEN))
        self.blocks = nn.ModuleList(EncoderBlock() for _ in range(LAYERS))
        self.encoder_norm = nn.LayerNorm(HIDDEN, eps=1e-6)
        self.head = nn.Linear(HIDDEN, variant.num_classes)
        self.stem_chunk = stem_chunk  # patches per stem call: bounds stem memory

    def embed(self, batch: PackedBatch) -> torch.Tensor:
        """``(N, 384)`` token embeddings with position and scale added."""
        parts = [self.stem(batch.patches[i:i + self.stem_chunk])
                 for i in range(0, batch.patches.shape[0], self.stem_chunk)]
        x = torch.cat(parts) if len(parts) != 1 else parts[0]
        return x + self.pos_embedding[batch.positions] + self.scale_embedding[batch.scale_ids]

    def encode(self, tokens: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        """Packed embeddings -> ``(B, 384)`` normalised CLS outputs."""
        b, longest = len(lengths), max(lengths)
        x = tokens.new_zeros(b, longest + 1, HIDDEN)
        x[:, 0] = self.cls
        lengths_t = torch.tensor(lengths, device=tokens.device)
        slot = torch.arange(longest + 1, device=tokens.device)
        valid = (slot[None, :] >= 1) & (slot[None, :] <= lengths_t[:, None])
        x[valid] = tokens
        mask = None
        if any(n != longest for n in lengths):
            keep = (slot[None, :] <= lengths_t[:, None])
            mask = keep[:, None, None, :]  # (B, 1, 1, S): padding keys excluded
        for block in self.blocks:
            x = block(x, mask)
        return self.encoder_norm(x[:, 0])

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
        x = self.stem(patches).reshape(b, t, HIDDEN)
        x = x + self.pos_embedding[positions] + self.scale_embedding[scale_ids]
        # A NaN in a padding row would reach the output through 0 * NaN in attention.
        x = torch.where(valid[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))
        x = torch.cat([self.cls.to(x.dtype).expand(b, 1, HIDDEN), x], dim=1)
        keep = torch.cat([torch.ones_like(valid[:, :1]), valid], dim=1)
        mask = keep[:, None, None, :]  # (B, 1, 1, 1 + T): padding keys excluded
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.encoder_norm(x[:, 0]))

    @torch.no_grad()
    def load_official(self, params: dict[str, np.ndarray]) -> "Musiq":
        """Copy official parameters (keys without ``opt/target/``) into this module."""
        def t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

        def conv(key: str) -> torch.Tensor:  # HWIO -> OIHW
            return t(params[key]).permute(3, 2, 0, 1)

        def gn(module: nn.GroupNorm, key: str) -> None:
            module.weight.copy_(t(params[key + "/scale"]).reshape(-1))
            module.bias.copy_(t(params[key + "/bias"]).reshape(-1))

        def dense(module: nn.Linear, key: str) -> None:
            module.weight.copy_(t(params[key + "/kernel"]).reshape(-1, module.out_features).T)
            module.bias.copy_(t(params[key + "/bias"]).reshape(-1))

        def ln(module: nn.LayerNorm, key: str) -> None:
            module.weight.copy_(t(params[key + "/scale"]))
            module.bias.copy_(t(params[key + "/bias"]))

        s = self.stem
        s.conv_root.weight.copy_(conv("conv_root/kernel"))
        gn(s.gn_root, "gn_root")
        for name in ("conv_proj", "conv1", "conv2", "conv3"):
            getattr(s.unit1, name).weight.copy_(conv(f"block1/unit1/{name}/kernel"))
        for name in ("gn_proj", "gn1", "gn2", "gn3"):
            gn(getattr(s.unit1, name), f"block1/unit1/{name}")
        dense(s.embedding, "embedding")
        tr = "Transformer/"
        self.pos_embedding.copy_(t(params[tr + "posembed_input/pos_embedding"])[0])
        self.scale_embedding.copy_(t(params[tr + "scaleembed_input/scale_embedding"])[0])
        self.cls.copy_(t(params[tr + "cls"]).reshape(-1))
        for i, block in enumerate(self.blocks):
            p = f"{tr}encoderblock_{i}/"
            a = p + "MultiHeadDotProductAttention_1/"
            ln(block.ln0, p + "LayerNorm_0")
            ln(block.ln2, p + "LayerNorm_2")
            block.attention.qkv.weight.copy_(torch.cat(
                [t(params[a + f"{n}/kernel"]).reshape(HIDDEN, HIDDEN).T
                 for n in ("query", "key", "value")]))
            block.attention.qkv.bias.copy_(torch.cat(
                [t(params[a + f"{n}/bias"]).reshape(-1) for n in ("query", "key", "value")]))
            block.attention.out.weight.copy_(t(params[a + "out/kernel"]).reshape(HIDDEN, HIDDEN).T)
            block.attention.out.bias.copy_(t(params[a + "out/bias"]))
            dense(block.mlp0, p + "MlpBlock_3/Dense_0")
            dense(block.mlp1, p + "MlpBlock_3/Dense_1")
        ln(self.encoder_norm, tr + "encoder_norm")
        dense(self.head, "head")
        return self

    @torch.no_grad()
    def official_params(self) -> dict[str, np.ndarray]:
        """The inverse of :meth:`load_official`: parameters under their official names."""
        def n(x: torch.Tensor) -> np.ndarray:
            return x.detach().float().cpu().numpy().copy()

        out: dict[str, np.ndarray] = {}

        def conv(key: str, m: StdConv) -> None:
            out[key + "/kernel"] = n(m.weight.permute(2, 3, 1, 0))

        def gn(key: str, m: nn.GroupNorm) -> None:
            out[key + "/scale"] = n(m.weight).reshape(1, 1, 1, -1)
            out[key + "/bias"] = n(m.bias).reshape(1, 1, 1, -1)

        def dense(key: str, m: nn.Linear) -> None:
            out[key + "/kernel"], out[key + "/bias"] = n(m.weight.T), n(m.bias)

        def ln(key: str, m: nn.LayerNorm) -> None:
            out[key + "/scale"], out[key + "/bias"] = n(m.weight), n(m.bias)

        s = self.stem
        conv("conv_root", s.conv_root)
        gn("gn_root", s.gn_root)
        for name in ("conv_proj", "conv1", "conv2", "conv3"):
            conv(f"block1/unit1/{name}", getattr(s.unit1, name))
        for name in ("gn_proj", "gn1", "gn2", "gn3"):
            gn(f"block1/unit1/{name}", getattr(s.unit1, name))
        dense("embedding", s.embedding)
        tr = "Transformer/"
        out[tr + "posembed_input/pos_embedding"] = n(self.pos_embedding)[None]
        out[tr + "scaleembed_input/scale_embedding"] = n(self.scale_embedding)[None]
        out[tr + "cls"] = n(self.cls).reshape(1, 1, -1)
        hd = HIDDEN // HEADS
        for i, block in enumerate(self.blocks):
            p = f"{tr}encoderblock_{i}/"
            a = p + "MultiHeadDotProductAttention_1/"
            ln(p + "LayerNorm_0", block.ln0)
            ln(p + "LayerNorm_2", block.ln2)
            w = n(block.attention.qkv.weight).reshape(3, HIDDEN, HIDDEN)
            bias = n(block.attention.qkv.bias).reshape(3, HEADS, hd)
            for j, name in enumerate(("query", "key", "value")):
                out[a + name + "/kernel"] = w[j].T.reshape(HIDDEN, HEADS, hd).copy()
                out[a + name + "/bias"] = bias[j].copy()
            out[a + "out/kernel"] = n(block.attention.out.weight.T).reshape(HEADS, hd, HIDDEN)
            out[a + "out/bias"] = n(block.attention.out.bias)
            for j, m in enumerate((block.mlp0, block.mlp1)):
                dense(p + f"MlpBlock_3/Dense_{j}", m)
        ln(tr + "encoder_norm", self.encoder_norm)
        dense("head", self.head)
        return out
