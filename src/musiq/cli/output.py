"""Write predictions as they arrive: table, JSON array, JSON lines, CSV, or the seed's line.

Every writer flushes after each row, so results already written survive a crash or Ctrl-C.
Columns depend only on the model's kind (known before the first image), never on the data.
"""
from __future__ import annotations

import csv
import io
import json
import os
from typing import IO

import numpy as np

from ..errors import MusiqError
from ..outputs import output_kind
from ..scorer import Prediction

FILE_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


def fmt_float(x: float | None) -> str:
    """Shortest text that reads back as the same float32 ('' for None)."""
    return "" if x is None else str(np.float32(x))


def csv_header(kind: str) -> list[str]:
    """CSV columns for a model kind (``mos``, ``distribution`` or ``imagenet``)."""
    return ["path", "score", "error", *output_kind(kind).csv_columns]


class Writer:
    """Base: ``write`` one prediction, then ``close`` (which writes any trailer)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def write(self, p: Prediction) -> None:
        self.out.write(self.render(p))
        self.out.flush()

    def render(self, p: Prediction) -> str:
        raise NotImplementedError

    def close(self) -> None:
        self.out.flush()


class CsvWriter(Writer):
    def __init__(self, out: IO[str], kind: str, header: bool = True) -> None:
        super().__init__(out)
        self.kind = kind
        if header:
            self.out.write(self._row(csv_header(kind)))
            self.out.flush()

    @staticmethod
    def _row(values: list) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(values)
        return buf.getvalue()

    def render(self, p: Prediction) -> str:
        row = [p.source, fmt_float(p.score), p.error or ""]
        row += [fmt_float(v) if isinstance(v, float) else ("" if v is None else v)
                for v in output_kind(self.kind).csv_values(vars(p))]
        return self._row(row)


class JsonLinesWriter(Writer):
    def render(self, p: Prediction) -> str:
        return json.dumps(p.to_dict()) + "\n"


class JsonArrayWriter(Writer):
    """A JSON array streamed element by element (valid JSON once closed)."""

    def __init__(self, out: IO[str]) -> None:
        super().__init__(out)
        self.count = 0
        self.out.write("[")

    def render(self, p: Prediction) -> str:
        text = json.dumps(p.to_dict(), indent=2).replace("\n", "\n  ")
        sep = "," if self.count else ""
        self.count += 1
        return f"{sep}\n  {text}"

    def close(self) -> None:
        self.out.write("\n]\n" if self.count else "]\n")
        self.out.flush()


class TableWriter(Writer):
    def __init__(self, out: IO[str], width: int) -> None:
        super().__init__(out)
        self.width = max(width, 4)
        self.out.write(f"{'path':<{self.width}}  {'score':>11}  info\n")

    def render(self, p: Prediction) -> str:
        if p.error is not None:
            info = f"ERROR: {p.error}"
        elif p.std is not None:
            info = f"std {p.std:.4f}"
        elif p.top5:
            info = f"top-1 class {p.top5[0]['class']}"
        else:
            info = ""
        score = "-" if p.score is None else f"{p.score:.6f}"
        return f"{p.source:<{self.width}}  {score:>11}  {info}\n"


class SeedWriter(Writer):
    """The original tool's ``MUSIQ score: <value>`` line (prefixed by the path when several)."""

    def __init__(self, out: IO[str], several: bool) -> None:
        super().__init__(out)
        self.several = several

    def render(self, p: Prediction) -> str:
        prefix = f"{p.source}: " if self.several else ""
        if p.error is None:
            return f"{prefix}MUSIQ score: {fmt_float(p.score)}\n"
        return f"{prefix}MUSIQ error: {p.error}\n"


class ParquetWriter:
    """Rows buffered and written as Parquet row groups (columns: :func:`musiq.tables.
    arrow_schema`). The file is written beside ``path`` and renamed over it on ``close``, so
    an interrupted run leaves the previous file whole; ``keep`` (resume) carries its rows
    over first. Ctrl-C still closes the file with what was scored."""

    def __init__(self, path: str, kind: str, *, keep: bool = False, rows: int = 256) -> None:
        from ..tables import arrow_schema, require_pyarrow
        require_pyarrow()
        import pyarrow.parquet as pq
        self.path, self.kind, self.rows = path, kind, rows
        self.tmp = f"{path}.partial"
        self.buffer: list[Prediction] = []
        self.file = pq.ParquetWriter(self.tmp, arrow_schema(kind))
        if keep and os.path.exists(path):
            self.file.write_table(pq.read_table(path, schema=arrow_schema(kind)))

    def write(self, p: Prediction) -> None:
        self.buffer.append(p)
        if len(self.buffer) >= self.rows:
            self._flush()

    def _flush(self) -> None:
        from ..tables import predictions_table
        if self.buffer:
            self.file.write_table(predictions_table(self.buffer, self.kind))
            self.buffer = []

    def close(self) -> None:
        self._flush()
        self.file.close()
        os.replace(self.tmp, self.path)


def make_writer(fmt: str, out: IO[str], *, kind: str, width: int = 0, several: bool = True,
                header: bool = True) -> Writer:
    """A writer for ``table``, ``json``, ``jsonl``, ``csv`` or ``seed``."""
    if fmt == "csv":
        return CsvWriter(out, kind, header=header)
    if fmt == "jsonl":
        return JsonLinesWriter(out)
    if fmt == "json":
        return JsonArrayWriter(out)
    if fmt == "seed":
        return SeedWriter(out, several)
    return TableWriter(out, width)


def file_format(path: str) -> str:
    """``csv``, ``jsonl`` or ``parquet`` from an output file's suffix."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in FILE_FORMATS:
        raise MusiqError(f"--output {path}: use a .csv or .jsonl file name (or .parquet) "
                         "(rows are appended as images finish)")
    return FILE_FORMATS[ext]


def done_paths(path: str, fmt: str, kind: str) -> set[str]:
    """Paths already in an output file (scored or failed), for ``--resume``.

    A last line cut short by a crash is removed from the file, so appending goes on cleanly.
    Raises :class:`MusiqError` if the file was written for another kind of model.
    """
    if fmt == "parquet":
        return _parquet_done_paths(path, kind)
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            f.truncate(cut)
            data = data[:cut]
    text = data.decode("utf-8")
    if fmt == "jsonl":
        done = set()
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    done.add(os.path.normpath(json.loads(line)["path"]))
                except (ValueError, KeyError, TypeError):
                    raise MusiqError(f"--resume: {path} line {n} is not a result row") from None
        return done
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return set()
    if rows[0] != csv_header(kind):
        raise MusiqError(f"--resume: {path} has columns {','.join(rows[0])}, expected "
                         f"{','.join(csv_header(kind))} (another model kind?)")
    return {os.path.normpath(r[0]) for r in rows[1:] if r}


def _parquet_done_paths(path: str, kind: str) -> set[str]:
    from ..tables import arrow_schema, require_pyarrow
    require_pyarrow()
    import pyarrow.parquet as pq
    try:
        schema = pq.read_schema(path)
    except Exception as e:
        raise MusiqError(f"--resume: {path} is not a readable Parquet file ({e})") from None
    if schema.names != arrow_schema(kind).names:
        raise MusiqError(f"--resume: {path} has columns {','.join(schema.names)}, expected "
                         f"{','.join(arrow_schema(kind).names)} (another model kind?)")
    paths = pq.read_table(path, columns=["path"]).column("path").to_pylist()
    return {os.path.normpath(p) for p in paths}
