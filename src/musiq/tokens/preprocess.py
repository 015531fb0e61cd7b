"""The original MUSIQ preprocessing: multi-scale Gaussian resize, 32x32 patches, hashed positions.

Every step reproduces TensorFlow's float32 arithmetic (docs/spec.md section 2), so
tokens equal the original's to the last bit or within float32 rounding:

* pixels are normalised to [-1, 1] *before* resizing;
* target sizes are computed in float32 with round-half-even;
* the resize is TF's ScaleAndTranslate with a Gaussian kernel (radius 1.5, sigma 0.5) that is
  *not* widened when downscaling, rows first then columns, accumulated sequentially;
* patches use TF "SAME" padding (the odd pixel goes after) with value 0.0;
* hashed positions are computed in float32.

Only valid tokens are returned; padding tokens provably never change the model's output.
:meth:`Tokens.to_original_layout` rebuilds the original's padded ``(T, 3075)`` array.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ImageError

PATCH = 32
GRID = 10
RADIUS = np.float32(1.5)
HALF = np.float32(0.5)


@dataclass(frozen=True)
class PreprocessConfig:
    """What the original's ``pp_config`` fixes.

    ``longer_side_lengths``: the resized scales (ascending); empty for MUSIQ-single, which
    uses the native resolution only. ``max_seq_len_from_original_res``: -1 keeps every
    native token (the original's evaluation setting); a positive value caps the native
    scale's tokens (used for training memory).
    """

    longer_side_lengths: tuple[int, ...] = (224, 384)
    patch_size: int = PATCH
    hse_grid_size: int = GRID
    max_seq_len_from_original_res: int = -1

    @property
    def num_scales(self) -> int:
        return len(self.longer_side_lengths) + 1


MULTI_SCALE = PreprocessConfig()
SINGLE_SCALE = PreprocessConfig(longer_side_lengths=())


@dataclass(frozen=True)
class ScaleInfo:
    """One scale of one image: resized size, patch grid, and padded slot count."""

    scale_id: int
    height: int
    width: int
    grid_h: int
    grid_w: int
    slots: int  # tokens the original reserves for this scale (valid + padding)

    @property
    def num_valid(self) -> int:
        return self.grid_h * self.grid_w


@dataclass
class Tokens:
    """Valid tokens of one image.

    ``patches``: float32 ``(N, 3072)`` pixel values in [-1, 1] (patch rows, columns, RGB);
    ``positions``: int64 ``(N,)`` hashed spatial position in [0, 100);
    ``scale_ids``: int64 ``(N,)``; ``scales``: per-scale sizes in order.
    """

    patches: np.ndarray
    positions: np.ndarray
    scale_ids: np.ndarray
    scales: list[ScaleInfo] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.patches.shape[0])

    def to_original_layout(self) -> np.ndarray:
        """The original's padded token array: ``(T, 3075)`` = pixels, position, scale, mask."""
        rows = []
        start = 0
        for s in self.scales:
            n = s.num_valid
            block = np.zeros((s.slots, self.patches.shape[1] + 3), np.float32)
            block[:n, :-3] = self.patches[start:start + n]
            block[:n, -3] = self.positions[start:start + n]
            block[:n, -2] = self.scale_ids[start:start + n]
            block[:n, -1] = 1.0
            rows.append(block)
            start += n
        return np.concatenate(rows, axis=0)


def target_size(height: int, width: int, longer_side: int) -> tuple[int, int]:
    """Resized (h, w) for a longer side, in TF's float32 with round-half-even.

    A side that rounds to 0 (where TF fails) becomes 1.
    """
    ratio = np.float32(longer_side) / np.float32(max(height, width))
    rh = int(np.rint(np.float32(height) * ratio))
    rw = int(np.rint(np.float32(width) * ratio))
    return max(rh, 1), max(rw, 1)


def _kernel(x: np.ndarray) -> np.ndarray:
    """TF's Gaussian kernel: float32 argument, exp evaluated in double, result float32."""
    x = np.abs(x)
    val = np.exp((-(x * x)).astype(np.float64) / 0.5).astype(np.float32)
    return np.where(x >= RADIUS, np.float32(0.0), val)


def resize_spans(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """TF ScaleAndTranslate spans for one axis: ``starts (out,)`` and ``weights (out, span)``.

    Weights beyond the in-image part of a window are 0, as TF stores them.
    """
    span = min(2 * math.ceil(float(RADIUS)) + 1, in_size)
    scale = np.float32(out_size) / np.float32(in_size)
    inv_scale = np.float32(1.0 / np.float64(scale))
    sample = (np.arange(out_size, dtype=np.float32) + HALF) * inv_scale
    start = np.ceil(sample - RADIUS - HALF).astype(np.int64)
    end = np.floor(sample + RADIUS - HALF).astype(np.int64)
    start = np.clip(start, 0, in_size - 1)
    end = np.clip(end, 0, in_size - 1) + 1
    taps = start[:, None] + np.arange(span)[None, :]
    valid = taps < end[:, None]
    pos = (np.minimum(taps, in_size - 1).astype(np.float32) + HALF) - sample[:, None]
    w = np.where(valid, _kernel(pos), np.float32(0.0))
    total = np.zeros(out_size, np.float32)
    for k in range(span):  # sequential float32 sum, as TF
        total = total + w[:, k]
    inv_total = np.float32(1.0) / total
    return start, (w * inv_total[:, None]).astype(np.float32)


def _gather(x: np.ndarray, axis: int, starts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Apply one axis of the resize with TF's sequential float32 accumulation."""
    n_in = x.shape[axis]
    out_shape = list(x.shape)
    out_shape[axis] = len(starts)
    out = np.zeros(out_shape, np.float32)
    bshape = [1] * x.ndim
    bshape[axis] = -1
    for k in range(weights.shape[1]):
        idx = np.minimum(starts + k, n_in - 1)
        out += weights[:, k].reshape(bshape) * np.take(x, idx, axis=axis)
    return out


def gaussian_resize(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """``tf.image.resize(method='gaussian', antialias=False)`` on float32 ``(H, W, C)``."""
    h, w = image.shape[:2]
    rows = _gather(image, 0, *resize_spans(h, out_h))
    return _gather(rows, 1, *resize_spans(w, out_w))


def hashed_index(n: int, grid: int = GRID) -> np.ndarray:
    """Grid cell of each of ``n`` patches along one axis, in float32 as the original."""
    i = np.arange(n, dtype=np.float32)
    step = np.float32(grid) / np.float32(n)
    return np.minimum(np.floor(i * step), grid - 1).astype(np.int64)


def extract_patches(image: np.ndarray, patch: int = PATCH) -> tuple[np.ndarray, int, int]:
    """Non-overlapping patches with TF "SAME" padding (value 0.0, odd pixel after).

    Returns ``(gh * gw, patch * patch * C)`` in row-major grid order, and the grid size.
    """
    h, w, c = image.shape
    gh, gw = -(-h // patch), -(-w // patch)
    pad_h, pad_w = gh * patch - h, gw * patch - w
    top, left = pad_h // 2, pad_w // 2
    padded = np.zeros((gh * patch, gw * patch, c), np.float32)
    padded[top:top + h, left:left + w] = image
    p = padded.reshape(gh, patch, gw, patch, c).transpose(0, 2, 1, 3, 4)
    return p.reshape(gh * gw, patch * patch * c), gh, gw


def normalise(rgb: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [-1, 1], as ``x / 255 * 2 - 1`` in float32."""
    x = rgb.astype(np.float32) / np.float32(255.0)
    return x * np.float32(2.0) - np.float32(1.0)


def plan_scales(height: int, width: int, config: PreprocessConfig = MULTI_SCALE
                ) -> list[ScaleInfo]:
    """The scales of a ``height`` x ``width`` image, native last: resized sizes, patch grids
    and slots (a resized scale reserves ``ceil(L / patch)^2``; the native scale its tokens,
    capped by ``max_seq_len_from_original_res``), from the size alone."""
    sizes = [(L, *target_size(height, width, L)) for L in sorted(config.longer_side_lengths)]
    sizes.append((None, height, width))
    p = config.patch_size
    infos = []
    for sid, (L, rh, rw) in enumerate(sizes):
        gh, gw = -(-rh // p), -(-rw // p)
        if L is None:
            cap = config.max_seq_len_from_original_res
            slots = gh * gw if cap <= 0 else min(gh * gw, cap)
        else:
            slots = math.ceil(L / p) ** 2
        infos.append(ScaleInfo(sid, rh, rw, gh, gw, slots))
    return infos


def token_count(height: int, width: int, config: PreprocessConfig = MULTI_SCALE) -> int:
    """Valid tokens :func:`preprocess` makes of a ``height`` x ``width`` image (all scales),
    from its size alone: what a caller checks before decoding."""
    *resized, native = plan_scales(height, width, config)
    return sum(s.num_valid for s in resized) + native.slots


def preprocess(rgb: np.ndarray, config: PreprocessConfig = MULTI_SCALE,
               source: str = "<array>") -> Tokens:
    """Tokens of one ``(H, W, 3)`` uint8 image for the given configuration."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageError(source, f"expected an HxWx3 uint8 image, got {rgb.dtype} {rgb.shape}")
    h, w = rgb.shape[:2]
    if h == 0 or w == 0:
        raise ImageError(source, f"image has no pixels ({w}x{h})")
    x = normalise(rgb)
    infos = plan_scales(h, w, config)
    patches, positions, scale_ids = [], [], []
    for info in infos:
        native = info is infos[-1]
        # The native scale is not resized; a resized scale runs the filter even when its
        # target size equals the input size (as TF does).
        scaled = x if native else gaussian_resize(x, info.height, info.width)
        p, gh, gw = extract_patches(scaled, config.patch_size)
        pos = (hashed_index(gh, config.hse_grid_size)[:, None] * config.hse_grid_size
               + hashed_index(gw, config.hse_grid_size)[None, :]).reshape(-1)
        if native:  # the cap on native tokens (training) keeps the first ones
            p, pos = p[:info.slots], pos[:info.slots]
        patches.append(p)
        positions.append(pos)
        scale_ids.append(np.full(len(p), info.scale_id, np.int64))
    return Tokens(np.concatenate(patches), np.concatenate(positions),
                  np.concatenate(scale_ids), infos)
