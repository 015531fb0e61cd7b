"""Read a scores file written by ``musiq score --output``: CSV, JSON lines, JSON, Parquet.

The report reads exactly what the writer wrote, through the one codec
(:func:`musiq.results.read.read_predictions`): the CSV formula guard removed, quoted names
with newlines whole, names that are not UTF-8 as written.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from ..results.read import read_predictions


@dataclass
class ScoreRow:
    """One image's result: ``score`` None and ``error`` set when it failed;
    ``distribution``: AVA's 10 bin probabilities (scores 1..10) when present."""

    path: str
    score: float | None
    error: str | None
    std: float | None = None
    distribution: list[float] | None = None
    #: A video's ``[time, score]`` per frame (JSON/JSONL ``frame_scores``), else None.
    curve: list[list[float]] | None = None


def read_scores(path: str | os.PathLike) -> list[ScoreRow]:
    """All rows of a scores file, in file order (raises :class:`MusiqError` naming the file
    and row for anything that is not a result)."""
    return [ScoreRow(p.source, p.score, p.error, p.std, p.distribution,
                     _curve(p.frame_scores)) for p in read_predictions(path)]


def _curve(frames: list[dict] | None) -> list[list[float]] | None:
    """``[time, score]`` pairs of a video's frames (the frame's position for a missing time;
    frames without a score left out)."""
    out = []
    for i, f in enumerate(frames or []):
        s, t = f.get("score"), f.get("time")
        if isinstance(s, (int, float)) and not isinstance(s, bool):
            out.append([float(i) if not isinstance(t, (int, float)) else float(t), float(s)])
    return out or None
