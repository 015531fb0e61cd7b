"""Score images with a loaded MUSIQ checkpoint: the public Python API.

    >>> import musiq
    >>> model = musiq.load("koniq")            # or musiq.load("path/to/ckpt.npz")
    >>> model.score("photo.jpg")               # MOS on 0-100 for KonIQ
    >>> model.predict("photo.jpg").to_dict()   # score, logits, AVA distribution, top-5 ...
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from .checkpoint import Variant, load_checkpoint
from .decode import DEFAULT_MAX_PIXELS, ImageInput, load_image
from .download import ensure_checkpoint
from .errors import CheckpointError, ImageError, MusiqError
from .model import Musiq, PackedBatch
from .preprocess import MULTI_SCALE, SINGLE_SCALE, PreprocessConfig, Tokens, preprocess
from .registry import REGISTRY, ModelInfo, get_info


@dataclass
class Prediction:
    """What a model says about one image.

    ``score``: MOS (KonIQ/SPAQ/PaQ-2-PiQ, 0-100), mean of the distribution (AVA, 1-10) or the
    top-1 probability (ImageNet, 0-1); None when the image failed, and ``error`` says why.
    ``distribution``/``std``: AVA's 10 bin probabilities (scores 1..10) and their std.
    ``top5``: ImageNet's five best classes as ``{"class": index, "probability": p}``.
    """

    source: str
    score: float | None = None
    error: str | None = None
    logits: list[float] | None = None
    distribution: list[float] | None = None
    std: float | None = None
    top5: list[dict] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        d = asdict(self)
        d = {"path": d.pop("source"), **d}
        return {k: v for k, v in d.items()
                if v is not None or k in ("path", "score", "error")}


def interpret(logits: np.ndarray, kind: str) -> dict:
    """Score and extra outputs from one image's logits (float64 maths on float32 logits)."""
    logits = np.asarray(logits, np.float32)
    out: dict = {"logits": [float(v) for v in logits]}
    if kind == "mos" or logits.shape[0] == 1:
        out["score"] = float(logits[0])
        return out
    z = logits.astype(np.float64)
    p = np.exp(z - z.max())
    p /= p.sum()
    if kind == "distribution":
        bins = np.arange(1, len(p) + 1, dtype=np.float64)
        mean = float((p * bins).sum())
        out["score"] = mean
        out["distribution"] = [float(v) for v in p]
        out["std"] = float(math.sqrt(max((p * (bins - mean) ** 2).sum(), 0.0)))
    else:
        top = np.argsort(-z, kind="stable")[:5]
        out["score"] = float(p[top[0]])
        out["top5"] = [{"class": int(i), "probability": float(p[i]), "logit": float(z[i])}
                       for i in top]
    return out


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available)."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MusiqError("device 'cuda' requested but CUDA is not available "
                         "(use --device cpu or auto)")
    return dev


class Scorer:
    """A loaded MUSIQ checkpoint, ready to score images.

    Use :func:`load` to make one. ``info`` is the registry entry when the model was loaded by
    name (None for an arbitrary file); ``variant`` is what the file's shapes say.
    """

    def __init__(self, model: Musiq, variant: Variant, *, path: Path | None = None,
                 info: ModelInfo | None = None, device: torch.device | None = None,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, exif_transpose: bool = False,
                 max_batch_tokens: int = 8192) -> None:
        self.device = device or torch.device("cpu")
        self.model = model.to(self.device).eval()
        self.variant = variant
        self.path = path
        self.info = info
        self.max_pixels = max_pixels
        self.exif_transpose = exif_transpose
        self.max_batch_tokens = max_batch_tokens

    # -- description -------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.info.name if self.info else (self.path.name if self.path else "musiq")

    @property
    def kind(self) -> str:
        return self.variant.kind

    @property
    def score_range(self) -> tuple[float, float] | None:
        if self.info is not None:
            return self.info.score_range
        return {"distribution": (1.0, 10.0), "imagenet": (0.0, 1.0)}.get(self.kind)

    @property
    def preprocess_config(self) -> PreprocessConfig:
        return SINGLE_SCALE if self.variant.single_scale else MULTI_SCALE

    def describe(self) -> dict:
        return {"name": self.name, "path": str(self.path) if self.path else None,
                "kind": self.kind, "num_classes": self.variant.num_classes,
                "single_scale": self.variant.single_scale, "score_range": self.score_range,
                "dataset": self.info.dataset if self.info else None}

    # -- core steps ----------------------------------------------------------------------
    def tokens(self, image: ImageInput) -> Tokens:
        """Decode and preprocess one image (raises :class:`ImageError`)."""
        source = str(image) if isinstance(image, (str, os.PathLike)) else "<input>"
        rgb = load_image(image, max_pixels=self.max_pixels, exif_transpose=self.exif_transpose)
        return preprocess(rgb, self.preprocess_config, source)

    @torch.no_grad()
    def logits(self, tokens: Sequence[Tokens]) -> np.ndarray:
        """``(B, num_classes)`` float32 logits for several tokenised images in one pass."""
        batch = PackedBatch(
            torch.from_numpy(np.concatenate([t.patches for t in tokens])),
            torch.from_numpy(np.concatenate([t.positions for t in tokens])),
            torch.from_numpy(np.concatenate([t.scale_ids for t in tokens])),
            [len(t) for t in tokens],
        ).to(self.device)
        return self.model(batch).float().cpu().numpy()

    # -- public API ----------------------------------------------------------------------
    def predict(self, image: ImageInput) -> Prediction:
        """Full prediction for one image; raises :class:`ImageError` for a bad image."""
        out = interpret(self.logits([self.tokens(image)])[0], self.kind)
        return Prediction(source=_source_name(image), **out)

    def score(self, image: ImageInput) -> float:
        """The score of one image (see :class:`Prediction` for units)."""
        return self.predict(image).score  # type: ignore[return-value]

    def predict_many(self, images: Iterable[ImageInput], *, batch_size: int = 8
                     ) -> Iterator[Prediction]:
        """Predictions in input order; a bad image yields a Prediction with ``error`` set.

        Images are preprocessed, then run ``batch_size`` at a time (fewer when a batch would
        exceed ``max_batch_tokens``) as one packed forward pass.
        """
        pending: list[tuple[Prediction, Tokens | None]] = []
        tokens_in_batch = 0
        for image in images:
            pred = Prediction(source=_source_name(image))
            try:
                tok: Tokens | None = self.tokens(image)
            except MusiqError as e:
                pred.error = _reason(e)
                tok = None
            if tok is not None and pending and (
                    tokens_in_batch + len(tok) > self.max_batch_tokens):
                yield from self._flush(pending)
                pending, tokens_in_batch = [], 0
            pending.append((pred, tok))
            tokens_in_batch += len(tok) if tok is not None else 0
            if sum(t is not None for _, t in pending) >= batch_size:
                yield from self._flush(pending)
                pending, tokens_in_batch = [], 0
        yield from self._flush(pending)

    def _flush(self, pending: list[tuple[Prediction, Tokens | None]]) -> Iterator[Prediction]:
        ready = [(p, t) for p, t in pending if t is not None]
        if ready:
            for (pred, _), lo in zip(ready, self.logits([t for _, t in ready])):
                for k, v in interpret(lo, self.kind).items():
                    setattr(pred, k, v)
        for pred, _ in pending:
            yield pred

    def score_many(self, images: Iterable[ImageInput], *, batch_size: int = 8,
                   errors: str = "raise") -> list[float | None]:
        """Scores in input order. ``errors="raise"`` raises :class:`ImageError` for the first
        bad image; ``errors="none"`` puts None in its place."""
        if errors not in ("raise", "none"):
            raise ValueError("errors must be 'raise' or 'none'")
        out: list[float | None] = []
        for p in self.predict_many(images, batch_size=batch_size):
            if p.error is not None and errors == "raise":
                raise ImageError(p.source, p.error)
            out.append(p.score)
        return out


def _source_name(image: ImageInput) -> str:
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    return f"<{type(image).__name__}>"


def _reason(e: MusiqError) -> str:
    return e.reason if isinstance(e, ImageError) else str(e)


def load(model: str | os.PathLike = "koniq", *, checkpoint_dir: str | os.PathLike | None = None,
         device: str | torch.device | None = "cpu", offline: bool | None = None,
         **options) -> Scorer:
    """Load a checkpoint by registry name (``koniq``, ``ava``, ``spaq-single`` ...) or path.

    A name is looked up in ``checkpoint_dir``, ``$MUSIQ_CHECKPOINT_DIR``,
    ``./musiq_original/checkpoints/`` and the user cache; the file's variant (head size,
    single or multi-scale) is detected from its shapes and must match the name. A named
    model found nowhere is downloaded first (to ``checkpoint_dir``, ``$MUSIQ_CHECKPOINT_DIR``
    or the cache) unless ``offline`` (default: ``$MUSIQ_OFFLINE``); see :mod:`musiq.download`.
    ``options`` go to :class:`Scorer` (``max_pixels``, ``exif_transpose``, ``max_batch_tokens``).
    """
    info: ModelInfo | None = None
    text = os.fspath(model)
    if text.lower().replace("_", "-") in REGISTRY and not Path(text).is_file():
        info = get_info(text)
        path = ensure_checkpoint(info, checkpoint_dir, offline=offline)
    else:
        path = Path(text)
        if not path.exists() and not text.endswith(".npz"):
            get_info(text)  # raises: unknown name, listing the known ones
    params, variant = load_checkpoint(path)
    if info is not None and (variant.num_classes != info.num_classes
                             or variant.single_scale != info.single_scale):
        raise CheckpointError(
            f"{path}: the file is not a '{info.name}' checkpoint: it has "
            f"{variant.num_classes} output(s) and {variant.num_scales} scale(s), expected "
            f"{info.num_classes} and {1 if info.single_scale else 3}")
    net = Musiq(variant).load_official(params)
    return Scorer(net, variant, path=path, info=info, device=resolve_device(device), **options)
