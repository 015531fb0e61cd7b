"""What drives a score: occlusion of native-scale patches and attention rollout from CLS.

Both run on top of a :class:`musiq.Scorer` (its decoder, preprocessing, forward pass and
score interpretation); nothing here re-implements the model.

* **Occlusion**: the image is cut into cells of ``cell`` x ``cell`` native-resolution
  32-pixel patches (aligned with the native scale's patch grid, SAME padding included); each
  cell's pixels are replaced by the image's mean colour and the occluded *image* is scored
  again (all scales re-made from it, as if a user scored that file). The map holds
  ``score(original) - score(occluded)`` in the model's score units: positive where the region
  raises the score.
* **Attention rollout** (Abnar & Zuidema 2020): per block, the head-averaged attention
  probabilities (recomputed from q/k of each block's input, which the engine's torch forward
  hands over through ``on_block``; the model's own forward is unchanged) plus the identity
  for the residual, rows renormalised, multiplied through the 14 blocks; the map is the CLS row over the native-scale tokens (sums to at most 1).
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .decoding.decode import ImageInput, source_name
from .errors import MusiqError
from .tokens.packed import PackedBatch
from .tokens.preprocess import Tokens
from .scorer import Scorer

METHODS = ("occlusion", "rollout")
#: Default occlusion grid: at most this many cells along the longer side.
DEFAULT_CELLS = 16


@dataclass
class Explanation:
    """Maps of one image. Grids are row-major lists of rows; ``cell_px`` is a cell's side in
    native pixels; ``offset`` (top, left) is where the patch grid starts, in pixels (<= 0:
    the grid's SAME padding hangs over the image edge)."""

    source: str
    score: float
    width: int
    height: int
    cell_px: int
    offset: tuple[int, int]
    maps: dict[str, list[list[float]]] = field(default_factory=dict)
    rgb: np.ndarray | None = field(default=None, repr=False)  # for drawing; not serialised

    def to_dict(self, provenance: dict | None = None) -> dict:
        d: dict[str, Any] = {"path": self.source, "score": self.score,
                             "image_size": [self.width, self.height], "cell_px": self.cell_px,
                             "grid_offset_px": list(self.offset),
                             "grid_shape": self.shape(), **self.maps}
        if provenance is not None:
            d["provenance"] = provenance
        return d

    def shape(self) -> list[int]:
        first = next(iter(self.maps.values()), [])
        return [len(first), len(first[0]) if first else 0]


def _native_grid(h: int, w: int, patch: int) -> tuple[int, int, int, int]:
    gh, gw = -(-h // patch), -(-w // patch)
    return gh, gw, (gh * patch - h) // 2, (gw * patch - w) // 2


def _scores(scorer: Scorer, tokens: list[Tokens]) -> list[float]:
    """Scores of several tokenised images, in packed passes of at most the scorer's tokens."""
    out: list[float] = []
    per = max(1, scorer.max_batch_tokens // max(len(tokens[0]), 1))
    for i in range(0, len(tokens), per):
        for row in scorer.logits(tokens[i:i + per]):
            out.append(float(scorer.output.interpret(row)["score"]))
    return out


def occluded_image(rgb: np.ndarray, row: int, col: int, cell: int, patch: int = 32) -> np.ndarray:
    """A copy of ``rgb`` with native grid cell (row, col) of ``cell`` x ``cell`` patches set to
    the image's mean colour (uint8, rounded)."""
    h, w = rgb.shape[:2]
    _, _, top, left = _native_grid(h, w, patch)
    y0, x0 = max(row * cell * patch - top, 0), max(col * cell * patch - left, 0)
    y1, x1 = min((row + 1) * cell * patch - top, h), min((col + 1) * cell * patch - left, w)
    out = rgb.copy()
    out[y0:y1, x0:x1] = np.round(rgb.reshape(-1, 3).mean(axis=0)).astype(np.uint8)
    return out


def occlusion(scorer: Scorer, rgb: np.ndarray, cell: int, base: float, *,
              progress: bool = False) -> list[list[float]]:
    """``score(rgb) - score(occluded)`` per cell (see the module docstring); ``progress``:
    a bar over the passes on stderr."""
    cfg = scorer.preprocess_config
    gh, gw, _, _ = _native_grid(*rgb.shape[:2], cfg.patch_size)
    rows, cols = -(-gh // cell), -(-gw // cell)
    cells = [(r, c) for r in range(rows) for c in range(cols)]
    out = np.zeros((rows, cols))
    chunk = 16  # occluded images held at once (memory)
    bar = tqdm(total=len(cells), unit="pass", desc="occlusion", file=sys.stderr,
               disable=not progress)
    for i in range(0, len(cells), chunk):
        part = cells[i:i + chunk]
        toks = [scorer.preprocessor.tokens_of_pixels(occluded_image(rgb, r, c, cell,
                                                                  cfg.patch_size))
                for r, c in part]
        for (r, c), s in zip(part, _scores(scorer, toks)):
            out[r, c] = base - s
        bar.update(len(part))
    bar.close()
    return out.tolist()


#: Attention probabilities computed at once while rolling out (heads x rows x tokens): the
#: memory of one block, 2**22 float32 values (16 MiB), whatever the image's size.
ROLLOUT_BLOCK = 2 ** 22


def _attention_inputs(scorer: Scorer, tokens: Tokens) -> list[tuple[torch.nn.Module,
                                                                    torch.Tensor]]:
    """Each block's attention module with its input ``(1, s, hidden)`` (the block's input
    after its first LayerNorm), from one forward pass of the torch network through the
    engine (whatever runtime scores; ``Engine.forward``'s ``on_block``): L x s x hidden
    floats in all."""
    blocks = scorer.model.blocks
    seen: list[tuple[torch.nn.Module, torch.Tensor]] = []

    def on_block(i: int, x: torch.Tensor) -> None:
        seen.append((blocks[i].attention, blocks[i].ln0(x).detach()))

    batch = PackedBatch.from_tokens([tokens]).to(scorer.device)
    with torch.inference_mode():
        scorer.engine.forward(batch, on_block=on_block)
    return seen


def _cls_row_step(module: torch.nn.Module, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """``r @ A`` for one block's rollout matrix ``A`` (head-averaged attention plus the
    identity, rows renormalised), built ``ROLLOUT_BLOCK`` values at a time; ``r`` is float64
    ``(s,)``. Rows of ``A`` where ``r`` is 0 are never computed."""
    x = x.float()
    b, s, d = x.shape
    h = module.heads
    qkv = torch.nn.functional.linear(x, module.qkv.weight.float(), module.qkv.bias.float())
    q, k, _ = qkv.view(b, s, 3, h, d // h).permute(2, 0, 3, 1, 4)
    q, kt = q[0] / math.sqrt(d // h), k[0].transpose(-1, -2)
    out = torch.zeros(s, dtype=torch.float64, device=r.device)
    step = max(1, ROLLOUT_BLOCK // (h * s))
    for lo in range(0, s, step):
        hi = min(lo + step, s)
        if not bool(r[lo:hi].any()):
            continue
        a = torch.softmax(q[:, lo:hi] @ kt, dim=-1).mean(0).to(r.device, torch.float64)
        idx = torch.arange(hi - lo, device=a.device)
        a[idx, idx + lo] += 1.0
        a /= a.sum(-1, keepdim=True)
        out += r[lo:hi] @ a
    return out


def rollout(scorer: Scorer, tokens: Tokens, cell: int) -> list[list[float]]:
    """Attention rollout from CLS onto the native-scale tokens, summed over ``cell`` x ``cell``
    patch cells (see the module docstring).

    Only the CLS row of the product ``A_L ... A_1`` is needed: it is ``e_0 A_L ... A_1``,
    propagated as a vector from the last block down (``r_l = r_(l+1) A_l``), so no s x s
    matrix is ever held; each ``A_l`` is rebuilt from the block's saved input in slices of
    :data:`ROLLOUT_BLOCK` values. Memory: the blocks' inputs (14 x s x 384 float32, 0.26 GB at
    12,000 tokens) plus one slice; time: one extra attention pass per block."""
    inputs = _attention_inputs(scorer, tokens)
    s = inputs[0][1].shape[1]
    # float64 accumulation; MPS has no float64, so the row is kept on the CPU there
    dev = inputs[0][1].device if inputs[0][1].device.type != "mps" else torch.device("cpu")
    r = torch.zeros(s, dtype=torch.float64, device=dev)
    r[0] = 1.0
    with torch.no_grad():
        for module, x in reversed(inputs):
            r = _cls_row_step(module, x, r)
    del inputs
    cls = r[1:].cpu().numpy()
    native = tokens.scales[-1]
    vals = cls[tokens.scale_ids == native.scale_id]  # fewer than the grid when capped
    full = np.zeros(native.grid_h * native.grid_w)
    full[:len(vals)] = vals
    grid = full.reshape(native.grid_h, native.grid_w)
    rows, cols = -(-native.grid_h // cell), -(-native.grid_w // cell)
    pad = np.zeros((rows * cell, cols * cell))
    pad[:native.grid_h, :native.grid_w] = grid
    return pad.reshape(rows, cell, cols, cell).sum(axis=(1, 3)).tolist()


def explain(scorer: Scorer, image: ImageInput, *, methods: tuple[str, ...] = ("occlusion",),
            cell: int | None = None, progress: bool = False) -> Explanation:
    """Maps of what moves ``image``'s score under ``scorer``.

    ``methods``: any of ``occlusion`` and ``rollout``. ``cell``: cell side in native 32-px
    patches (default: the smallest giving at most 16 cells along the longer side). Occlusion
    costs one forward pass per cell (``progress``: a bar over them on stderr). Raises :class:`musiq.ImageError` for a bad image.
    """
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise MusiqError(f"explain methods must be among {', '.join(METHODS)}, not {bad}")
    if cell is not None and cell < 1:
        raise MusiqError("--cell must be a positive number of patches")
    source = source_name(image)
    rgb = scorer.preprocessor.pixels(image)
    cfg = scorer.preprocess_config
    tokens = scorer.preprocessor.tokens_of_pixels(rgb, source)
    h, w = rgb.shape[:2]
    gh, gw, top, left = _native_grid(h, w, cfg.patch_size)
    cell = cell or max(1, -(-max(gh, gw) // DEFAULT_CELLS))
    base = _scores(scorer, [tokens])[0]
    ex = Explanation(source, base, w, h, cell * cfg.patch_size, (-top, -left), rgb=rgb)
    for m in methods:
        ex.maps[m] = occlusion(scorer, rgb, cell, base, progress=progress) \
            if m == "occlusion" else \
            rollout(scorer, tokens, cell)
    return ex


def draw(ex: Explanation, path: str | os.PathLike, *, title: str = "",
         units: str = "score") -> Path:
    """A PNG of each map over the image (the image's own aspect ratio) with a colour bar.

    Occlusion uses a diverging map centred on 0 (red raises the score, blue lowers it);
    rollout a sequential one. Needs matplotlib (the ``eval`` extra).
    """
    try:
        import matplotlib
        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure
    except ImportError:
        from .extras import needs
        raise MusiqError(needs("drawing a heat map (matplotlib)", "eval")) from None
    if ex.rgb is None:
        raise MusiqError("this explanation holds no image to draw on")
    rgb = ex.rgb
    names = list(ex.maps)
    aspect = ex.width / ex.height
    panel_h = 4.0
    fig = Figure(figsize=(len(names) * (panel_h * aspect + 1.2), panel_h + 0.8), dpi=100)
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), i + 1)
        grid = np.asarray(ex.maps[name])
        ax.imshow(rgb, extent=(0, ex.width, ex.height, 0))
        top, left = ex.offset
        extent = (left, left + grid.shape[1] * ex.cell_px, top + grid.shape[0] * ex.cell_px, top)
        if name == "occlusion":
            v = float(np.abs(grid).max()) or 1.0
            im = ax.imshow(grid, cmap="RdBu_r", vmin=-v, vmax=v, alpha=0.55, extent=extent,
                           interpolation="nearest")
            label = f"{units} drop when occluded"
        else:
            im = ax.imshow(grid, cmap="inferno", alpha=0.6, extent=extent,
                           interpolation="nearest")
            label = "CLS attention (rollout)"
        ax.set_xlim(0, ex.width)
        ax.set_ylim(ex.height, 0)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{name}", fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03).set_label(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    from .evaluation.plot import save_figure
    return save_figure(fig, path)
