"""Stop a run before anything non-finite is trained on or written.

A label beyond float32's range (1e308 becomes inf), a starting checkpoint holding NaN or
infinite weights, a loss that overflows, weights that an optimizer step made non-finite: each
stops the run with :class:`~musiq.errors.MusiqError`; the files already written (the earlier
epochs' checkpoints, ``best.npz``, the resume state) are kept as they were and the output is
not written.
"""
from __future__ import annotations

import os
from typing import Iterable, Mapping

import numpy as np
import torch

from ..errors import MusiqError
from ..evaluation.labels import LabelItem

#: Largest label magnitude accepted (labels are trained in float32).
MAX_LABEL = float(np.finfo(np.float32).max)


def check_labels(items: Iterable[LabelItem], file: str | os.PathLike) -> None:
    """Refuse a label (MOS or distribution value) that is not a finite float32 number."""
    for it in items:
        values = [it.mos] + list(it.distribution if it.distribution is not None else [])
        for v in values:
            if not (np.isfinite(v) and abs(v) <= MAX_LABEL):
                raise MusiqError(f"{file} line {it.line}: label {v:g} for {it.path.name} is "
                                 f"not a finite float32 number (at most {MAX_LABEL:.3g})")


def nonfinite_parameters(named: Iterable[tuple[str, torch.Tensor | np.ndarray]]) -> list[str]:
    """Names of the tensors/arrays holding a NaN or an infinity."""
    bad = []
    for name, t in named:
        ok = bool(torch.isfinite(t).all()) if isinstance(t, torch.Tensor) \
            else bool(np.isfinite(t).all())
        if not ok:
            bad.append(name)
    return bad


def _names(bad: list[str]) -> str:
    return ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")


def check_init(model: torch.nn.Module, source: str) -> None:
    """Refuse a starting checkpoint whose weights are not all finite."""
    bad = nonfinite_parameters(model.named_parameters())
    if bad:
        raise MusiqError(f"--init {source}: non-finite weights (NaN or infinity) in "
                         f"{_names(bad)}; nothing to train from")


def check_loss(loss: float, epoch: int, batch: int, kept: str) -> None:
    """Stop when a batch's loss is NaN or infinite (the step is not taken)."""
    if not np.isfinite(loss):
        raise MusiqError(f"epoch {epoch}, batch {batch}: the loss is {loss} (diverged: try a "
                         f"lower --lr or check the labels); stopped, {kept}")


def check_params(params: Mapping[str, np.ndarray], epoch: int, kept: str) -> None:
    """Stop before writing an epoch whose weights are not all finite."""
    bad = nonfinite_parameters(params.items())
    if bad:
        raise MusiqError(f"epoch {epoch}: non-finite weights in {_names(bad)} (diverged: try "
                         f"a lower --lr); stopped, {kept}")
