"""Export MUSIQ to ONNX: the padded forward on the original's token layout.

The graph takes ``tokens``: float32 ``(batch, tokens, 3075)`` (3072 patch values, hashed
position, scale id, mask; see docs/onnx.md) and returns ``logits``: float32
``(batch, num_classes)``; both leading axes are dynamic. It is :meth:`Musiq.forward_padded`
traced, so the file computes exactly what the PyTorch model does.

Needs the ``onnx`` extra (onnx and onnxruntime; :func:`musiq.extras.install_hint`).

Exporter: torch's TorchScript-based ``torch.onnx.export(..., dynamo=False)``. It traces the
model as it runs (the standardised conv weights, cached at inference, become constants) and
needs nothing beyond onnx. The ``torch.export``-based exporter (torch's default) refuses this
model's weight cache (it reads ``data_ptr`` of fake tensors) and needs onnxscript.
"""
from __future__ import annotations

import contextlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..atomic import replace_with
from ..errors import MusiqError
from ..network.architecture import OFFICIAL
from ..network.model import Musiq
from ..tokens.padded import pad_tokens  # noqa: F401  (imported from here before)

if TYPE_CHECKING:
    from ..tokens.preprocess import Tokens

#: Opset of the written file (ONNX Runtime >= 1.14 runs it).
OPSET = 18
INPUT_NAME, OUTPUT_NAME = "tokens", "logits"
TOKEN_FEATURES = OFFICIAL.token_features + 3  #: 3072 pixel values, position, scale, mask


class PaddedMusiq(nn.Module):
    """``tokens (B, T, 3075)`` -> ``logits (B, classes)``: :meth:`Musiq.forward_padded`."""

    def __init__(self, model: Musiq) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.forward_padded(tokens)


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how well ONNX Runtime reproduces PyTorch.

    ``max_abs_diff``: largest absolute logit difference, ONNX Runtime vs PyTorch fp32, on the
    sample (None when the check was skipped); ``sample_shape``: the tokens it ran on.
    """

    path: Path
    num_classes: int
    max_abs_diff: float | None
    sample_shape: tuple[int, ...]
    size_bytes: int


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        from ..extras import needs
        raise MusiqError(needs("ONNX export", "onnx")) from None


def sample_tokens(batch: int = 2, tokens: int = 24, seed: int = 0) -> np.ndarray:
    """Random but well-formed tokens ``(batch, tokens, 3075)`` float32, the last rows of the
    second and later images padding (mask 0), to exercise the mask."""
    rng = np.random.default_rng(seed)
    x = np.zeros((batch, tokens, TOKEN_FEATURES), np.float32)
    x[..., :3072] = rng.uniform(-1, 1, (batch, tokens, 3072))
    x[..., 3072] = rng.integers(0, 100, (batch, tokens))
    x[..., 3073] = 0
    x[..., 3074] = 1
    for i in range(1, batch):
        x[i, tokens - tokens // (i + 2):, 3072:] = 0
        x[i, tokens - tokens // (i + 2):, :3072] = 0
    return x


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The TorchScript exporter warns about Python values it traces as constants (the conv
    padding of the fixed 32x32 patch): expected here, noise for a user."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def export_onnx(model: Musiq, output: str | os.PathLike, *, check: bool = True,
                sample: np.ndarray | None = None) -> ExportReport:
    """Write ``model`` as an ONNX file (input ``tokens``, output ``logits``, dynamic batch and
    token axes), then, when ``check``, run it in ONNX Runtime on ``sample`` (default
    :func:`sample_tokens`) and measure the largest logit difference from PyTorch.

    The file is written and checked under a temporary name beside ``output`` and renamed
    over it only when it passed (:func:`musiq.atomic.replace_with`): an interrupted or failed
    export leaves no file, or the previous one, at ``output``. A model with non-finite
    weights, or logits that are not finite on the sample, is refused."""
    _require_onnx()
    path = Path(output)
    if path.parent and not path.parent.exists():
        raise MusiqError(f"{path}: the folder {path.parent} does not exist")
    model = model.float().cpu().eval()
    bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise MusiqError(f"{path}: not written: the model has non-finite weights (NaN or "
                         f"infinity) in {', '.join(bad[:3])}"
                         + (f" and {len(bad) - 3} more" if len(bad) > 3 else ""))
    x = sample if sample is not None else sample_tokens()
    if x.ndim != 3 or x.shape[2] != TOKEN_FEATURES:
        raise MusiqError(f"sample tokens must be (B, T, {TOKEN_FEATURES}), not {x.shape}")
    wrapper = PaddedMusiq(model).eval()
    diff: list[float | None] = [None]

    def write(tmp: Path) -> None:
        with torch.no_grad(), _quiet(), contextlib.redirect_stdout(io.StringIO()):
            torch.onnx.export(
                wrapper, (torch.from_numpy(x),), str(tmp), opset_version=OPSET,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamo=False,
                dynamic_axes={INPUT_NAME: {0: "batch", 1: "tokens"}, OUTPUT_NAME: {0: "batch"}})
        if check:
            diff[0] = _check(wrapper, tmp, x, path)

    replace_with(path, write)
    return ExportReport(path=path, num_classes=model.variant.num_classes, max_abs_diff=diff[0],
                        sample_shape=tuple(x.shape), size_bytes=path.stat().st_size)


def _check(wrapper: PaddedMusiq, file: Path, x: np.ndarray, path: Path) -> float:
    """Largest logit difference ONNX Runtime vs PyTorch on ``x``; raises when either side's
    logits are not all finite (a NaN difference would compare as passing)."""
    with torch.inference_mode():
        expected = wrapper(torch.from_numpy(x)).numpy()
    got = OnnxRuntimeModel(file).logits(x)
    for who, logits in (("PyTorch", expected), ("ONNX Runtime", got)):
        if not np.isfinite(logits).all():
            raise MusiqError(f"{path}: not written: {who} gives non-finite logits on the "
                             "check sample")
    return float(np.abs(got - expected).max())


class OnnxRuntimeModel:
    """An exported file in ONNX Runtime on CPU: ``logits(tokens (B, T, 3075)) -> (B, C)``.

    ``threads``: intra-op threads (default: ONNX Runtime's, one per core).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            from ..extras import needs
            raise MusiqError(needs("ONNX Runtime", "onnx")) from None
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own untyped errors
            raise MusiqError(f"{path}: not a loadable ONNX model: {str(e).splitlines()[0]}") \
                from None

    def logits(self, tokens: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(tokens, dtype=np.float32)
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
