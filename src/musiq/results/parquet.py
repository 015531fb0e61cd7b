"""Parquet score files, written so that a stop at any moment loses at most one row.

A Parquet file is readable only once its footer is written, so rows cannot be appended to it
as they arrive. Instead each row is appended and flushed to a *journal* beside it,
``OUT.parquet.journal`` (JSON lines in :func:`musiq.results.columns.row_dict`'s keys: the
same values at full precision), as soon as it is scored. When the run ends (normally,
Ctrl-C or SIGTERM) the Parquet file is rewritten from the previous file's rows and the
journal's, into a temporary file renamed over ``OUT.parquet`` (row groups of
:data:`GROUP_ROWS`), and the journal is removed. After ``kill -9`` or a power cut the journal
remains: ``--resume`` folds it in first, and :func:`read_parquet` (the report) reads it too
(a journal row whose path is already in the file, left by a stop between the rename and the
journal's removal, is not counted twice).
"""
from __future__ import annotations

import contextlib
import json
import os
from typing import IO, Iterator, Union

from ..atomic import create_exclusive, replace_with
from ..errors import MusiqError
from .arrow import arrow_schema, conform, predictions_table, require_pyarrow
from .columns import ENCODING, ERRORS, row_dict
from .jsonfmt import parse_jsonl
from .rows import MultiPrediction, Prediction
from .several import ModelSet, several_row_dict
from .several_arrow import table_rows

#: What a Parquet file holds: one model's kind, or several models (:class:`ModelSet`).
Layout = Union[str, ModelSet]

#: Rows per Parquet row group in the final file.
GROUP_ROWS = 4096
PARQUET_KEY = "musiq"


def journal_path(path: str) -> str:
    """``OUT.parquet.journal``: the rows of a run not yet in ``OUT.parquet``."""
    return f"{path}.journal"


def read_journal(path: str, *, repair: bool = False) -> list[Prediction]:
    """The journal's rows (none when there is none); a last line cut by a crash is left out
    (and cut from the file when ``repair``)."""
    jpath = journal_path(path)
    if not os.path.lexists(jpath):
        return []
    try:
        with open(jpath, "rb") as f:
            text = f.read().decode(ENCODING, ERRORS)
    except OSError as e:
        raise MusiqError(f"{jpath}: cannot read the journal ({e.strerror or e})") from None
    rows, kept = parse_jsonl(text, jpath)
    if repair and kept < len(text):
        with open(jpath, "r+b") as f:
            f.truncate(len(text[:kept].encode(ENCODING, ERRORS)))
    return [r.prediction for r in rows]


def _journal_chunks(path: str, size: int) -> Iterator[list[Prediction]]:
    """The journal's whole rows, ``size`` at a time (memory bounded by ``size`` rows)."""
    jpath = journal_path(path)
    chunk: list[Prediction] = []
    with open(jpath, "rb") as f:
        for n, raw in enumerate(f, 1):
            if not raw.endswith(b"\n"):
                break  # a last line cut by a crash
            if raw.strip():
                line = raw.decode(ENCODING, ERRORS)
                chunk.append(parse_jsonl(line, f"{jpath} line {n}")[0][0].prediction)
            if len(chunk) >= size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def _read_table(path: str, columns: list[str] | None = None):
    pq = require_pyarrow() and __import__("pyarrow.parquet", fromlist=["parquet"])
    try:
        return pq.read_table(path, columns=columns)
    except Exception as e:  # pyarrow raises many kinds for a file that is not Parquet
        raise MusiqError(f"{path}: not a readable Parquet file ({str(e)[:200]})") from None


def read_parquet(path: str, columns: list[str] | None = None) -> list[Prediction]:
    """Every row of a Parquet score file, then its journal's (a run cut by ``kill -9``)."""
    rows = []
    if os.path.exists(path):
        table = _read_table(path, columns)
        for name in ("path",):
            if name in table.column_names and str(table.schema.field(name).type) not in (
                    "string", "large_string"):
                raise MusiqError(f"{path}: column 'path' holds {table.schema.field(name).type}, "
                                 "not text: not a musiq score file")
        rows = table_rows(table, path)
    present = {p.source for p in rows}
    return rows + [p for p in read_journal(path) if p.source not in present]


def schema_of(layout: Layout, per_frame: bool = False):
    """The Arrow schema of a file of one model's ``kind`` or of several models."""
    if isinstance(layout, ModelSet):
        from .several_arrow import several_arrow_schema
        return several_arrow_schema(layout)
    return arrow_schema(layout, per_frame)


def row_json(p: "Prediction | MultiPrediction", layout: Layout) -> dict:
    """A journal row: :func:`row_dict` or, for several models, :func:`several_row_dict`."""
    if isinstance(layout, ModelSet):
        return several_row_dict(p, layout)  # type: ignore[arg-type]
    return row_dict(p, layout)  # type: ignore[arg-type]


def parquet_schema_names(path: str) -> list[str]:
    """Column names of a Parquet file (:class:`MusiqError` when it is not one)."""
    pq = require_pyarrow() and __import__("pyarrow.parquet", fromlist=["parquet"])
    try:
        return list(pq.read_schema(path).names)
    except Exception as e:
        raise MusiqError(f"{path}: not a readable Parquet file ({str(e)[:200]})") from None


def open_journal(path: str, *, fresh: bool) -> IO[str]:
    """The journal opened for appending; never through a symbolic link planted there."""
    jpath = journal_path(path)
    try:
        if fresh or not os.path.lexists(jpath):
            with contextlib.suppress(FileNotFoundError):
                if fresh:
                    os.unlink(jpath)
            return create_exclusive(jpath, "w", encoding=ENCODING, newline="")
        fd = os.open(jpath, os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0))
        return os.fdopen(fd, "a", encoding=ENCODING, errors=ERRORS, newline="")
    except OSError as e:
        raise MusiqError(f"{jpath}: cannot write the journal ({e.strerror or e}; a symbolic "
                         "link there is never followed)") from None


class ParquetWriter:
    """Rows journaled as they arrive, the Parquet file rewritten from the previous rows and
    the journal on :meth:`close` (see the module). ``keep`` (resume): the previous file's rows
    are carried over (its failed ones left out with ``drop_failed``); ``provenance`` goes into
    the schema metadata under ``musiq``. ``rows``: rows per row group of the final file.
    ``per_frame``: one row per video frame (the journal keeps whole rows either way); a
    previous file from before videos is carried over with its video columns null."""

    def __init__(self, path: str, kind: Layout, *, keep: bool = False, rows: int = GROUP_ROWS,
                 drop_failed: bool = False, provenance: dict | None = None,
                 per_frame: bool = False) -> None:
        require_pyarrow()
        self.path, self.kind, self.rows = path, kind, max(rows, 1)
        self.keep, self.drop_failed, self.per_frame = keep, drop_failed, per_frame
        schema = schema_of(kind, per_frame)
        if provenance is not None:  # the same record as OUT.meta.json, in the file itself
            schema = schema.with_metadata({PARQUET_KEY: json.dumps(provenance)})
        self.schema = schema
        self.journal = open_journal(path, fresh=not keep)

    def write(self, p: "Prediction | MultiPrediction") -> None:
        self.journal.write(json.dumps(row_json(p, self.kind), allow_nan=False) + "\n")
        self.journal.flush()

    def close(self) -> None:
        """Write the Parquet file (previous rows + journal) aside, rename it over the output,
        then remove the journal."""
        self.journal.close()
        replace_with(self.path, self._write_all)
        os.unlink(journal_path(self.path))

    def _previous(self) -> Iterator:
        if not (self.keep and os.path.exists(self.path)):
            return
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
        bare = self.schema.remove_metadata()
        for batch in pq.ParquetFile(self.path).iter_batches(batch_size=self.rows):
            table = conform(__import__("pyarrow").Table.from_batches([batch]), bare)
            if self.drop_failed:
                table = table.filter(pc.is_null(table.column("error")))
            yield table

    def _write_all(self, tmp: str) -> None:
        import pyarrow.parquet as pq
        present: set[str] = set()
        with pq.ParquetWriter(tmp, self.schema) as out:
            for table in self._previous():
                present.update(table.column("path").to_pylist())
                out.write_table(table.replace_schema_metadata(self.schema.metadata))
            for rows in _journal_chunks(self.path, self.rows):
                # Rows already in the file: a stop between the rename and the journal's removal.
                rows = [p for p in rows if p.source not in present]
                table = self._table(rows)
                out.write_table(table.replace_schema_metadata(self.schema.metadata))


    def _table(self, rows: list):
        if isinstance(self.kind, ModelSet):
            from .several_arrow import several_table
            return several_table(rows, self.kind)
        return predictions_table(rows, self.kind, self.per_frame)


def fold_journal(path: str, kind: Layout, provenance: dict | None,
                 per_frame: bool = False) -> None:
    """A run cut by ``kill -9`` left a journal: write its rows into the Parquet file now
    (``per_frame``: the file's layout, one row per video frame)."""
    if os.path.lexists(journal_path(path)):
        read_journal(path, repair=True)
        w = ParquetWriter(path, kind, keep=True, provenance=provenance, per_frame=per_frame)
        w.close()
