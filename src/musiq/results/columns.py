"""The fields of a result row, per model kind, and how one cell is written and read back.

One place decides every format's columns: JSON keys (:func:`json_keys`), CSV columns
(:func:`csv_header`) and Arrow columns (:mod:`musiq.results.arrow`). They depend only on the
model's kind (known before the first image) and on ``per_frame`` (``--per-frame``: one row per
video frame, :mod:`musiq.results.frames`), never on the data. Videos add ``frames`` (count)
and ``spread`` (std of the frame scores) to every format, empty for images; JSON rows also
hold ``frame_scores``.
"""
from __future__ import annotations

import math

from ..network.outputs import output_kind
from .rows import Prediction

#: How text files hold names that are not UTF-8 (POSIX file names are bytes): the same
#: bytes, so that ``--resume`` and the report read back the very path.
ENCODING, ERRORS = "utf-8", "surrogateescape"
#: Cells starting with these are formulas to a spreadsheet (OWASP "CSV Injection"); such a
#: cell gets a leading ``'``. A cell that starts with ``'`` gets one too, so that reading
#: back (drop one leading ``'``) is exact.
CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")
#: JSON keys of every row, in order; a kind adds its extras after them.
BASE_KEYS = ("path", "score", "error", "logits")
#: A video's keys, last in every JSON row (null for an image).
VIDEO_KEYS = ("frames", "spread", "frame_scores")
#: A video's columns, last in a CSV or Parquet row per file (empty for an image).
VIDEO_COLUMNS = ("frames", "spread")
#: ``--per-frame`` rows: these follow ``path`` (empty for an image or a failed video).
FRAME_COLUMNS = ("frame", "time")


#: Names a model may not take in a several-model output: they are its other columns or keys.
RESERVED_NAMES = ("path", "error", "score", "models", "provenance", *VIDEO_COLUMNS,
                  *FRAME_COLUMNS)


def check_model_names(names: list[str]) -> None:
    """Refuse (:class:`MusiqError`) model names that would clash in a several-model output:
    the same name twice, an empty name, or a name that is an output column (``path``,
    ``error`` ...)."""
    from ..errors import MusiqError
    seen: set[str] = set()
    for name in names:
        if not name or not name.strip():
            raise MusiqError("a model name is empty")
        if name.lower() in RESERVED_NAMES:
            raise MusiqError(f"a model named '{name}' would clash with the output column "
                             f"'{name.lower()}'; rename its file")
        if name.lower() in seen:
            raise MusiqError(f"two models are named '{name}' (a model given by path is "
                             "named by its file's stem): rename one of the files")
        seen.add(name.lower())


def csv_guard(value: str) -> str:
    """A CSV cell that no spreadsheet runs as a formula (undo with :func:`csv_unguard`)."""
    return "'" + value if value.startswith(CSV_FORMULA_START) else value


def csv_unguard(value: str) -> str:
    """The value :func:`csv_guard` was given."""
    return value[1:] if value.startswith("'") else value


def fmt_float(x: float | None) -> str:
    """Shortest text that reads back as the same float64 ('' for None): ``repr``."""
    return "" if x is None else repr(float(x))


def json_keys(kind: str) -> tuple[str, ...]:
    """Keys of a JSON/JSONL row for a model kind: ``path, score, error, logits``, the
    kind's extras (``distribution, std`` or ``top5``) and :data:`VIDEO_KEYS`, every one
    present in every row."""
    extras = output_kind(kind).extras
    order = ("distribution", "std", "top5")
    return BASE_KEYS + tuple(k for k in order if k in extras) + VIDEO_KEYS


def row_dict(p: Prediction, kind: str) -> dict:
    """A JSON-ready row with every key of :func:`json_keys` (null where absent: a failed
    image's ``logits``, ``distribution``, ``std`` or ``top5``, an image's video keys), so
    that column readers (polars, DuckDB) see the same columns in every row."""
    values = {"path": p.source, "score": p.score, "error": p.error, "logits": p.logits,
              "distribution": p.distribution, "std": p.std, "top5": p.top5,
              "frames": p.frames, "spread": p.spread, "frame_scores": p.frame_scores}
    return {k: values[k] for k in json_keys(kind)}


def name_columns(kind: str) -> tuple[str, ...]:
    """ImageNet's class-name columns (added after the index columns; none for other kinds)."""
    return tuple(f"top{i}_name" for i in range(1, 6)) if kind == "imagenet" else ()


def csv_header(kind: str, per_frame: bool = False) -> list[str]:
    """CSV columns for a model kind (``mos``, ``distribution`` or ``imagenet``): one row per
    file with :data:`VIDEO_COLUMNS` last, or (``per_frame``) one per video frame with
    :data:`FRAME_COLUMNS` after ``path``."""
    own = [*output_kind(kind).csv_columns, *name_columns(kind)]
    if per_frame:
        return ["path", *FRAME_COLUMNS, "score", "error", *own]
    return ["path", "score", "error", *own, *VIDEO_COLUMNS]


def accepted_headers(kind: str, per_frame: bool = False) -> list[list[str]]:
    """Headers ``--resume`` goes on with: the current one, and (per file) the ones before
    videos and before names were added (rows are then written in the file's own columns)."""
    current = csv_header(kind, per_frame)
    if per_frame:
        return [current]
    out = [current]
    for old in (current[:-len(VIDEO_COLUMNS)],
                ["path", "score", "error", *output_kind(kind).csv_columns]):
        if old not in out:
            out.append(old)
    return out


def csv_values(p: Prediction, columns: list[str], frame: dict | None = None) -> list[str]:
    """The cells of ``p`` for a CSV with these ``columns`` (floats at full float64 precision;
    ``path`` and ``error`` formula-guarded; '' where absent); ``frame``: the ``frame`` and
    ``time`` of a ``--per-frame`` row."""
    values: dict[str, object] = {"path": csv_guard(p.source), "score": fmt_float(p.score),
                                 "error": csv_guard(p.error or ""), "std": fmt_float(p.std),
                                 "frames": p.frames, "spread": fmt_float(p.spread)}
    if frame is not None:
        values["frame"], values["time"] = frame.get("frame"), fmt_float(frame.get("time"))
    for i, v in enumerate(p.distribution or [], 1):
        values[f"p{i}"] = fmt_float(v)
    for i, t in enumerate(p.top5 or [], 1):
        values[f"top{i}_class"] = t.get("class")
        values[f"top{i}_name"] = csv_guard(t.get("name") or "")
    return ["" if values.get(c) is None else str(values.get(c)) for c in columns]


def _num(v: str | None) -> float | None:
    if v is None or v == "":
        return None
    try:
        return float(v)
    except ValueError:
        return None


def prediction_from_cells(row: dict[str, str]) -> Prediction:
    """A :class:`Prediction` from one CSV row (column -> cell), undoing :func:`csv_values`:
    the formula guard removed, distribution from ``p1..p10``, top-5 classes (index, name)."""
    dist = [_num(row.get(f"p{i}")) for i in range(1, 11)]
    top5 = []
    for i in range(1, 6):
        cls = row.get(f"top{i}_class")
        if cls not in (None, ""):
            entry: dict = {"class": int(_num(cls) or 0)}
            if row.get(f"top{i}_name"):
                entry["name"] = csv_unguard(row[f"top{i}_name"])
            top5.append(entry)
    error = csv_unguard(row.get("error") or "")
    frames = _num(row.get("frames"))
    return Prediction(source=csv_unguard(row.get("path") or ""), score=_num(row.get("score")),
                      error=error or None, std=_num(row.get("std")),
                      distribution=dist if all(v is not None for v in dist) else None,
                      top5=top5 or None,
                      frames=int(frames) if frames is not None and math.isfinite(frames) else None,
                      spread=_num(row.get("spread")))
