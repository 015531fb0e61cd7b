"""The OpenVINO runtime: MUSIQ's encoder in OpenVINO on CPU, fp32 (exact) or bf16.

The network up to the CLS token's last hidden state is converted from the PyTorch model
(``openvino.convert_model``; no ONNX step), once per checkpoint, and cached on disk
(:mod:`musiq.engine.runtime_cache`: a corrupt or stale file is rebuilt, never used). The final
LayerNorm and the head run here in float32 NumPy, in every precision, so a score is never
rounded to bf16. ``precision="bf16"`` compiles with OpenVINO's
``INFERENCE_PRECISION_HINT=bf16`` (the whole encoder, stem included, in bf16 on CPUs with
AVX512-BF16 or AMX); fp32 compiles with ``f32`` and equals the torch path within float32
rounding.
"""
from __future__ import annotations

import copy
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import MusiqError
from ..tokens.preprocess import Tokens
from .runtime_cache import CacheKey, cached, read_parts, write_parts
from .runtime_cache import cache_dir as default_cache_dir

NAME = "openvino"
_HINTS = {"fp32": "f32", "bf16": "bf16"}
#: Revision of the converted graph, part of the cache key: bumped when :func:`convert` changes
#: what it builds, so that a file converted by an earlier revision is not used.
GRAPH = 4


def available() -> str | None:
    """None when OpenVINO can be used here, else why not (one phrase)."""
    try:
        import openvino  # noqa: F401
    except Exception as e:  # ImportError, or a broken native library
        return f"OpenVINO is not installed ({type(e).__name__}: {e})"
    return None


def cpu_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin can run bf16 natively here (AVX512-BF16, AMX, ARM BF16)."""
    import openvino as ov
    try:
        caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # pragma: no cover - very old plugins
        return False
    return "BF16" in [str(c).upper() for c in caps]


def _group_norm_as_ops(norm):
    """``norm`` (an ``nn.GroupNorm``, its parameters shared) as reshape, mean and
    multiply-add: the same arithmetic. OpenVINO's CPU plugin runs its GroupNormalization op as
    layout changes around an MVN and a separate per-channel multiply; these plain ops let it
    keep the stem's layout, which made the whole network 15 % faster in fp32 and 25 % in bf16
    here (docs/performance.md)."""
    import torch
    from torch import nn

    class GroupNormAsOps(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight, self.bias = norm.weight, norm.bias  # shared, not copied
            self.groups, self.eps = norm.num_groups, norm.eps

        def forward(self, x):
            n, c, h, w = x.shape
            xg = x.reshape(n, self.groups, -1)
            centred = xg - xg.mean(-1, keepdim=True)
            var = (centred * centred).mean(-1, keepdim=True)
            y = (centred * torch.rsqrt(var + self.eps)).reshape(n, c, h, w)
            return y * self.weight[:, None, None] + self.bias[:, None, None]

    return GroupNormAsOps()


def _swap_group_norms(module):
    """A shallow copy of ``module`` whose ``nn.GroupNorm`` descendants are
    :func:`_group_norm_as_ops` (``module`` itself is not changed)."""
    from torch import nn
    new = copy.copy(module)
    new._modules = {}
    for name, child in module._modules.items():
        if isinstance(child, nn.GroupNorm):
            child = _group_norm_as_ops(child)
        elif child is not None and any(isinstance(m, nn.GroupNorm) for m in child.modules()):
            child = _swap_group_norms(child)
        new._modules[name] = child
    return new


def _features_module(model):
    """``tokens (B, T, 3075) -> (B, hidden)``: :meth:`Musiq.forward_padded` with the final
    LayerNorm and head removed and the stem's GroupNorms as plain ops (shallow copies: the
    model itself is not changed)."""
    from torch import nn

    class Features(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            inner = copy.copy(model)
            inner._modules = dict(model._modules)
            inner._modules["stem"] = _swap_group_norms(model.stem)
            inner.head, inner.encoder_norm = nn.Identity(), nn.Identity()
            self.inner = inner

        def forward(self, tokens):
            return self.inner.forward_padded(tokens)

    return Features().eval()


def convert(model) -> list[bytes]:
    """The encoder of ``model`` as OpenVINO IR: ``[xml, weights]`` bytes."""
    import warnings

    import openvino as ov
    import torch

    from .export import sample_tokens
    example = torch.from_numpy(sample_tokens(batch=2, tokens=24))
    module = _features_module(model.float().cpu().eval())
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about constant Python values
        # One run first: the standardised conv weights are cached then, so the trace and
        # its check see the same constants.
        module(example)
        ir = ov.convert_model(module,
                              example_input=example,
                              input=[ov.PartialShape([-1, -1, example.shape[2]])])
    with tempfile.TemporaryDirectory(prefix="musiq-ov-") as tmp:
        xml = Path(tmp) / "model.xml"
        ov.save_model(ir, str(xml), compress_to_fp16=False)
        return [xml.read_bytes(), xml.with_suffix(".bin").read_bytes()]


class OpenVinoBackend:
    """Forward passes in OpenVINO: ``logits(tokens) -> (B, num_classes)`` float32.

    ``model``: the torch network, or its :class:`~musiq.network.factory.ModelFile` (read, not
    built: with a cached conversion nothing here imports torch); ``network()``: the torch
    network, called only to convert (default: ``model`` itself, else the file built);
    ``checkpoint``: the file the weights came from (its SHA-256 keys the cache);
    ``precision``: ``fp32`` or ``bf16``; ``threads``: inference threads (default: one per
    core); ``cache_dir``: overrides :func:`musiq.engine.runtime_cache.cache_dir`.
    """

    name = NAME
    #: Longest image (tokens) run here: its attention materialises (tokens + 1)^2 scores per
    #: head (4000 tokens: 1.6 GB peak); longer images (above ~10 MP) run on torch, whose
    #: flash kernel keeps memory linear (6000x4000 under 3 GB).
    max_tokens = 4096

    def __init__(self, model, checkpoint: Path | None, precision: str = "fp32",
                 threads: int | None = None, cache_dir: Path | None = None,
                 network: Callable[[], Any] | None = None) -> None:
        import openvino as ov

        from .._version import __version__
        from ..network.checkpoint import file_sha256
        if checkpoint is None:
            raise MusiqError("the openvino backend needs a model loaded from a file "
                             "(musiq.load); a model changed in memory runs on torch")
        if precision not in _HINTS:
            raise MusiqError(f"the openvino backend runs fp32 or bf16, not {precision}")
        sha = file_sha256(checkpoint)
        config = {"INFERENCE_PRECISION_HINT": _HINTS[precision]}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        core = ov.Core()
        # A warm load imports the compiled model (~0.2 s) instead of compiling the IR
        # (~0.4 s); the compiled form is specific to this CPU, which is in its key.
        compiled_key = CacheKey(sha, __version__, NAME + "-compiled",
                                f"{ov.get_version()} graph {GRAPH} {_cpu_name(core)}",
                                precision)
        key = CacheKey(sha, __version__, NAME, f"{ov.get_version()} graph {GRAPH}", precision)
        folder = cache_dir or default_cache_dir()
        # ``path``: the compiled model (what a warm load reads); ``ir_path``: the converted
        # network it is compiled from (read only when the compiled form is missing).
        self.path, self.ir_path = folder / compiled_key.filename(), folder / key.filename()
        self.compiled, self._blob = _import_compiled(core, compiled_key, config, self.path)
        if self.compiled is None:
            t0 = time.perf_counter()
            if network is None:
                network = model.build if hasattr(model, "build") else (lambda: model)
            (xml, weights), _, built = cached(key, lambda: convert(network()), folder)
            if built:
                print(f"musiq: converted {Path(checkpoint).name} for OpenVINO in "
                      f"{time.perf_counter() - t0:.1f} s (once; cached in {folder})",
                      file=sys.stderr, flush=True)
            self._weights = np.frombuffer(weights, dtype=np.uint8)  # kept alive: shared
            ir = core.read_model(model=bytes(xml), weights=ov.Tensor(self._weights))
            self.compiled = core.compile_model(ir, "CPU", config)
            _store_compiled(self.compiled, compiled_key, self.path)
        self.precision = precision
        gamma, beta, eps, kernel, bias = _final_norm_and_head(model)
        self._ln = (gamma, beta, np.float32(eps))
        self._head = (kernel, bias)

    def features(self, tokens: np.ndarray) -> np.ndarray:
        """``(B, T, 3075)`` padded tokens -> ``(B, hidden)`` CLS states before the final norm."""
        x = np.ascontiguousarray(tokens, dtype=np.float32)
        return np.asarray(self.compiled(x)[0], dtype=np.float32)

    def logits(self, tokens: Sequence[Tokens]) -> np.ndarray:
        from ..tokens.padded import pad_tokens
        h = self.features(pad_tokens(tokens))
        gamma, beta, eps = self._ln
        mu = h.mean(-1, keepdims=True, dtype=np.float32)
        var = np.square(h - mu).mean(-1, keepdims=True, dtype=np.float32)
        y = (h - mu) / np.sqrt(var + eps) * gamma + beta
        w, b = self._head
        return (y @ w + b).astype(np.float32, copy=False)


def _cpu_name(core) -> str:
    try:
        return str(core.get_property("CPU", "FULL_DEVICE_NAME"))
    except Exception:  # pragma: no cover - every CPU plugin has it
        return "cpu"


def _import_compiled(core, key: CacheKey, config: dict, path: Path):
    """``(compiled model, its blob)`` cached at ``path`` under ``key`` (None, None when
    absent, stale, corrupt or refused by this OpenVINO: it is then compiled again)."""
    import openvino as ov
    parts = read_parts(path, key)
    if parts is None:
        return None, None
    try:
        blob = np.frombuffer(parts[0], dtype=np.uint8)  # kept alive with the model
        return core.import_model(ov.Tensor(blob), "CPU", config), blob
    except Exception:  # another plugin build, say: compile instead
        return None, None


def _store_compiled(compiled, key: CacheKey, path: Path) -> None:
    """Keep the compiled model for the next load; a cache that cannot be written only costs
    the next load a compile."""
    try:
        write_parts(path, key, [compiled.export_model().getvalue()])
    except Exception:
        pass


def _final_norm_and_head(model) -> tuple:
    """``(gamma, beta, eps, kernel (hidden, classes), bias)`` float32, from a
    :class:`~musiq.network.factory.ModelFile` or a torch network."""
    if hasattr(model, "final_norm_and_head"):
        return model.final_norm_and_head()
    norm, head = model.encoder_norm, model.head
    return (_np(norm.weight), _np(norm.bias), norm.eps, _np(head.weight).T.copy(),
            _np(head.bias))


def _np(p) -> np.ndarray:
    return p.detach().float().cpu().numpy().copy()
