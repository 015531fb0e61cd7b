"""Score images with a loaded MUSIQ checkpoint: the public Python API.

    >>> import musiq
    >>> model = musiq.load("koniq")            # or musiq.load("path/to/ckpt.npz")
    >>> model.score("photo.jpg")               # MOS on 0-100 for KonIQ
    >>> model.predict("photo.jpg").to_dict()   # score, logits, AVA distribution, top-5 ...
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np

from .network.architecture import Architecture
from .decoding.decode import ImageInput, source_name
from .engine.plan import PRECISIONS, ScorerOptions, make_plan, resolve_device
from .engine.runtime import Engine
from .engine.stream import run_stream
from .errors import ImageError, MusiqError
from .network.factory import ModelFile, ModelSource, read_model
from .failures import NON_FINITE
from .engine.memory import bound_if_asked
from .network.outputs import interpret, output_kind
from .tokens.pipeline import iter_prepared
from .tokens.preprocess import PreprocessConfig, Tokens
from .network.registry import ModelInfo
from .results.rows import Prediction

if TYPE_CHECKING:  # torch is imported where the torch network runs, not before
    import torch

    from .network.model import Musiq

__all__ = ["Prediction", "Scorer", "ScorerOptions", "interpret", "load", "resolve_device",
           "PRECISIONS"]


class Scorer:
    """A loaded MUSIQ network, ready to score images.

    Use :func:`load` to make one. ``model``: the network, or a checkpoint read but not built
    (:class:`~musiq.network.factory.ModelFile`, as :func:`load` gives: the network is built
    when something needs it). ``info`` is the registry entry when the model was loaded by
    name (None for an arbitrary file); ``variant`` is the network's architecture (head size
    and scales, detected from the file's shapes). Options: see :class:`ScorerOptions`; they
    can be given as ``options=`` or as keywords. ``fresh``: the weights are exactly those
    of the checkpoint file (as :func:`load` makes them), so the converted model cached for
    that file may run them (``backend="auto"``/``"openvino"``); otherwise torch runs.
    """

    def __init__(self, model: "Musiq | ModelFile", variant: Architecture | None = None, *,
                 path: Path | None = None, info: ModelInfo | None = None,
                 options: ScorerOptions | None = None, fresh: bool = False,
                 **kwargs) -> None:
        if options is not None and kwargs:
            raise TypeError("give either options= or option keywords, not both")
        self.options = options or ScorerOptions(**kwargs)
        source: ModelSource = getattr(model, "source", None) or ModelSource()
        self.path = path if path is not None else source.path
        self.info = info if info is not None else source.info
        self.variant = variant or model.variant
        self.output = output_kind(self.variant.kind)
        # ``auto`` may use a runtime's cached conversion only for a model fresh from its
        # file (musiq.load): a model changed in memory (fine-tuning, Scorer(model)) runs torch.
        self._checkpoint = self.path if fresh else None
        self.engine = Engine(model, make_plan(self.options, self.variant, self._checkpoint),
                             self._checkpoint)
        # ``self.options`` stays what was asked for (``auto`` included): it is what travels
        # to other processes (Ray actors), which resolve it for themselves. What runs here
        # is ``self.plan``.

    # The plan's and the engine's parts, under the names callers know.
    plan = property(lambda self: self.engine.plan)
    model = property(lambda self: self.engine.model)
    device = property(lambda self: self.engine.device)
    preprocessor = property(lambda self: self.plan.preprocessor)
    max_batch_tokens = property(lambda self: self.plan.max_batch_tokens)
    runtime = property(lambda self: self.engine.runtime)
    staging = property(lambda self: self.engine.staging)

    def use_backend(self, name: str, threads: int | None = None) -> None:
        """Run forward passes on ``torch``, ``openvino`` or ``onnxruntime`` (checked as
        :class:`ScorerOptions` checks them)."""
        options = replace(self.options, backend=name, threads=threads)
        self.engine = Engine(self.engine.weights, make_plan(options, self.variant,
                                                            self._checkpoint), self._checkpoint)
        self.options = options

    def compile_stem(self) -> None:
        """``torch.compile`` the patch stem (see :meth:`Engine.compile_stem`)."""
        self.engine.compile_stem()

    # -- description -------------------------------------------------------------------
    @property
    def precision(self) -> str:
        return self.plan.precision

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
        precision, preprocessing (see :mod:`musiq.results.provenance`)."""
        from .results.provenance import describe
        return describe(self)

    # -- core steps ----------------------------------------------------------------------
    def tokens(self, image: ImageInput) -> Tokens:
        """Decode and preprocess one image (raises :class:`ImageError`); see
        :attr:`preprocessor`."""
        return self.preprocessor.tokens(image)

    def logits(self, tokens: Sequence[Tokens]) -> np.ndarray:
        """``(B, num_classes)`` float32 logits for several tokenised images in one pass.

        fp32 (the default) is exact to the original; ``bf16``/``fp16`` run the encoder under
        ``torch.autocast`` (see docs/performance.md for their effect on scores)."""
        return self.engine.logits(tokens)

    @property
    def backend(self) -> str:
        """What runs the model: ``torch``, ``openvino`` or ``onnxruntime`` (:attr:`runtime`;
        ``auto`` is resolved when the scorer is made)."""
        return self.plan.runtime

    @property
    def preprocess(self) -> str:
        """Where tokens are made: ``numpy`` (host) or ``torch`` (on :attr:`device`)."""
        return self.plan.tokens_on

    def logits_of_pixels(self, pixels: Sequence[np.ndarray]) -> np.ndarray:
        """``(B, num_classes)`` float32 logits of several decoded ``(H, W, 3)`` uint8 images,
        tokenised by torch on :attr:`device` (equal to :meth:`logits` of their tokens)."""
        return self.engine.logits_of_pixels(pixels)

    def score_tensor(self, x: "torch.Tensor | Sequence[torch.Tensor]") -> "torch.Tensor":
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
        import torch

        from .tokens.preprocess_torch import tokenize_normalised
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
        logits = self.engine.forward(tokenize_normalised(normed, self.preprocess_config))
        return self._torch_score(logits if logits.dtype == torch.float64 else logits.float())

    def _torch_score(self, logits: "torch.Tensor") -> "torch.Tensor":
        """The score of each row of logits, in torch (as :mod:`musiq.network.outputs` in NumPy)."""
        import torch
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
            lo = self.logits_of_pixels([self.preprocessor.pixels(image)])[0]
        else:
            lo = self.logits([self.tokens(image)])[0]
        pred = self.prediction(source_name(image), lo)
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
                     workers: int | None = None, max_batch_tokens: int | None = None,
                     window: int | None = None) -> Iterator[Prediction]:
        """Predictions in input order; a bad image yields a Prediction with ``error`` set.

        Images are decoded and preprocessed (in ``workers`` processes when > 0; default: the
        plan's, none on CPU), read in windows of ``window`` images (default
        ``4 * batch_size``), sorted by token count within the window and run as packed
        forward passes of at most ``batch_size`` images and ``max_batch_tokens`` padded tokens
        (default: the plan's). Scores equal the one-image path's (the same engine). Memory
        is bounded by the window.
        """
        workers = self.plan.workers if workers is None else workers
        prepared = iter_prepared(images, self.plan.worker_preprocessor() if workers
                                 else self.preprocessor,
                                 workers=workers, pixels=self.preprocess == "torch")
        for item, row in run_stream(self.engine, prepared, batch_size=batch_size,
                                    max_tokens=max_batch_tokens, window=window):
            yield self.prediction(item.source, row)

    def prediction(self, source: str, row: "np.ndarray | str") -> Prediction:
        """The prediction of one image's logits row (or of its failure's text); NaN or
        infinite logits (a broken checkpoint) make an error, never a score."""
        if isinstance(row, str):
            return Prediction(source=source, error=str(row))
        if not np.all(np.isfinite(row)):
            return Prediction(source=source, error=NON_FINITE)
        return Prediction(source=source, **self.output.interpret(row))

    def score_video(self, video, *, fps: float | None = 1.0, every_frame: bool = False,
                    max_frames: int | None = None, pool: str = "mean",
                    batch_size: int = 8) -> Prediction:
        """Score a video (a path, or its frames as arrays or ``(time, array)`` pairs, every
        one of which is scored): ``fps`` frames per second of video time (files), pooled by
        ``pool`` (``mean``, ``median``, ``min``, ``p10``). Returns a :class:`Prediction`
        with ``score`` (pooled), ``frames``, ``spread`` and ``frame_scores``; see
        :mod:`musiq.video_scoring` (needs the ``video`` extra for paths)."""
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


def load(model: "str | os.PathLike | Sequence[str | os.PathLike]" = "koniq", *,
         checkpoint_dir: str | os.PathLike | None = None,
         device: "str | torch.device | None" = "auto", offline: bool | None = None,
         **options) -> Scorer:
    """Load a checkpoint by registry name (``koniq``, ``ava``, ``spaq-single`` ...) or path.

    A name is looked up in ``checkpoint_dir``, ``$MUSIQ_CHECKPOINT_DIR``,
    ``./musiq_original/checkpoints/`` and the user cache; the file's variant (head size,
    single or multi-scale) is detected from its shapes and must match the name. A named
    model found nowhere is downloaded first (to ``checkpoint_dir``, ``$MUSIQ_CHECKPOINT_DIR``
    or the cache) unless ``offline`` (default: ``$MUSIQ_OFFLINE``); see :mod:`musiq.network.download`.
    ``device``: ``auto`` (default, as the CLI: CUDA when available), ``cpu``, ``cuda[:N]``.
    ``options`` are :class:`ScorerOptions` (``max_pixels``, ``exif_transpose``,
    ``max_batch_tokens``, ``precision``: ``"fp32"`` (default, exact), ``"bf16"`` or
    ``"fp16"``; ``compile``: ``torch.compile`` the patch stem, for GPUs; ``backend``: ``"auto"``
    (default: OpenVINO on CPU, torch elsewhere), ``"torch"``, ``"openvino"`` (CPU fp32/bf16)
    or ``"onnxruntime"`` (CPU fp32, needs the ``onnx`` extra); ``preprocess``: ``"auto"``,
    ``"numpy"`` or ``"torch"``, where tokens are made; ``workers``; ``max_tokens``); they are
    checked before the checkpoint is read. ``options=ScorerOptions(...)`` gives them whole.

    Several models (a list, ``"koniq,ava"`` or ``"all"``: koniq, spaq, paq2piq and ava)
    give a :class:`musiq.multi_scorer.MultiScorer`, which decodes each image once and
    returns every model's score (``{name: score}``).
    """
    if _several(model):
        from .multi_scorer import load_several
        return load_several([model] if isinstance(model, str) else list(model),  # type: ignore
                            checkpoint_dir=checkpoint_dir, device=device, offline=offline,
                            **options)
    if options.get("options") is not None:
        opts = options.pop("options")
        if options or device != "auto":
            raise TypeError("give either options= or option keywords, not both")
    else:
        opts = ScorerOptions(device=device, **options)
    bound_if_asked()  # before the weights are read (musiq.engine.memory)
    weights = read_model(model, checkpoint_dir=checkpoint_dir, offline=offline)
    return Scorer(weights, options=opts, fresh=True)


def _several(model) -> bool:
    """Whether ``load``'s ``model`` names several models (a list, commas, ``all``)."""
    if isinstance(model, (list, tuple)):
        return True
    text = os.fspath(model)
    return not os.path.exists(text) and ("," in text or text.strip().lower() == "all")
