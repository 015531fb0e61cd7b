"""Read any score file back exactly as the writers wrote it: CSV, JSON lines, JSON, Parquet.

The one reader of the report (and of anything else that reads results): the CSV formula
guard is removed (``'=x.jpg`` is ``=x.jpg`` again), quoted names with newlines stay whole,
names that are not UTF-8 come back as written (their bytes, as surrogate escapes), and a
final row cut by a crash is left out. A several-model file (``musiq score --model a,b``)
reads back as :class:`MultiPrediction` rows (:func:`file_models` tells which models it holds).
Anything else that is not a result row is a
:class:`MusiqError` naming the file and the row.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import MusiqError
from .columns import ENCODING, ERRORS, prediction_from_cells
from .csvfmt import parse_csv
from .jsonfmt import parse_json_array, parse_jsonl
from .rows import MultiPrediction, Prediction
from .several import ModelSet, models_from_csv_header, several_from_cells

READ_FORMATS = (".csv", ".jsonl", ".ndjson", ".json", ".parquet")


def read_predictions(path: str | os.PathLike) -> list[Prediction] | list[MultiPrediction]:
    """Every row of a score file, in file order: :class:`Prediction` rows for one model's
    file, :class:`MultiPrediction` rows for several models'."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in READ_FORMATS:
        raise MusiqError(f"{path}: use a .csv, .jsonl, .json or .parquet scores file")
    if ext == ".parquet":
        from .parquet import read_parquet
        if not path.is_file() and not os.path.lexists(f"{path}.journal"):
            raise MusiqError(f"{path}: no such scores file")
        return read_parquet(str(path))
    if not path.is_file():
        raise MusiqError(f"{path}: no such scores file")
    try:
        text = path.read_bytes().decode(ENCODING, ERRORS)
    except OSError as e:
        raise MusiqError(f"{path}: cannot read ({e.strerror or e})") from None
    if ext == ".csv":
        parsed = parse_csv(text, str(path), keep_whole_last=True)
        if parsed.header is None or "path" not in parsed.header:
            raise MusiqError(f"{path}: not a musiq CSV (no 'path' column)")
        models = models_from_csv_header(parsed.header)
        if models is not None:
            return [several_from_cells(dict(zip(parsed.header, r.cells)), models)
                    for r in parsed.records]
        return [prediction_from_cells(dict(zip(parsed.header, r.cells)))
                for r in parsed.records]
    if ext == ".json":
        return parse_json_array(text, str(path))
    return [r.prediction for r in parse_jsonl(text, str(path), keep_whole_last=True)[0]]


def file_models(path: str | os.PathLike) -> ModelSet | None:
    """The models of a several-model score file, in its order, with their kinds (from its
    provenance record when it has one, else from its columns or its first row's keys); None
    for a file of one model's scores."""
    from .provenance import read_provenance
    record = read_provenance(path)
    if isinstance(record, dict) and isinstance(record.get("models"), dict) and record["models"]:
        models = record["models"]
        return ModelSet(tuple(models), tuple(str((m or {}).get("kind") or "mos")
                                             for m in models.values()))
    ext = Path(path).suffix.lower()
    if ext == ".parquet":
        from .parquet import parquet_schema_names
        from .several_arrow import models_from_arrow_names
        return models_from_arrow_names(parquet_schema_names(str(path))) \
            if Path(path).is_file() else None
    if ext == ".csv":
        text = Path(path).read_bytes().decode(ENCODING, ERRORS)
        header = parse_csv(text.split("\n", 1)[0] + "\n", str(path)).header
        return models_from_csv_header(header or [])
    return _json_models(path)


def _json_models(path: str | os.PathLike) -> ModelSet | None:
    """The models of a JSON or JSON-lines file's first row (kinds told by their keys)."""
    import json
    text = Path(path).read_bytes().decode(ENCODING, ERRORS)
    try:
        first = json.loads(text)[0] if Path(path).suffix.lower() == ".json" else \
            json.loads(text.split("\n", 1)[0])
    except (ValueError, IndexError, KeyError, TypeError):
        return None
    models = first.get("models") if isinstance(first, dict) else None
    if not isinstance(models, dict) or not models:
        return None
    return ModelSet(tuple(models), tuple(
        "distribution" if "distribution" in m else "imagenet" if "top5" in m else "mos"
        for m in models.values()))
