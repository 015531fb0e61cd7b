"""Read any score file back exactly as the writers wrote it: CSV, JSON lines, JSON, Parquet.

The one reader of the report (and of anything else that reads results): the CSV formula
guard is removed (``'=x.jpg`` is ``=x.jpg`` again), quoted names with newlines stay whole,
names that are not UTF-8 come back as written (their bytes, as surrogate escapes), and a
final row cut by a crash is left out. Anything else that is not a result row is a
:class:`MusiqError` naming the file and the row.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import MusiqError
from .columns import ENCODING, ERRORS, prediction_from_cells
from .csvfmt import parse_csv
from .jsonfmt import parse_json_array, parse_jsonl
from .rows import Prediction

READ_FORMATS = (".csv", ".jsonl", ".ndjson", ".json", ".parquet")


def read_predictions(path: str | os.PathLike) -> list[Prediction]:
    """Every row of a score file, in file order."""
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
        return [prediction_from_cells(dict(zip(parsed.header, r.cells)))
                for r in parsed.records]
    if ext == ".json":
        return parse_json_array(text, str(path))
    return [r.prediction for r in parse_jsonl(text, str(path), keep_whole_last=True)[0]]
