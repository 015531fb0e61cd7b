"""What a model's logits mean: one table of output kinds.

Each :class:`OutputKind` says how one image's logits become its outputs (the score and the
extras), which output columns it has, the range of its score and whether lower is better.
The scorer, the writers, the service and training all read this table; none decides a kind
by itself.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from .architecture import KIND_BY_CLASSES
from .imagenet import class_name

if TYPE_CHECKING:
    import torch


def _host_array(logits) -> np.ndarray:
    """Logits as a float32 NumPy array (a torch tensor is detached and moved to the host)."""
    if hasattr(logits, "detach"):
        logits = logits.detach().float().cpu().numpy()
    return np.asarray(logits, np.float32)


def _mos(logits: np.ndarray) -> dict:
    return {"score": float(logits[0])}


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    p = np.exp(z - z.max())
    return p / p.sum()


def _distribution(logits: np.ndarray) -> dict:
    """Mean and std of a distribution over the scores 1..K (float64 maths)."""
    p = _softmax(logits)
    bins = np.arange(1, len(p) + 1, dtype=np.float64)
    mean = float((p * bins).sum())
    return {"score": mean, "distribution": [float(v) for v in p],
            "std": float(math.sqrt(max((p * (bins - mean) ** 2).sum(), 0.0)))}


def _classes(logits: np.ndarray) -> dict:
    """Top-1 probability as the score; the five best classes."""
    z = logits.astype(np.float64)
    p = _softmax(logits)
    top = np.argsort(-z, kind="stable")[:5]
    top5 = [{"class": int(i), "probability": float(p[i]), "logit": float(z[i])} for i in top]
    if len(p) == 1000:  # the ImageNet head: its ILSVRC-2012 class names
        for t in top5:
            t["name"] = class_name(t["class"])
    return {"score": float(p[top[0]]), "top5": top5}


@dataclass(frozen=True)
class OutputKind:
    """One kind of model output.

    ``name``: ``mos``, ``distribution``, ``imagenet`` or ``logits``; ``num_classes``: the head
    size it belongs to (None: any); ``score_range``: the score's range in its units (None:
    unbounded); ``lower_better``: False for every MUSIQ model (higher = better quality);
    ``extras``: the outputs besides ``score`` and ``logits`` (``distribution``/``std``,
    ``top5``); ``csv_columns``: the columns a table row adds after ``path, score, error``;
    ``score_meaning``: what the score is, in words.
    """

    name: str
    num_classes: int | None
    score_range: tuple[float, float] | None
    lower_better: bool
    extras: tuple[str, ...]
    csv_columns: tuple[str, ...]
    score_meaning: str
    _interpret: Callable[[np.ndarray], dict]

    def interpret(self, logits: "np.ndarray | Sequence | torch.Tensor") -> "dict | list[dict]":
        """``score``, ``logits`` and this kind's extras from logits.

        One image's ``(C,)`` logits give one dict; a model's ``(N, C)`` output (``N`` >= 1,
        e.g. ``net(batch)``: a tensor is detached and copied to the host) gives a list of N
        dicts, one per image, in order.
        """
        array = _host_array(logits)
        if array.ndim == 1 and array.shape[0] >= 1:
            return self._interpret_one(array)
        if array.ndim == 2 and array.shape[1] >= 1:
            return [self._interpret_one(row) for row in array]
        raise ValueError(f"logits must be (C,) for one image or (N, C) for N images; got shape "
                         f"{tuple(array.shape)}")

    def _interpret_one(self, logits: np.ndarray) -> dict:
        fn = _mos if logits.shape[0] == 1 else self._interpret
        return {"logits": [float(v) for v in logits], **fn(logits)}

    def csv_values(self, out: dict) -> list:
        """Values of :attr:`csv_columns` from :meth:`interpret`'s output (None where absent)."""
        if self.name == "distribution":
            dist = out.get("distribution") or [None] * 10
            return [out.get("std"), *dist]
        if self.name == "imagenet":
            top = out.get("top5") or []
            return [t["class"] for t in top] + [None] * (5 - len(top))
        return []


KINDS: dict[str, OutputKind] = {k.name: k for k in [
    OutputKind("mos", 1, None, False, (), (), "mean opinion score", _mos),
    OutputKind("distribution", 10, (1.0, 10.0), False, ("distribution", "std"),
               ("std", *(f"p{i}" for i in range(1, 11))),
               "mean of the 10-bin score distribution", _distribution),
    OutputKind("imagenet", 1000, (0.0, 1.0), False, ("top5",),
               tuple(f"top{i}_class" for i in range(1, 6)), "top-1 class probability",
               _classes),
    OutputKind("logits", None, None, False, ("top5",), (), "top-1 class probability", _classes),
]}

#: Every extra output any kind has (what the service passes on besides the score).
EXTRA_KEYS = tuple(dict.fromkeys(e for k in KINDS.values() for e in k.extras))


def output_kind(kind: str | int) -> OutputKind:
    """The kind by name (``mos`` ...) or by head size (1, 10, 1000; another size: ``logits``)."""
    if isinstance(kind, int):
        kind = KIND_BY_CLASSES.get(kind, "logits")
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown output kind {kind!r}; known: {', '.join(KINDS)}") from None


def interpret(logits: np.ndarray, kind: str) -> "dict | list[dict]":
    """Score and extra outputs from one image's ``(C,)`` logits (float64 maths on float32
    logits); ``(N, C)`` logits give a list, one dict per image."""
    return output_kind(kind).interpret(logits)
