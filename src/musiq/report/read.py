"""Read a scores file written by ``musiq score --output``: CSV, JSON lines, JSON, Parquet.

The report reads exactly what the writer wrote, through the one codec
(:func:`musiq.results.read.read_predictions`): the CSV formula guard removed, quoted names
with newlines whole, names that are not UTF-8 as written. A several-model file (issue 21)
gives rows whose ``models`` holds each model's result.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import MusiqError
from ..results.read import read_predictions
from ..results.rows import MultiPrediction, Prediction


@dataclass
class ScoreRow:
    """One image's result: ``score`` None and ``error`` set when it failed;
    ``distribution``: AVA's 10 bin probabilities (scores 1..10) when present.

    Several models: ``models`` is ``{name: that model's ScoreRow}`` in the file's order,
    ``score`` is None and ``error`` is the failure before any model ran (None for a
    one-model file's rows)."""

    path: str
    score: float | None
    error: str | None
    std: float | None = None
    distribution: list[float] | None = None
    #: A video's ``[time, score]`` per frame (JSON/JSONL ``frame_scores``), else None.
    curve: list[list[float]] | None = None
    models: dict[str, "ScoreRow"] | None = None


def read_scores(path: str | os.PathLike) -> list[ScoreRow]:
    """All rows of a scores file, in file order (raises :class:`MusiqError` naming the file
    and row for anything that is not a result)."""
    out = []
    for p in read_predictions(path):
        if isinstance(p, MultiPrediction):
            out.append(ScoreRow(p.source, None, p.error,
                                models={n: _one(m) for n, m in p.models.items()}))
        else:
            out.append(_one(p))
    return out


def _one(p: Prediction) -> ScoreRow:
    return ScoreRow(p.source, p.score, p.error, p.std, p.distribution, _curve(p.frame_scores))


def _curve(frames: list[dict] | None) -> list[list[float]] | None:
    """``[time, score]`` pairs of a video's frames (the frame's position for a missing time;
    frames without a score left out)."""
    out = []
    for i, f in enumerate(frames or []):
        s, t = f.get("score"), f.get("time")
        if isinstance(s, (int, float)) and not isinstance(s, bool):
            out.append([float(i) if not isinstance(t, (int, float)) else float(t), float(s)])
    return out or None
