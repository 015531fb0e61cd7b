"""Score images with a loaded MUSIQ checkpoint: the public Python API.

    >>> import musiq
    >>> model = musiq.load("koniq")            # or musiq.load("path/to/ckpt.npz")
    >>> model.score("photo.jpg")               # MOS on 0-100 for KonIQ
    >>> model.predict("photo.jpg").to_dict()   # score, logits, AVA distribution, top-5 ...
"""
from __future__ import annotations

import contextlib
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from .checkpoint import Variant, load_checkpoint
from .decode import DEFAULT_MAX_PIXELS, ImageInput, load_image
from .batching import Reorder, schedule
from .download import ensure_checkpoint
from .errors import CheckpointError, ImageError, MusiqError
from .model import Musiq, PackedBatch
from .pipeline import Prepared, PrepareOptions, iter_prepared, source_name
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


PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@contextlib.contextmanager
def _exact_fp32() -> Iterator[None]:
    """No TF32 on CUDA: cuDNN's default TF32 convolutions move logits by ~3e-4."""
    if not torch.cuda.is_available():
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


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
                 max_batch_tokens: int | None = None, precision: str = "fp32",
                 compile: bool = False, backend: str = "torch") -> None:
        self.device = device or torch.device("cpu")
        self.model = model.to(self.device).eval()
        if self.device.type == "cuda":
            # Few large stem calls: a GPU is bound by launches, not by this memory.
            self.model.stem_chunk = max(self.model.stem_chunk, 8192)
        if compile:
            self.compile_stem()
        self.variant = variant
        self.path = path
        self.info = info
        self.max_pixels = max_pixels
        self.exif_transpose = exif_transpose
        # Token slots per forward pass. CPU: ~1k, so that small images share passes but a
        # pass's activations stay in cache (a 1024x768 image ran 10 % faster alone than 8 per
        # pass on 2 cores); GPU: large passes to fill the device.
        self.max_batch_tokens = max_batch_tokens or (
            65536 if self.device.type == "cuda" else 1024)
        if precision not in PRECISIONS:
            raise MusiqError(f"precision must be one of {', '.join(PRECISIONS)}, "
                             f"not {precision!r}")
        self.precision = precision
        self.backend = None  # None: the torch model; else an object with logits(tokens)
        if backend != "torch":
            self.use_backend(backend)

    def use_backend(self, name: str, threads: int | None = None) -> None:
        """Run forward passes on ``torch`` (default) or ``onnxruntime`` (CPU, fp32: the
        model exported to ONNX once and cached; see :mod:`musiq.backend`)."""
        from .backend import BACKENDS, OnnxRuntimeBackend
        if name not in BACKENDS:
            raise MusiqError(f"backend must be one of {', '.join(BACKENDS)}, not {name!r}")
        if name == "torch":
            self.backend = None
            return
        if self.device.type != "cpu":
            raise MusiqError(f"the {name} backend runs on CPU only (use --device cpu)")
        if self.precision != "fp32":
            raise MusiqError(f"the {name} backend runs fp32 only (not {self.precision})")
        self.backend = OnnxRuntimeBackend(self.model, self.path, threads=threads)

    def compile_stem(self) -> None:
        """``torch.compile`` the patch stem: it fuses the GroupNorm/ReLU/casts that bound a
        GPU (3x in bf16 on an H200, docs/performance.md). The first batch pays the compile."""
        self.model.stem = torch.compile(self.model.stem, dynamic=True)

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

    @torch.inference_mode()
    def logits(self, tokens: Sequence[Tokens]) -> np.ndarray:
        """``(B, num_classes)`` float32 logits for several tokenised images in one pass.

        fp32 (the default) is exact to the original; ``bf16``/``fp16`` run the matrix work
        under ``torch.autocast`` (see docs/performance.md for their effect on scores).
        """
        if self.backend is not None:
            if self.precision != "fp32":
                raise MusiqError(f"the {self.backend.name} backend runs fp32 only")
            return self.backend.logits(tokens)
        batch = PackedBatch.from_tokens(tokens).to(self.device)
        return self._forward(batch).float().cpu().numpy()

    def _forward(self, batch: PackedBatch) -> torch.Tensor:
        if self.precision == "fp32":
            with _exact_fp32():
                return self.model(batch)
        dtype = PRECISIONS[self.precision]
        if self.device.type == "cpu":
            # On CPU the stem's GroupNorms and casts are slower in bf16 than the convolutions
            # gain: the stem stays fp32 and only the encoder runs in reduced precision.
            x = self.model.embed(batch)
            with torch.autocast("cpu", dtype=dtype):
                return self.model.head(self.model.encode(x, batch.lengths))
        with torch.autocast(self.device.type, dtype=dtype):
            return self.model(batch)

    # -- public API ----------------------------------------------------------------------
    def predict(self, image: ImageInput) -> Prediction:
        """Full prediction for one image; raises :class:`ImageError` for a bad image."""
        out = interpret(self.logits([self.tokens(image)])[0], self.kind)
        return Prediction(source=source_name(image), **out)

    def score(self, image: ImageInput) -> float:
        """The score of one image (see :class:`Prediction` for units)."""
        return self.predict(image).score  # type: ignore[return-value]

    def predict_many(self, images: Iterable[ImageInput], *, batch_size: int = 8,
                     workers: int = 0, max_batch_tokens: int | None = None,
                     window: int | None = None) -> Iterator[Prediction]:
        """Predictions in input order; a bad image yields a Prediction with ``error`` set.

        Images are decoded and preprocessed (in ``workers`` processes when > 0), read in
        windows of ``window`` images (default ``4 * batch_size``), sorted by token count
        within the window and run as packed forward passes of at most ``batch_size`` images
        and ``max_batch_tokens`` padded tokens (default: the scorer's). Scores equal the
        one-image path's (the same :meth:`logits`). Memory is bounded by the window.
        """
        max_tokens = max_batch_tokens or self.max_batch_tokens
        window = window or 4 * batch_size
        options = PrepareOptions(self.preprocess_config, self.max_pixels, self.exif_transpose)
        order: Reorder[Prediction] = Reorder()

        def gate(stream: Iterator[Prepared]) -> Iterator[Prepared]:
            # Failed images skip the model: they are ready at once.
            for item in stream:
                if item.tokens is None:
                    order.put(item.index, Prediction(source=item.source, error=item.error))
                else:
                    yield item

        prepared = iter_prepared(images, options, workers=workers)
        for batch in schedule(gate(prepared), len, batch_size=batch_size,
                              max_tokens=max_tokens, window=window,
                              window_tokens=4 * max_tokens):
            for item, pred in zip(batch, self._predict_batch(batch)):
                order.put(item.index, pred)
            yield from order.ready()
        yield from order.ready()
        if len(order):  # pragma: no cover - every index is put exactly once
            raise RuntimeError("internal error: results left unordered")

    def _predict_batch(self, batch: Sequence[Prepared]) -> list[Prediction]:
        """One forward pass; if it fails (out of memory, say), each image alone."""
        try:
            rows = self.logits([item.tokens for item in batch])  # type: ignore[misc]
            return [Prediction(source=item.source, **interpret(lo, self.kind))
                    for item, lo in zip(batch, rows)]
        except (RuntimeError, MemoryError) as e:
            if len(batch) > 1:
                return [p for item in batch for p in self._predict_batch([item])]
            reason = "out of memory" if isinstance(e, MemoryError) else str(e).split("\n")[0]
            return [Prediction(source=batch[0].source, error=f"model failed: {reason}")]

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


def load(model: str | os.PathLike = "koniq", *, checkpoint_dir: str | os.PathLike | None = None,
         device: str | torch.device | None = "cpu", offline: bool | None = None,
         **options) -> Scorer:
    """Load a checkpoint by registry name (``koniq``, ``ava``, ``spaq-single`` ...) or path.

    A name is looked up in ``checkpoint_dir``, ``$MUSIQ_CHECKPOINT_DIR``,
    ``./musiq_original/checkpoints/`` and the user cache; the file's variant (head size,
    single or multi-scale) is detected from its shapes and must match the name. A named
    model found nowhere is downloaded first (to ``checkpoint_dir``, ``$MUSIQ_CHECKPOINT_DIR``
    or the cache) unless ``offline`` (default: ``$MUSIQ_OFFLINE``); see :mod:`musiq.download`.
    ``options`` go to :class:`Scorer` (``max_pixels``, ``exif_transpose``, ``max_batch_tokens``,
    ``precision``: ``"fp32"`` (default, exact), ``"bf16"`` or ``"fp16"``; ``compile``:
    ``torch.compile`` the patch stem, for GPUs; ``backend``: ``"torch"`` (default) or
    ``"onnxruntime"``, CPU fp32, needs the ``onnx`` extra).
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
