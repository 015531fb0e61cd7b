"""Inference backends the :class:`~musiq.scorer.Scorer` can run its forward passes on.

``auto`` (the default) picks ``openvino`` on CPU for a checkpoint file in fp32 or bf16 (the
fastest exact runtime measured here, docs/performance.md), and ``torch`` on CUDA, with
``--compile``, torch preprocessing, fp16 or a model not loaded from a file; where OpenVINO
cannot run (not installed, conversion failed) it says so in one line and runs torch.
``openvino``: :mod:`musiq.engine.openvino`. ``torch`` is the PyTorch model itself (always
used by ``score_tensor``, training and explain). ``onnxruntime`` runs the same network
exported to ONNX (:mod:`musiq.engine.export`) in ONNX Runtime on CPU: fp32, equal to torch within
float32 rounding and faster on CPU (docs/performance.md). The exported file is cached, keyed
by the checkpoint file, so only the first load pays the export (~5 s).
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ..errors import MusiqError
from ..tokens.preprocess import Tokens

if TYPE_CHECKING:
    from ..network.factory import ModelFile
    from ..network.model import Musiq

BACKENDS = ("torch", "onnxruntime", "openvino")
#: What ``--backend`` accepts: a runtime, or ``auto``.
CHOICES = ("auto", *BACKENDS)


def onnx_cache_dir() -> Path:
    """Where exported files are kept: ``$MUSIQ_ONNX_CACHE`` or the user cache."""
    env = os.environ.get("MUSIQ_ONNX_CACHE")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir
    return Path(user_cache_dir("musiq")) / "onnx"


def _cache_key(checkpoint: Path) -> str:
    from .._version import __version__
    st = checkpoint.stat()
    text = f"{checkpoint.resolve()}|{st.st_size}|{st.st_mtime_ns}|{__version__}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class OnnxRuntimeBackend:
    """Forward passes in ONNX Runtime: ``logits(tokens) -> (B, num_classes)`` float32.

    ``model`` is exported to ``onnx_cache_dir()`` on first use of ``checkpoint`` (the file
    written to a temporary name, then renamed: concurrent loads never read half a file).
    """

    name = "onnxruntime"

    def __init__(self, model: "Musiq", checkpoint: Path | None, threads: int | None = None,
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
            export_onnx(model, path, check=False)  # written aside, renamed when whole
        self.path = path
        self.session = OnnxRuntimeModel(path, threads=threads)

    def logits(self, tokens: Sequence[Tokens]) -> np.ndarray:
        from ..tokens.padded import pad_tokens
        return self.session.logits(pad_tokens(tokens))


def notice(message: str) -> None:
    """One line on stderr: what runs instead of what was asked, and why."""
    print(f"musiq: {message}", file=sys.stderr, flush=True)


def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16, AMX-BF16, ARM BF16): OpenVINO's
    view where it is installed, else the CPU flags (True when they cannot be read)."""
    from .openvino import available
    from .openvino import cpu_has_bf16 as openvino_has_bf16
    if available() is None:
        return openvino_has_bf16()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True
    flags = set(text.split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def choose(requested: str, device_type: str, precision: str, preprocess: str,
           compiled: bool, checkpoint: Path | None) -> str:
    """The runtime ``auto`` stands for (other names are returned as they are); a notice
    when the fast runtime is skipped for a reason the user may not expect."""
    if requested != "auto":
        return requested
    if device_type != "cpu" or compiled or preprocess == "torch" or checkpoint is None:
        return "torch"
    if precision == "fp16":
        notice("fp16 runs on torch on CPU (the fast runtime does fp32 and bf16)")
        return "torch"
    from .openvino import available
    why = available()
    if why:
        notice(f"{why}: running torch (slower on CPU)")
        return "torch"
    return "openvino"


def make(name: str, weights: "Musiq | ModelFile", network: Callable[[], "Musiq"],
         checkpoint: Path | None, precision: str = "fp32", threads: int | None = None):
    """A runtime object with ``name`` and ``logits(tokens) -> (B, C)``; None for torch.
    ``weights``: the network or its file, read (the head's parameters come from it);
    ``network()``: the torch network, built when a conversion needs it."""
    if name == "torch":
        return None
    if name == "onnxruntime":
        return OnnxRuntimeBackend(network(), checkpoint, threads=threads)
    from .openvino import OpenVinoBackend
    return OpenVinoBackend(weights, checkpoint, precision=precision, threads=threads,
                           network=network)
