"""JSON lines and JSON arrays of result rows, read back as :class:`Prediction`.

JSON lines: one row a line. Only the *final* line may lack its newline (a row a crash cut
short, left out); any other line that is not a result row is refused, naming it.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

from ..errors import MusiqError
from .rows import MultiPrediction, Prediction


def _number(v: object, key: str, where: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise MusiqError(f"{where}: {key} is not a number")
    return float(v)


def _numbers(v: object, key: str, where: str) -> list[float] | None:
    if v is None:
        return None
    if not isinstance(v, list):
        raise MusiqError(f"{where}: {key} is not a list of numbers")
    return [_number(x, key, where) for x in v]  # type: ignore[misc]


def prediction_from_dict(d: object, where: str) -> Prediction:
    """A :class:`Prediction` from a JSON row; :class:`MusiqError` naming ``where`` when it is
    not one (no ``path``, or a ``path`` that is not text, a score that is not a number)."""
    if not isinstance(d, dict):
        raise MusiqError(f"{where}: not a result row (a JSON object with a 'path')")
    path = d.get("path")
    if not isinstance(path, str):
        what = "missing" if path is None else f"a {type(path).__name__}, not text"
        raise MusiqError(f"{where}: not a result row ('path' is {what})")
    error = d.get("error")
    top5 = d.get("top5")
    std = _number(d.get("std"), "std", where)
    return Prediction(source=path, score=_number(d.get("score"), "score", where),
                      error=None if error in (None, "") else str(error),
                      logits=_numbers(d.get("logits"), "logits", where),
                      distribution=_numbers(d.get("distribution"), "distribution", where),
                      std=None if std is None or math.isnan(std) else std,
                      top5=top5 if isinstance(top5, list) else None, **_video(d, where))


def _video(d: dict, where: str) -> dict:
    """A video's ``frames``, ``spread`` and ``frame_scores`` (objects with a number or null
    ``score``); None for an image's row."""
    frames = _number(d.get("frames"), "frames", where)
    if frames is not None and not (math.isfinite(frames) and frames == int(frames) >= 0):
        raise MusiqError(f"{where}: frames is not a count")
    scores = d.get("frame_scores")
    if scores is not None:
        if not isinstance(scores, list) or not all(isinstance(f, dict) for f in scores):
            raise MusiqError(f"{where}: frame_scores is not a list of objects")
        for f in scores:
            _number(f.get("score"), "frame_scores score", where)
            _number(f.get("time"), "frame_scores time", where)
    return {"frames": None if frames is None else int(frames),
            "spread": _number(d.get("spread"), "spread", where), "frame_scores": scores}


def several_from_dict(d: dict, where: str) -> MultiPrediction:
    """A :class:`MultiPrediction` from a several-model JSON row (``{"path", "error",
    "models": {name: {...}}}``); :class:`MusiqError` naming ``where`` when it is not one.
    The row's own ``error`` is its failure before any model ran."""
    path, models, error = d.get("path"), d.get("models"), d.get("error")
    if not isinstance(path, str):
        raise MusiqError(f"{where}: not a result row ('path' is not text)")
    if not isinstance(models, dict) or not models:
        raise MusiqError(f"{where}: 'models' is not an object of model results")
    preds = {str(name): prediction_from_dict({**m, "path": path} if isinstance(m, dict) else m,
                                             f"{where} model {name}")
             for name, m in models.items()}
    return MultiPrediction(path, preds, None if error in (None, "") else str(error))


def row_from_dict(d: object, where: str) -> Prediction | MultiPrediction:
    """A one-model row (:func:`prediction_from_dict`) or, with a ``models`` key, a
    several-model row (:func:`several_from_dict`)."""
    if isinstance(d, dict) and "models" in d and "score" not in d:
        return several_from_dict(d, where)
    return prediction_from_dict(d, where)


@dataclass
class Line:
    """One JSON-lines row: the prediction (one model's or several's) and its exact text
    (newline included)."""

    prediction: Prediction | MultiPrediction
    text: str


def parse_jsonl(text: str, where: str, *, keep_whole_last: bool = False
                ) -> tuple[list[Line], int]:
    """The rows of a JSON-lines text and the characters they cover (less than ``len(text)``
    when the final line was cut by a crash). ``keep_whole_last`` (reading, not resuming): a
    final line without its newline is kept when it is a whole row."""
    lines = text.split("\n")
    kept = len(text) - len(lines[-1])  # a last piece without its newline: cut
    rows = []
    if keep_whole_last and lines[-1].strip():
        try:
            row_from_dict(json.loads(lines[-1]), where)
            return parse_jsonl(text + "\n", where)[0], len(text)
        except (ValueError, MusiqError):
            pass
    for n, line in enumerate(lines[:-1], 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            raise MusiqError(f"{where} line {n}: not JSON; the file is left untouched") from None
        rows.append(Line(row_from_dict(obj, f"{where} line {n}"), line + "\n"))
    return rows, kept


def parse_json_array(text: str, where: str) -> list[Prediction | MultiPrediction]:
    """The rows of ``musiq score --format json``'s array."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise MusiqError(f"{where}: not JSON ({e})") from None
    if not isinstance(data, list):
        raise MusiqError(f"{where}: expected the JSON array of musiq score --format json")
    return [row_from_dict(d, f"{where} item {n}") for n, d in enumerate(data, 1)]
