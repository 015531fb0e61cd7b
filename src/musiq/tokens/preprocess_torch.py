"""The original's preprocessing in torch: uint8 pixels in, exact tokens out, on CPU or CUDA.

The same rules as :mod:`musiq.tokens.preprocess` (the NumPy backend), which stays their one source of
truth: target sizes (:func:`~musiq.tokens.preprocess.target_size`), the resize spans and weights
(:func:`~musiq.tokens.preprocess.resize_spans`) and the hashed positions
(:func:`~musiq.tokens.preprocess.hashed_index`) are computed there, on the host, from the image sizes
only. This module does the pixel work on the device, in the same float32 order:

* normalisation through a 256-entry table made by :func:`~musiq.tokens.preprocess.normalise` (a
  device division by 255 may be turned into a multiplication by 1/255, which rounds
  differently);
* the Gaussian resize as a loop over the span taps, each a gather, a float32 multiply and a
  float32 add (no fused multiply-add), rows first then columns, exactly as the NumPy backend
  accumulates;
* SAME padding with 0.0 (odd pixel after) and 32x32 patches in (row, column, RGB) order.

Several images of mixed sizes are tokenised together: per scale they are padded to a common
size and resized with per-image spans in one gather per tap; padded taps carry weight 0 and
add exactly 0.0.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..errors import ImageError
from .packed import PackedBatch
from .preprocess import (MULTI_SCALE, PreprocessConfig, ScaleInfo, Tokens, hashed_index,
                         normalise, plan_scales, resize_spans, token_count)

__all__ = ["TorchTokens", "plan_scales", "num_tokens", "tokenize", "tokenize_one",
           "normalise_table", "resize_batch",
           "tokenize_normalised"]

_TABLES: dict[torch.device, torch.Tensor] = {}


def normalise_table(device: torch.device | str = "cpu") -> torch.Tensor:
    """``(256,)`` float32: the normalised value of each uint8 level, in [-1, 1]."""
    dev = torch.device(device)
    t = _TABLES.get(dev)
    if t is None:
        t = torch.from_numpy(normalise(np.arange(256, dtype=np.uint8)[None, None, :])[0, 0])
        t = _TABLES[dev] = t.to(dev)
    return t


#: Valid tokens an image of this size yields: the same rules as the NumPy backend.
num_tokens = token_count


#: The packed tokens the torch backend makes (the one packed type, :mod:`musiq.tokens.packed`).
TorchTokens = PackedBatch


def _axis_plan(sizes_in: Sequence[int], sizes_out: Sequence[int], device: torch.device
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image tap indices and weights for one axis, padded: ``(B, out_max, span_max)``.

    Padded outputs and taps point at index 0 with weight 0.
    """
    plans = [resize_spans(i, o) for i, o in zip(sizes_in, sizes_out)]
    b = len(plans)
    out_max = max(sizes_out)
    span = max(w.shape[1] for _, w in plans)
    idx = np.zeros((b, out_max, span), np.int64)
    wts = np.zeros((b, out_max, span), np.float32)
    for j, ((starts, w), n_in) in enumerate(zip(plans, sizes_in)):
        k = np.arange(w.shape[1])
        idx[j, :len(starts), :w.shape[1]] = np.minimum(starts[:, None] + k[None, :], n_in - 1)
        wts[j, :len(starts), :w.shape[1]] = w
    return (torch.from_numpy(idx).to(device, non_blocking=True),
            torch.from_numpy(wts).to(device, non_blocking=True))


def _resize_axis1(x: torch.Tensor, idx: torch.Tensor, wts: torch.Tensor) -> torch.Tensor:
    """Resize axis 1 of ``x`` ``(B, H, W, C)`` with taps ``idx``/``wts`` ``(B, R, S)``:
    sequential float32 accumulation over the taps (as TF and the NumPy backend)."""
    b, r, span = idx.shape
    _, h, w, c = x.shape
    flat = x.contiguous().reshape(b, h, w * c)  # rows of W*C values: gathers copy whole rows
    batch = torch.arange(b, device=x.device)[:, None]
    out = None
    for k in range(span):
        if b == 1:  # one image: index_select is several times faster than a gather on CPU
            term = flat[0].index_select(0, idx[0, :, k])[None] * wts[:, :, k, None]
        else:
            term = flat[batch, idx[:, :, k]] * wts[:, :, k, None]
        out = term if out is None else out + term
    return out.reshape(b, r, w, c)  # type: ignore[union-attr]


def resize_batch(x: torch.Tensor, in_sizes: Sequence[tuple[int, int]],
                 out_sizes: Sequence[tuple[int, int]]) -> torch.Tensor:
    """TF's Gaussian resize (no antialias) of ``B`` padded float32 images ``(B, H, W, C)``:
    image ``j`` occupies ``[:h_j, :w_j]`` and becomes ``[:oh_j, :ow_j]`` of the result."""
    ridx, rw = _axis_plan([s[0] for s in in_sizes], [s[0] for s in out_sizes], x.device)
    rows = _resize_axis1(x, ridx, rw)
    cidx, cw = _axis_plan([s[1] for s in in_sizes], [s[1] for s in out_sizes], x.device)
    return _resize_axis1(rows.transpose(1, 2), cidx, cw).transpose(1, 2)


def _patches(img: torch.Tensor, patch: int) -> torch.Tensor:
    """``(h, w, C)`` -> ``(gh * gw, patch * patch * C)``, TF SAME padding with 0.0."""
    h, w, c = img.shape
    gh, gw = -(-h // patch), -(-w // patch)
    top, left = (gh * patch - h) // 2, (gw * patch - w) // 2
    padded = torch.nn.functional.pad(
        img, (0, 0, left, gw * patch - w - left, top, gh * patch - h - top))
    p = padded.reshape(gh, patch, gw, patch, c).permute(0, 2, 1, 3, 4)
    return p.reshape(gh * gw, patch * patch * c)


def _check(rgb: torch.Tensor, source: str) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != torch.uint8:
        raise ImageError(source, f"expected an HxWx3 uint8 image, got {rgb.dtype} "
                                 f"{tuple(rgb.shape)}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageError(source, f"image has no pixels ({rgb.shape[1]}x{rgb.shape[0]})")


def _as_tensor(rgb: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    if isinstance(rgb, np.ndarray):
        if not rgb.flags.writeable or not rgb.flags.c_contiguous:
            rgb = np.array(rgb)  # torch wants a writable, contiguous buffer
        rgb = torch.from_numpy(rgb)
    t = rgb
    return t.to(device, non_blocking=True)


def tokenize(images: Sequence[np.ndarray | torch.Tensor],
             config: PreprocessConfig = MULTI_SCALE, *,
             device: torch.device | str | None = None,
             sources: Sequence[str] | None = None) -> TorchTokens:
    """Tokens of several ``(H, W, 3)`` uint8 images (NumPy arrays or tensors), packed.

    ``device``: where the work runs (default: the first tensor's device, else CPU). Equal to
    :func:`musiq.tokens.preprocess.preprocess` of each image (within 1e-6; bit-equal in practice).
    Raises :class:`~musiq.errors.ImageError` for an array that is not an image.
    """
    if not images:
        raise ValueError("no images to tokenize")
    if device is None:
        device = images[0].device if isinstance(images[0], torch.Tensor) else "cpu"
    dev = torch.device(device)
    names = list(sources) if sources is not None else ["<array>"] * len(images)
    pix = [_as_tensor(im, dev) for im in images]
    for t, name in zip(pix, names):
        _check(t, name)
    table = normalise_table(dev)
    return tokenize_normalised([table[t.long()] for t in pix], config)


def tokenize_normalised(images: Sequence[torch.Tensor], config: PreprocessConfig = MULTI_SCALE
                        ) -> TorchTokens:
    """Tokens of several normalised float ``(H, W, 3)`` images (values in [-1, 1]), packed, on
    their device. Every step is differentiable with respect to the pixels (gathers, products,
    sums, padding); this is what :meth:`musiq.scorer.Scorer.score_tensor` runs."""
    normed = list(images)
    dev = normed[0].device
    sizes = [(int(t.shape[0]), int(t.shape[1])) for t in normed]
    plans = [plan_scales(h, w, config) for h, w in sizes]
    num_scales = config.num_scales
    per_scale: list[list[torch.Tensor]] = []
    for sid in range(num_scales - 1):  # resized scales, all images at once
        outs = [(p[sid].height, p[sid].width) for p in plans]
        hmax, wmax = max(h for h, _ in sizes), max(w for _, w in sizes)
        if len(normed) == 1:
            stacked = normed[0][None]
        else:
            stacked = torch.stack([torch.nn.functional.pad(
                t, (0, 0, 0, wmax - t.shape[1], 0, hmax - t.shape[0])) for t in normed])
        resized = resize_batch(stacked, sizes, outs)
        per_scale.append([resized[j, :oh, :ow] for j, (oh, ow) in enumerate(outs)])
    per_scale.append(normed)
    patches, lengths = [], []
    for j in range(len(normed)):
        n = 0
        for sid in range(num_scales):
            p = _patches(per_scale[sid][j], config.patch_size)
            if sid == num_scales - 1:
                p = p[:plans[j][sid].slots]
            patches.append(p)
            n += p.shape[0]
        lengths.append(n)
    positions, scale_ids = _positions(plans, config)
    return TorchTokens(torch.cat(patches), positions.to(dev, non_blocking=True),
                       scale_ids.to(dev, non_blocking=True), lengths, plans)


def _positions(plans: list[list[ScaleInfo]], config: PreprocessConfig
               ) -> tuple[torch.Tensor, torch.Tensor]:
    g = config.hse_grid_size
    pos, sids = [], []
    for infos in plans:
        for s in infos:
            p = (hashed_index(s.grid_h, g)[:, None] * g + hashed_index(s.grid_w, g)[None, :]
                 ).reshape(-1)
            if s is infos[-1]:
                p = p[:s.slots]
            pos.append(p)
            sids.append(np.full(len(p), s.scale_id, np.int64))
    return torch.from_numpy(np.concatenate(pos)), torch.from_numpy(np.concatenate(sids))


def tokenize_one(rgb: np.ndarray | torch.Tensor, config: PreprocessConfig = MULTI_SCALE,
                 source: str = "<array>", device: torch.device | str | None = None) -> Tokens:
    """NumPy :class:`~musiq.tokens.preprocess.Tokens` of one image, made by the torch backend."""
    if isinstance(rgb, np.ndarray) and (rgb.ndim != 3 or rgb.shape[-1] != 3
                                        or rgb.dtype != np.uint8):
        raise ImageError(source, f"expected an HxWx3 uint8 image, got {rgb.dtype} {rgb.shape}")
    return tokenize([rgb], config, device=device, sources=[source]).image(0)
