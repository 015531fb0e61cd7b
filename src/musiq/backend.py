"""Inference backends the :class:`~musiq.scorer.Scorer` can run its forward passes on.

``torch`` (the default) is the PyTorch model itself. ``onnxruntime`` runs the same network
exported to ONNX (:mod:`musiq.export`) in ONNX Runtime on CPU: fp32, equal to torch within
float32 rounding and faster on CPU (docs/performance.md). The exported file is cached, keyed
by the checkpoint file, so only the first load pays the export (~5 s).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import MusiqError
from .model import Musiq
from .preprocess import Tokens

BACKENDS = ("torch", "onnxruntime")


def onnx_cache_dir() -> Path:
    """Where exported files are kept: ``$MUSIQ_ONNX_CACHE`` or the user cache."""
    env = os.environ.get("MUSIQ_ONNX_CACHE")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir
    return Path(user_cache_dir("musiq")) / "onnx"


def _cache_key(checkpoint: Path) -> str:
    from ._version import __version__
    st = checkpoint.stat()
    text = f"{checkpoint.resolve()}|{st.st_size}|{st.st_mtime_ns}|{__version__}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class OnnxRuntimeBackend:
    """Forward passes in ONNX Runtime: ``logits(tokens) -> (B, num_classes)`` float32.

    ``model`` is exported to ``onnx_cache_dir()`` on first use of ``checkpoint`` (the file
    written to a temporary name, then renamed: concurrent loads never read half a file).
    """

    name = "onnxruntime"

    def __init__(self, model: Musiq, checkpoint: Path | None, threads: int | None = None,
                 cache_dir: Path | None = None) -> None:
        from .export import OnnxRuntimeModel, export_onnx

        cache = cache_dir or onnx_cache_dir()
        if checkpoint is None:
            raise MusiqError("the onnxruntime backend needs a model loaded from a file")
        path = cache / f"musiq-{_cache_key(checkpoint)}.onnx"
        if not path.is_file():
            try:
                cache.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise MusiqError(f"{cache}: cannot create the ONNX cache folder: "
                                 f"{e.strerror or e}") from None
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            try:
                export_onnx(model, tmp, check=False)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        self.path = path
        self.session = OnnxRuntimeModel(path, threads=threads)

    def logits(self, tokens: Sequence[Tokens]) -> np.ndarray:
        from .export import pad_tokens
        return self.session.logits(pad_tokens(tokens))
