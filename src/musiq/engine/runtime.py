"""The engine: packed tokens in, logits out, on one :class:`~musiq.engine.plan.Plan`.

:class:`Engine` owns the network on its device and everything between tokens and logits:
the precision (fp32 exact with TF32 off; bf16/fp16 autocast), the patch stem's chunking and
compiled shape buckets, staging decoded pixels to the device and tokenising them there, and
the runtime (the torch network, or ONNX Runtime on the exported graph). The Scorer, the
service's batcher, training validation, explain, the Ray actors and the benchmarks all run
their forward passes through it.
"""
from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ..failures import describe_failure
from ..tokens.preprocess import Tokens
from ..tokens.preprocessor import Prepared
from .plan import Plan, exact_fp32

if TYPE_CHECKING:  # torch is imported where the torch network runs, not before
    import torch

    from ..network.factory import ModelFile
    from ..network.model import Musiq
    from ..tokens.packed import PackedBatch
    from .staging import PinnedStaging

__all__ = ["Engine", "Failure"]


class Failure(str):
    """An image's error text, where an engine result would be its logits row."""


class Engine:
    """Forward passes of ``model`` as ``plan`` says; ``checkpoint`` is the file the weights
    came from (the converted runtimes cache their conversion by it).

    ``model`` is the network, or a :class:`~musiq.network.factory.ModelFile` (read, not built)
    whose network is built on first use of :attr:`model`: a runtime with a cached conversion
    scores without it, so such a run never imports torch.
    """

    def __init__(self, model: "Musiq | ModelFile", plan: Plan,
                 checkpoint: Path | None = None) -> None:
        self.plan = plan
        self._file = model if hasattr(model, "build") else None
        self._model = None if self._file is not None else self._place(model)
        self._building = threading.Lock()
        self._staging: PinnedStaging | None = None
        self._bucketed = False
        if plan.compile:
            self.compile_stem()
        self.runtime = self._start_runtime(checkpoint)

    def _place(self, model: "Musiq") -> "Musiq":
        model = model.to(self.device).eval()
        model.stem_chunk = max(model.stem_chunk, self.plan.stem_chunk)
        return model

    @property
    def model(self) -> "Musiq":
        """The torch network on the plan's device (built now if it was only read)."""
        if self._model is None:
            import torch
            # One build, whichever thread asks first; never as inference tensors, even when
            # first asked inside ``inference_mode`` (training and gradients need real ones).
            with self._building, torch.inference_mode(False):
                if self._model is None:
                    self._model = self._place(self._file.build())  # type: ignore[union-attr]
        return self._model

    @property
    def weights(self) -> "Musiq | ModelFile":
        """The network if it is built, else the file it will be built from."""
        return self._model if self._model is not None else self._file  # type: ignore

    @property
    def device(self) -> "torch.device":
        return self.plan.torch_device

    @property
    def staging(self) -> "PinnedStaging":
        if self._staging is None:
            from .staging import PinnedStaging
            self._staging = PinnedStaging(self.device)
        return self._staging

    def _start_runtime(self, checkpoint: Path | None):
        """The runtime object (``logits(tokens)``), or None for the torch network. Under
        ``backend="auto"`` a runtime that fails to start is named in one line and torch runs
        (the plan then says so)."""
        from .runtimes import make, notice
        if self.plan.runtime == "torch":
            return None
        try:
            return make(self.plan.runtime, self.weights, lambda: self.model,
                        checkpoint, self.plan.precision, self.plan.threads)
        except Exception as e:
            if not self.plan.runtime_auto:
                raise
            notice(f"{self.plan.runtime} could not run this model ({type(e).__name__}: "
                   f"{str(e).splitlines()[0] if str(e) else ''}): running torch")
            self.plan = replace(self.plan, runtime="torch")
            return None

    def compile_stem(self) -> None:
        """``torch.compile`` the patch stem: it fuses the GroupNorm/ReLU/casts that bound a
        GPU (3x in bf16 on an H200, docs/performance.md). Patch counts are padded to a few
        buckets, so it compiles a few shapes once; the first batch pays the compile."""
        import torch
        self.model.stem = torch.compile(self.model.stem, dynamic=False)
        self._bucketed = True

    # -- torch ---------------------------------------------------------------------------
    def embed(self, batch: "PackedBatch") -> "torch.Tensor":
        """Token embeddings; with a compiled stem the patches are padded to a bucket (a power
        of two from 256, then multiples of the stem chunk)."""
        n = batch.patches.shape[0]
        if not self._bucketed:
            return self.model.embed(batch)
        chunk = self.model.stem_chunk
        size = 256
        while size < min(n, chunk):
            size *= 2
        if n > chunk:
            size = -(-n // chunk) * chunk
        if size > n:
            batch = batch.padded(size - n)
        return self.model.embed(batch)[:n]

    def forward(self, batch: "PackedBatch",
                on_block: "Callable[[int, torch.Tensor], None] | None" = None
                ) -> "torch.Tensor":
        """``(B, num_classes)`` logits of a packed batch already on the device, in the plan's
        precision; differentiable (no ``inference_mode`` here). The head always runs in
        float32, so a reduced precision never rounds the score itself. ``on_block(i, x)``
        sees each encoder block's input (for attention maps; see :meth:`Musiq.encode`)."""
        import torch
        m = self.model
        if self.plan.precision == "fp32":
            with exact_fp32(self.device):
                return m.head(m.encode(self.embed(batch), batch.lengths, on_block))
        dtype, kind = self.plan.dtype, self.device.type
        if kind == "cpu":
            # On CPU the stem's GroupNorms and casts are slower in bf16 than the convolutions
            # gain: the stem stays fp32 and only the encoder runs in reduced precision.
            x = self.embed(batch)
            with torch.autocast(kind, dtype=dtype):
                cls = m.encode(x, batch.lengths, on_block)
        else:
            with torch.autocast(kind, dtype=dtype):
                cls = m.encode(self.embed(batch), batch.lengths, on_block)
        return m.head(cls.float())

    def features(self, tokens: Sequence[Tokens]) -> np.ndarray:
        """``(B, hidden)`` float32 pre-head features (the normalised CLS outputs) of several
        tokenised images, by the torch network in fp32: what the head reads (e.g. for a
        linear probe or retrieval)."""
        import torch

        from ..tokens.packed import PackedBatch
        batch = PackedBatch.from_tokens(tokens).to(self.device)
        with torch.inference_mode(), exact_fp32(self.device):
            cls = self.model.encode(self.embed(batch), batch.lengths)
        return cls.float().cpu().numpy()

    # -- tokens or pixels in, logits out -----------------------------------------------------
    def logits(self, tokens: Sequence[Tokens]) -> np.ndarray:
        """``(B, num_classes)`` float32 logits of several tokenised images in one pass."""
        cap = getattr(self.runtime, "max_tokens", None)  # e.g. linear attention memory
        if self.runtime is not None and (cap is None or max(map(len, tokens)) <= cap):
            # One image per call: a padded batch would change an image's float32 rounding
            # with its batch-mates, and a score must not depend on what it was batched with.
            return np.concatenate([self.runtime.logits([t]) for t in tokens])
        import torch

        from ..tokens.packed import PackedBatch
        with torch.inference_mode():
            batch = PackedBatch.from_tokens(tokens).to(self.device)
            return self.forward(batch).float().cpu().numpy()

    def launch_pixels(self, pixels: Sequence[np.ndarray],
                      sources: Sequence[str] | None = None) -> "torch.Tensor":
        """Launch one pass from decoded pixels: staged (pinned, non-blocking on CUDA),
        tokenised on the device, run. The logits stay on the device (not yet read)."""
        on_device = self.staging.to_device(pixels)
        batch = self.plan.preprocessor.tokenize(on_device, list(sources) if sources else None)
        return self.forward(batch)

    def logits_of_pixels(self, pixels: Sequence[np.ndarray]) -> np.ndarray:
        """``(B, num_classes)`` float32 logits of decoded ``(H, W, 3)`` uint8 images,
        tokenised by torch on the device (equal to :meth:`logits` of their tokens)."""
        import torch
        with torch.inference_mode():
            return self.launch_pixels(pixels).float().cpu().numpy()

    # -- prepared images: a pass that may fail ------------------------------------------------
    def launch(self, batch: Sequence[Prepared]) -> object:
        """Start one pass over prepared images: device logits (pixels on the torch path), or
        the finished rows (see :meth:`run`) when the pass runs at once or fails."""
        if batch[0].pixels is None:
            return self.run(batch)
        try:
            import torch
            with torch.inference_mode():
                return self.launch_pixels([item.pixels for item in batch],  # type: ignore
                                          [item.source for item in batch])
        except Exception:  # the pass is run again image by image, which names the failure
            return self.run(batch)

    def finish(self, batch: Sequence[Prepared], launched: object) -> list:
        """The rows of a launched pass: a float32 logits row or a :class:`Failure` each."""
        if isinstance(launched, list):
            return launched
        try:
            return list(launched.float().cpu().numpy())  # type: ignore[attr-defined]
        except Exception:
            return self.run(batch)

    def run(self, batch: Sequence[Prepared]) -> list:
        """One pass now: a logits row per image; if the pass fails (out of memory, say), each
        image alone, and an image that still fails gets a :class:`Failure`."""
        try:
            if batch[0].pixels is not None:
                rows = self.logits_of_pixels([item.pixels for item in batch])  # type: ignore
            else:
                rows = self.logits([item.tokens for item in batch])  # type: ignore[misc]
            return list(rows)
        except Exception as e:
            if len(batch) > 1:
                return [row for item in batch for row in self.run([item])]
            return [Failure(describe_failure(e, "the forward pass"))]
