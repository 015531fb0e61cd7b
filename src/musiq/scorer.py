"""Score images with a loaded MUSIQ checkpoint: the public Python API.

    >>> import musiq
    >>> model = musiq.load("koniq")            # or musiq.load("path/to/ckpt.npz")
    >>> model.score("photo.jpg")               # MOS on 0-100 for KonIQ
    >>> model.predict("photo.jpg").to_dict()   # score, logits, AVA distribution, top-5 ...
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from .architecture import Architecture
from .batching import Reorder, schedule
from .decode import DEFAULT_MAX_PIXELS, ImageInput, source_name
from .errors import ImageError, MusiqError
from .factory import ModelSource, create_model
from .model import Musiq, PackedBatch
from .outputs import interpret, output_kind
from .pipeline import Prepared, iter_prepared
from .preprocess import MULTI_SCALE, SINGLE_SCALE, PreprocessConfig, Tokens
from .preprocessor import BACKENDS, Preprocessor
from .registry import ModelInfo
from .results.rows import Prediction
from .staging import PinnedStaging

__all__ = ["Prediction", "Scorer", "ScorerOptions", "interpret", "load", "resolve_device",
           "PRECISIONS"]


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


@dataclass(frozen=True)
class ScorerOptions:
    """How a :class:`Scorer` runs, validated when made.

    ``device``: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available);
    ``max_pixels``: refuse images above this many pixels, from the header (None: no limit);
    ``exif_transpose``: apply EXIF orientation (the original does not);
    ``max_batch_tokens``: padded token slots per forward pass (None: 1024 on CPU, 65536 on
    CUDA); ``precision``: ``fp32`` (exact), ``bf16`` or ``fp16`` autocast;
    ``compile``: ``torch.compile`` the patch stem (for GPUs), on bucketed patch counts;
    ``preprocess``: where tokens are made: ``numpy`` (host, in the decode workers), ``torch``
    (on the scoring device, from decoded pixels) or ``auto`` (torch on CUDA; NumPy on CPU,
    which measures faster there: docs/performance.md). Both give the same tokens.
    """

    device: str | None = "auto"
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    exif_transpose: bool = False
    max_batch_tokens: int | None = None
    precision: str = "fp32"
    compile: bool = False
    backend: str = "torch"
    threads: int | None = None
    preprocess: str = "auto"

    def __post_init__(self) -> None:
        if self.preprocess not in ("auto", *BACKENDS):
            raise MusiqError(f"preprocess must be auto, {' or '.join(BACKENDS)}, "
                             f"not {self.preprocess!r}")
        if self.precision not in PRECISIONS:
            raise MusiqError(f"precision must be one of {', '.join(PRECISIONS)}, "
                             f"not {self.precision!r}")
        if self.max_batch_tokens is not None and self.max_batch_tokens < 1:
            raise MusiqError(f"max_batch_tokens must be positive, not {self.max_batch_tokens}")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise MusiqError(f"max_pixels must be positive or None, not {self.max_pixels}")
        device = resolve_device(self.device)  # raises for an unknown or absent device
        from .backend import BACKENDS as RUNTIMES
        if self.backend not in RUNTIMES:
            raise MusiqError(f"backend must be one of {', '.join(RUNTIMES)}, "
                             f"not {self.backend!r}")
        if self.backend != "torch":
            if device.type != "cpu":
                raise MusiqError(f"the {self.backend} backend runs on CPU only "
                                 "(use --device cpu)")
            if self.preprocess == "torch":
                raise MusiqError(f"the {self.backend} backend reads tokens made by NumPy "
                                 "(--preprocess numpy or auto)")
            if self.precision != "fp32":
                raise MusiqError(f"the {self.backend} backend runs fp32 only "
                                 f"(not {self.precision})")
        if self.threads is not None and self.threads < 1:
            raise MusiqError(f"threads must be positive, not {self.threads}")


class Scorer:
    """A loaded MUSIQ network, ready to score images.

    Use :func:`load` to make one. ``info`` is the registry entry when the model was loaded by
    name (None for an arbitrary file); ``variant`` is the network's architecture (head size
    and scales, detected from the file's shapes). Options: see :class:`ScorerOptions`; they
    can be given as ``options=`` or as keywords.
    """

    def __init__(self, model: Musiq, variant: Architecture | None = None, *,
                 path: Path | None = None, info: ModelInfo | None = None,
                 options: ScorerOptions | None = None, **kwargs) -> None:
        if options is not None and kwargs:
            raise TypeError("give either options= or option keywords, not both")
        if "device" in kwargs and isinstance(kwargs["device"], torch.device):
            kwargs["device"] = str(kwargs["device"])
        self.options = opts = options or ScorerOptions(**kwargs)
        source: ModelSource = getattr(model, "source", None) or ModelSource()
        self.path = path if path is not None else source.path
        self.info = info if info is not None else source.info
        self.variant = variant or model.variant
        self.device = resolve_device(opts.device)
        self.model = model.to(self.device).eval()
        if self.device.type == "cuda":
            # Few large stem calls: a GPU is bound by launches, not by this memory.
            self.model.stem_chunk = max(self.model.stem_chunk, 8192)
        if opts.compile:
            self.compile_stem()
        self.output = output_kind(self.variant.kind)
        backend = opts.preprocess
        if backend == "auto":
            backend = "torch" if self.device.type == "cuda" else "numpy"
        self.preprocessor = Preprocessor(
            SINGLE_SCALE if self.variant.single_scale else MULTI_SCALE,
            opts.max_pixels, opts.exif_transpose, backend=backend, device=str(self.device))
        self.staging = PinnedStaging(self.device)
        # Token slots per forward pass. CPU: ~1k, so that small images share passes but a
        # pass's activations stay in cache (a 1024x768 image ran 10 % faster alone than 8 per
        # pass on 2 cores); GPU: large passes to fill the device.
        self.max_batch_tokens = opts.max_batch_tokens or (
            65536 if self.device.type == "cuda" else 1024)
        self.runtime = None  # None: the torch model; else an object with logits(tokens)
        if opts.backend != "torch":
            self.use_backend(opts.backend, threads=opts.threads)

    def use_backend(self, name: str, threads: int | None = None) -> None:
        """Run forward passes on ``torch`` or ``onnxruntime`` (checked as
        :class:`ScorerOptions` checks them)."""
        from .backend import OnnxRuntimeBackend
        from dataclasses import replace
        self.options = replace(self.options, backend=name, threads=threads)
        if name == "torch":
            self.runtime = None
            return
        self.runtime = OnnxRuntimeBackend(self.model, self.path, threads=threads)

    def compile_stem(self) -> None:
        """``torch.compile`` the patch stem: it fuses the GroupNorm/ReLU/casts that bound a
        GPU (3x in bf16 on an H200, docs/performance.md). The first batch pays the compile."""
        self.model.stem = torch.compile(self.model.stem, dynamic=False)
        self._bucketed = True

    _bucketed = False

    def _embed(self, batch: PackedBatch) -> torch.Tensor:
        """Token embeddings; with a compiled stem the patches are padded to a bucket (a power
        of two from 256, then multiples of the stem chunk) so that it compiles a few shapes
        once instead of once per new patch count."""
        n = batch.patches.shape[0]
        if not self._bucketed:
            return self.model.embed(batch)
        chunk = self.model.stem_chunk
        size = 256
        while size < min(n, chunk):
            size *= 2
        if n > chunk:
            size = -(-n // chunk) * chunk
        pad = size - n
        if pad:
            batch = PackedBatch(F_pad_rows(batch.patches, pad), F_pad_rows(batch.positions, pad),
                                F_pad_rows(batch.scale_ids, pad), batch.lengths)
        return self.model.embed(batch)[:n]

    # -- description -------------------------------------------------------------------
    @property
    def precision(self) -> str:
        return self.options.precision

    @property
    def max_pixels(self) -> int | None:
        return self.preprocessor.max_pixels

    @property
    def exif_transpose(self) -> bool:
        return self.preprocessor.exif_transpose

    @property
    def name(self) -> str:
        return self.info.name if self.info else (self.path.name if self.path else "musiq")

    @property
    def kind(self) -> str:
        return self.output.name

    @property
    def score_range(self) -> tuple[float, float] | None:
        """The score's range in its units: 0-100 MOS, 1-10 AVA, 0-1 ImageNet (None: unknown)."""
        if self.info is not None:
            return self.info.score_range or self.output.score_range
        return self.output.score_range

    @property
    def lower_better(self) -> bool:
        """False: a higher MUSIQ score means better quality (or aesthetics)."""
        return self.output.lower_better

    @property
    def preprocess_config(self) -> PreprocessConfig:
        return self.preprocessor.config

    def describe(self) -> dict:
        return {"name": self.name, "path": str(self.path) if self.path else None,
                "kind": self.kind, "num_classes": self.variant.num_classes,
                "single_scale": self.variant.single_scale, "score_range": self.score_range,
                "lower_better": self.lower_better,
                "dataset": self.info.dataset if self.info else None}

    def provenance(self) -> dict:
        """What makes this scorer's outputs: model, checkpoint SHA-256, musiq version,
        precision, preprocessing (see :mod:`musiq.provenance`)."""
        from .provenance import describe
        return describe(self)

    # -- core steps ----------------------------------------------------------------------
    def tokens(self, image: ImageInput) -> Tokens:
        """Decode and preprocess one image (raises :class:`ImageError`); see
        :attr:`preprocessor`."""
        return self.preprocessor.tokens(image)

    @torch.inference_mode()
    def logits(self, tokens: Sequence[Tokens]) -> np.ndarray:
        """``(B, num_classes)`` float32 logits for several tokenised images in one pass.

        fp32 (the default) is exact to the original; ``bf16``/``fp16`` run the matrix work
        under ``torch.autocast`` (see docs/performance.md for their effect on scores).
        """
        if self.runtime is not None:
            if self.precision != "fp32":
                raise MusiqError(f"the {self.runtime.name} backend runs fp32 only")
            return self.runtime.logits(tokens)
        batch = PackedBatch.from_tokens(tokens).to(self.device)
        return self._forward(batch).float().cpu().numpy()

    def _forward(self, batch: PackedBatch) -> torch.Tensor:
        m = self.model
        if self.precision == "fp32":
            with _exact_fp32():
                return m.head(m.encode(self._embed(batch), batch.lengths))
        dtype = PRECISIONS[self.precision]
        if self.device.type == "cpu":
            # On CPU the stem's GroupNorms and casts are slower in bf16 than the convolutions
            # gain: the stem stays fp32 and only the encoder runs in reduced precision.
            x = self._embed(batch)
            with torch.autocast("cpu", dtype=dtype):
                return m.head(m.encode(x, batch.lengths))
        with torch.autocast(self.device.type, dtype=dtype):
            return m.head(m.encode(self._embed(batch), batch.lengths))

    @property
    def backend(self) -> str:
        """What runs the model: ``torch`` or ``onnxruntime`` (:attr:`runtime`)."""
        return self.options.backend

    @property
    def preprocess(self) -> str:
        """Where tokens are made: ``numpy`` (host) or ``torch`` (on :attr:`device`)."""
        return self.preprocessor.backend

    def _logits_of_pixels_device(self, pixels: Sequence[np.ndarray],
                                 sources: Sequence[str] | None = None) -> torch.Tensor:
        """Launch one pass from decoded pixels: staged (pinned, non-blocking on CUDA),
        tokenised on the device, run. The result stays on the device."""
        on_device = self.staging.to_device(pixels)
        tt = self.preprocessor.tokenize(on_device, list(sources) if sources else None)
        batch = PackedBatch(tt.patches, tt.positions, tt.scale_ids, tt.lengths)
        return self._forward(batch)

    @torch.inference_mode()
    def logits_of_pixels(self, pixels: Sequence[np.ndarray]) -> np.ndarray:
        """``(B, num_classes)`` float32 logits of several decoded ``(H, W, 3)`` uint8 images,
        tokenised by torch on :attr:`device` (equal to :meth:`logits` of their tokens)."""
        return self._logits_of_pixels_device(pixels).float().cpu().numpy()

    def score_tensor(self, x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Differentiable scores of images given as tensors.

        ``x``: float ``(N, 3, H, W)`` with values in [0, 1], or a list of ``(3, H, W)``
        tensors of different sizes. Returns ``(N,)`` scores (the units of :class:`Prediction`:
        MOS, AVA's mean score 1-10, ImageNet's top-1 probability) on ``x``'s device,
        differentiable with respect to ``x``: the same preprocessing as :meth:`score` (the
        normalisation, the Gaussian resizes and the patches are all differentiable), the
        model in this scorer's precision. The model must be on ``x``'s device. On pixels
        ``uint8 / 255`` it equals :meth:`score` within 1e-4; JPEG decoding, which tensors
        skip, is the one step that is not differentiable.
        """
        from .preprocess_torch import tokenize_normalised
        images = list(x) if isinstance(x, (list, tuple)) else list(x.unbind(0))
        if not images:
            raise ValueError("score_tensor needs at least one image")
        for t in images:
            if t.ndim != 3 or t.shape[0] != 3 or not t.is_floating_point():
                raise ValueError(f"expected float (3, H, W) images, got {t.dtype} "
                                 f"{tuple(t.shape)}")
        # [0, 1] -> [-1, 1] as the original's x / 255 * 2 - 1, in float32, HWC.
        # (float64 stays float64, for a model in float64: gradient checks.)
        normed = [((t if t.dtype == torch.float64 else t.float()) * 2.0 - 1.0).permute(1, 2, 0)
                  for t in images]
        tt = tokenize_normalised(normed, self.preprocess_config)
        batch = PackedBatch(tt.patches, tt.positions, tt.scale_ids, tt.lengths)
        logits = self._forward(batch)
        return self._torch_score(logits if logits.dtype == torch.float64 else logits.float())

    def _torch_score(self, logits: torch.Tensor) -> torch.Tensor:
        """The score of each row of logits, in torch (as :mod:`musiq.outputs` in NumPy)."""
        kind = self.output.name
        if kind == "mos":
            return logits[:, 0]
        p = torch.softmax(logits, dim=-1)
        if kind == "distribution":
            bins = torch.arange(1, logits.shape[-1] + 1, device=logits.device,
                                dtype=logits.dtype)
            return (p * bins).sum(-1)
        return p.max(dim=-1).values

    # -- public API ----------------------------------------------------------------------
    def predict(self, image: ImageInput) -> Prediction:
        """Full prediction for one image; raises :class:`ImageError` for a bad image."""
        if self.preprocess == "torch":
            rgb = self.preprocessor.pixels(image)
            lo = self.logits_of_pixels([rgb])[0]
        else:
            lo = self.logits([self.tokens(image)])[0]
        pred = self._prediction(source_name(image), lo)
        if pred.error is not None:
            raise MusiqError(f"{pred.source}: {pred.error}")
        return pred

    def score(self, image: ImageInput) -> float:
        """The score of one image (see :class:`Prediction` for units).

        A path or bytes give the original's exact pixels; a PIL image or an array decoded
        by Pillow carries Pillow's JPEG decode (up to 9 levels off) and scores slightly
        differently: use :func:`musiq.load_image` for exact arrays."""
        return self.predict(image).score  # type: ignore[return-value]

    def __call__(self, image: ImageInput) -> float:
        """``scorer(img)`` is :meth:`score` (pyiqa's habit)."""
        return self.score(image)

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
        order: Reorder[Prediction] = Reorder()

        def gate(stream: Iterator[Prepared]) -> Iterator[Prepared]:
            # Failed images skip the model: they are ready at once.
            for item in stream:
                if not item.ok:
                    order.put(item.index, Prediction(source=item.source, error=item.error))
                else:
                    yield item

        pixels = self.preprocess == "torch"
        prepared = iter_prepared(images, self.preprocessor, workers=workers, pixels=pixels)
        # On CUDA a pass is launched before the previous one's logits are read back, so that
        # decoding, copies and compute overlap; on CPU each pass is finished at once.
        depth = 1 if (pixels and self.device.type == "cuda") else 0
        inflight: list[tuple[Sequence[Prepared], object]] = []
        for batch in schedule(gate(prepared), len, batch_size=batch_size,
                              max_tokens=max_tokens, window=window,
                              window_tokens=4 * max_tokens):
            inflight.append((batch, self._launch(batch)))
            while len(inflight) > depth:
                done, launched = inflight.pop(0)
                for item, pred in zip(done, self._finish(done, launched)):
                    order.put(item.index, pred)
            yield from order.ready()
        for done, launched in inflight:
            for item, pred in zip(done, self._finish(done, launched)):
                order.put(item.index, pred)
        yield from order.ready()
        if len(order):  # pragma: no cover - every index is put exactly once
            raise RuntimeError("internal error: results left unordered")

    def _launch(self, batch: Sequence[Prepared]) -> object:
        """Start one pass: device logits (torch backend), or the finished predictions."""
        if batch[0].pixels is None:
            return self._predict_batch(batch)
        try:
            with torch.inference_mode():
                return self._logits_of_pixels_device(
                    [item.pixels for item in batch],  # type: ignore[misc]
                    [item.source for item in batch])
        except (RuntimeError, MemoryError, ImageError):
            return self._predict_batch(batch)

    def _finish(self, batch: Sequence[Prepared], launched: object) -> list[Prediction]:
        if isinstance(launched, list):
            return launched
        try:
            rows = launched.float().cpu().numpy()  # type: ignore[attr-defined]
        except (RuntimeError, MemoryError):
            return self._predict_batch(batch)
        return [self._prediction(item.source, lo) for item, lo in zip(batch, rows)]

    def _prediction(self, source: str, logits: np.ndarray) -> Prediction:
        """The prediction of one image's logits; NaN or infinite logits (a broken checkpoint)
        make an error, never a score (such a value is no score, nor valid JSON)."""
        if not np.all(np.isfinite(logits)):
            return Prediction(source=source, error="the model returned non-finite logits "
                                                   "(NaN or Inf); the checkpoint is broken")
        return Prediction(source=source, **self.output.interpret(logits))

    def _predict_batch(self, batch: Sequence[Prepared]) -> list[Prediction]:
        """One forward pass; if it fails (out of memory, say), each image alone."""
        try:
            if batch[0].pixels is not None:
                rows = self.logits_of_pixels([item.pixels for item in batch])  # type: ignore
            else:
                rows = self.logits([item.tokens for item in batch])  # type: ignore[misc]
            return [self._prediction(item.source, lo)
                    for item, lo in zip(batch, rows)]
        except (RuntimeError, MemoryError, ImageError) as e:
            if len(batch) > 1:
                return [p for item in batch for p in self._predict_batch([item])]
            reason = ("out of memory" if isinstance(e, MemoryError) else
                      e.reason if isinstance(e, ImageError) else str(e).split("\n")[0])
            return [Prediction(source=batch[0].source, error=f"model failed: {reason}")]

    def score_video(self, video, *, fps: float | None = 1.0, every_frame: bool = False,
                    max_frames: int | None = None, pool: str = "mean",
                    batch_size: int = 8) -> Prediction:
        """Score a video (a path, or its frames as arrays or ``(time, array)`` pairs, every
        one of which is scored): ``fps`` frames per second of video time (files), pooled by
        ``pool`` (``mean``, ``median``, ``min``, ``p10``). Returns a :class:`Prediction` with ``score`` (pooled), ``frames``,
        ``spread`` and ``frame_scores``; see :mod:`musiq.video_scoring` (needs the ``video``
        extra for paths)."""
        from .video_scoring import score_video
        return score_video(self, video, fps=fps, every_frame=every_frame,
                           max_frames=max_frames, pool=pool, batch_size=batch_size)

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


def F_pad_rows(t: torch.Tensor, n: int) -> torch.Tensor:
    """``t`` with ``n`` zero rows appended."""
    return torch.cat([t, t.new_zeros((n, *t.shape[1:]))])


def load(model: str | os.PathLike = "koniq", *, checkpoint_dir: str | os.PathLike | None = None,
         device: str | torch.device | None = "auto", offline: bool | None = None,
         **options) -> Scorer:
    """Load a checkpoint by registry name (``koniq``, ``ava``, ``spaq-single`` ...) or path.

    A name is looked up in ``checkpoint_dir``, ``$MUSIQ_CHECKPOINT_DIR``,
    ``./musiq_original/checkpoints/`` and the user cache; the file's variant (head size,
    single or multi-scale) is detected from its shapes and must match the name. A named
    model found nowhere is downloaded first (to ``checkpoint_dir``, ``$MUSIQ_CHECKPOINT_DIR``
    or the cache) unless ``offline`` (default: ``$MUSIQ_OFFLINE``); see :mod:`musiq.download`.
    ``device``: ``auto`` (default, as the CLI: CUDA when available), ``cpu``, ``cuda[:N]``.
    ``options`` are :class:`ScorerOptions` (``max_pixels``, ``exif_transpose``,
    ``max_batch_tokens``, ``precision``: ``"fp32"`` (default, exact), ``"bf16"`` or
    ``"fp16"``; ``compile``: ``torch.compile`` the patch stem, for GPUs; ``backend``: ``"torch"``
    or ``"onnxruntime"``, CPU fp32, needs the ``onnx`` extra; ``preprocess``: ``"auto"``,
    ``"numpy"`` or ``"torch"``, where tokens are made); they are checked before the
    checkpoint is read.
    """
    if isinstance(device, torch.device):
        device = str(device)
    opts = ScorerOptions(device=device, **options)
    net = create_model(model, checkpoint_dir=checkpoint_dir, offline=offline)
    return Scorer(net, options=opts)
