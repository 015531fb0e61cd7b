"""How video results are laid out in tables (CSV, Parquet): one row per video, or per frame.

Per video (the default), the row of :class:`~musiq.results.rows.Prediction` gains the
columns :data:`VIDEO_COLUMNS` (``frames``, ``spread``; empty for images) after the kind's
own. With ``--per-frame`` each frame is a row: :data:`FRAME_COLUMNS` (``frame``, ``time``)
follow ``path``, then ``score``, ``error`` and the kind's columns (AVA's distribution,
ImageNet's classes) of that frame; the video's ``error`` (a truncated file, say) is repeated
on each of its rows, and an image or a failed video is one row with ``frame`` and ``time``
empty. Frame rows carry no ``logits`` (frame_scores do not keep them).
"""
from __future__ import annotations

from .results.rows import Prediction

__all__ = ["VIDEO_COLUMNS", "FRAME_COLUMNS", "frame_rows"]

VIDEO_COLUMNS = ("frames", "spread")
FRAME_COLUMNS = ("frame", "time")
_EXTRAS = ("distribution", "std", "top5")


def frame_rows(p: Prediction) -> list[dict]:
    """The per-frame rows of one result, as dicts keyed by column name (``path``, ``frame``,
    ``time``, ``score``, ``error``, ``logits``, ``distribution``, ``std``, ``top5``)."""
    if not p.frame_scores:
        return [{"path": p.source, "frame": None, "time": None, "score": p.score,
                 "error": p.error, "logits": p.logits,
                 **{k: getattr(p, k) for k in _EXTRAS}}]
    return [{"path": p.source, "frame": f.get("frame"), "time": f.get("time"),
             "score": f.get("score"), "error": p.error, "logits": None,
             **{k: f.get(k) for k in _EXTRAS}} for f in p.frame_scores]
