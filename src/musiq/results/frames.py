"""Videos in tables: one row per video (the default), or one per frame (``--per-frame``).

Per video, a row (:class:`~musiq.results.rows.Prediction`) holds the pooled ``score`` with
the columns :data:`~musiq.results.columns.VIDEO_COLUMNS` (``frames``, ``spread``; empty for
images). Per frame, each frame of a video is a row: :data:`~musiq.results.columns.
FRAME_COLUMNS` (``frame``, ``time`` in seconds) follow ``path``, then ``score``, ``error`` and
the kind's own columns (AVA's distribution, ImageNet's classes) of that frame; the video's
``error`` (a truncated file, say) is repeated on each of its rows, and an image or a failed
video is one row with ``frame`` and ``time`` empty. Frame rows carry no ``logits`` (frame
scores do not keep them).
"""
from __future__ import annotations

import dataclasses

from .rows import Prediction

__all__ = ["frame_rows", "frame_predictions"]

_EXTRAS = ("distribution", "std", "top5")


def frame_predictions(p: Prediction) -> list[tuple[Prediction, dict | None]]:
    """The rows of ``p`` in the per-frame layout: ``(row, {"frame", "time"})`` per frame of a
    video, or ``(p, None)`` alone for an image or a video without frame scores."""
    if not p.frame_scores:
        return [(p, None)]
    bare = dataclasses.replace(p, logits=None, frames=None, spread=None, frame_scores=None)
    return [(dataclasses.replace(bare, score=f.get("score"),
                                 **{k: f.get(k) for k in _EXTRAS}),
             {"frame": f.get("frame"), "time": f.get("time")}) for f in p.frame_scores]


def frame_rows(p: Prediction) -> list[dict]:
    """The per-frame rows of one result as dicts keyed by column name (``path``, ``frame``,
    ``time``, ``score``, ``error``, ``logits``, ``distribution``, ``std``, ``top5``)."""
    out = []
    for row, frame in frame_predictions(p):
        out.append({"path": row.source, **(frame or {"frame": None, "time": None}),
                    "score": row.score, "error": row.error, "logits": row.logits,
                    **{k: getattr(row, k) for k in _EXTRAS}})
    return out
