"""Write predictions as they arrive: table, JSON array, JSON lines, CSV, or the seed's line.

Every writer flushes after each row, so results already written survive a crash or Ctrl-C.
Output files (:func:`open_output`) are locked while a run writes them, and ``--resume``
removes a row a crash cut short, exactly (CSV records may hold quoted newlines).
Columns depend only on the model's kind (known before the first image), never on the data.
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from typing import IO

import numpy as np

from ..errors import MusiqError
from ..outputs import output_kind
from ..scorer import Prediction
from ..video_rows import FRAME_COLUMNS, VIDEO_COLUMNS, frame_rows

FILE_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
#: How output files hold names that are not UTF-8 (POSIX file names are bytes): the same
#: bytes, so that ``--resume`` reads back the very path.
ENCODING, ERRORS = "utf-8", "surrogateescape"
#: Cells starting with these are formulas to a spreadsheet (OWASP "CSV Injection"); such a
#: cell gets a leading ``'``. A cell that starts with ``'`` gets one too, so that reading
#: back (drop one leading ``'``) is exact.
CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def csv_guard(value: str) -> str:
    """A CSV cell that no spreadsheet runs as a formula (undo with :func:`csv_unguard`)."""
    return "'" + value if value.startswith(CSV_FORMULA_START) else value


def csv_unguard(value: str) -> str:
    """The value :func:`csv_guard` was given."""
    return value[1:] if value.startswith("'") else value


def fmt_float(x: float | None) -> str:
    """Shortest text that reads back as the same float32 ('' for None)."""
    return "" if x is None else str(np.float32(x))


def csv_header(kind: str, per_frame: bool = False) -> list[str]:
    """CSV columns for a model kind (``mos``, ``distribution`` or ``imagenet``): one row per
    file with the video columns last, or (``per_frame``) one row per video frame."""
    if per_frame:
        return ["path", *FRAME_COLUMNS, "score", "error", *output_kind(kind).csv_columns]
    return [*legacy_csv_header(kind), *VIDEO_COLUMNS]


def legacy_csv_header(kind: str) -> list[str]:
    """The columns before videos (``--resume`` goes on with such a file in its layout)."""
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
    """CSV rows in ``columns`` (default :func:`csv_header`); ``per_frame``: one per frame."""

    def __init__(self, out: IO[str], kind: str, header: bool = True, per_frame: bool = False,
                 columns: list[str] | None = None) -> None:
        super().__init__(out)
        self.kind, self.per_frame = kind, per_frame
        self.columns = columns or csv_header(kind, per_frame)
        if header:
            self.out.write(self._row(self.columns))
            self.out.flush()

    @staticmethod
    def _row(values: list) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(values)
        return buf.getvalue()

    def render(self, p: Prediction) -> str:
        rows = frame_rows(p) if self.per_frame else [
            {**vars(p), "path": p.source}]
        return "".join(self._row(self._cells(r)) for r in rows)

    def _cells(self, r: dict) -> list:
        kind = output_kind(self.kind)
        cells = {"path": csv_guard(r["path"]), "error": csv_guard(r["error"] or ""),
                 **dict(zip(kind.csv_columns, kind.csv_values(r)))}
        for name in ("score", "time", "spread"):
            cells[name] = fmt_float(r.get(name))
        return [v if isinstance(v, str) else fmt_float(v) if isinstance(v, float) else
                ("" if v is None else v)
                for v in (cells.get(c, r.get(c)) for c in self.columns)]


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


def model_line(model: str | None, score_range: tuple[float, float] | None) -> str:
    """``model koniq, scores 0 to 100`` (the table's first line)."""
    if not model:
        return ""
    rng = (f", scores {score_range[0]:g} to {score_range[1]:g}" if score_range is not None
           else "")
    return f"model {model}{rng}\n"


class TableWriter(Writer):
    def __init__(self, out: IO[str], width: int, model: str | None = None,
                 score_range: tuple[float, float] | None = None,
                 per_frame: bool = False) -> None:
        super().__init__(out)
        self.width = max(width, 4)
        self.per_frame = per_frame
        self.out.write(model_line(model, score_range))
        self.out.write(f"{'path':<{self.width}}  {'score':>11}  info\n")

    def render(self, p: Prediction) -> str:
        if p.error is not None:
            info = f"ERROR: {p.error}"
        elif p.std is not None:
            info = f"std {p.std:.4f}"
        elif p.top5:
            name = p.top5[0].get("name")
            info = f"top-1 class {p.top5[0]['class']}" + (f" ({name})" if name else "")
        else:
            info = ""
        if p.frames is not None:
            video = (f"{p.frames} frames, spread {p.spread:.4f}" if p.spread is not None
                     else f"{p.frames} frames")
            info = f"{video}; {info}" if info else video
        score = "-" if p.score is None else f"{p.score:.6f}"
        line = f"{p.source:<{self.width}}  {score:>11}  {info}\n"
        if self.per_frame and p.frame_scores:
            line += "".join(f"{'':<{self.width}}  {f['score']:>11.6f}  frame {f['frame']} at "
                            f"{f['time']:.3f} s\n" if f.get("time") is not None else
                            f"{'':<{self.width}}  {f['score']:>11.6f}  frame {f['frame']}\n"
                            for f in p.frame_scores)
        return line


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

    def __init__(self, path: str, kind: str, *, keep: bool = False, rows: int = 256,
                 drop_failed: bool = False, provenance: dict | None = None,
                 per_frame: bool = False) -> None:
        from ..tables import arrow_schema, require_pyarrow
        require_pyarrow()
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
        self.path, self.kind, self.rows, self.per_frame = path, kind, rows, per_frame
        self.tmp = f"{path}.partial"
        self.buffer: list[Prediction] = []
        schema = arrow_schema(kind, per_frame)
        if provenance is not None:  # the same record as OUT.meta.json, in the file itself
            schema = schema.with_metadata({"musiq": json.dumps(provenance)})
        self.schema = schema
        self.file = pq.ParquetWriter(self.tmp, schema)
        if keep and os.path.exists(path):
            old = _read_parquet_as(path, arrow_schema(kind, per_frame))
            if drop_failed:
                old = old.filter(pc.is_null(old.column("error")))
            self.file.write_table(old.replace_schema_metadata(schema.metadata))

    def write(self, p: Prediction) -> None:
        self.buffer.append(p)
        if len(self.buffer) >= self.rows:
            self._flush()

    def _flush(self) -> None:
        from ..tables import predictions_table
        if self.buffer:
            table = predictions_table(self.buffer, self.kind, self.per_frame)
            self.file.write_table(table.replace_schema_metadata(self.schema.metadata))
            self.buffer = []

    def close(self) -> None:
        self._flush()
        self.file.close()
        os.replace(self.tmp, self.path)


def make_writer(fmt: str, out: IO[str], *, kind: str, width: int = 0, several: bool = True,
                header: bool = True, model: str | None = None,
                score_range: tuple[float, float] | None = None, per_frame: bool = False,
                columns: list[str] | None = None) -> Writer:
    """A writer for ``table``, ``json``, ``jsonl``, ``csv`` or ``seed``; the table names
    ``model`` and its ``score_range`` on its first line. ``per_frame``: CSV and the table
    show one row per video frame (JSON always nests ``frame_scores``); ``columns``: the CSV
    columns of a resumed file."""
    if fmt == "csv":
        return CsvWriter(out, kind, header=header, per_frame=per_frame, columns=columns)
    if fmt == "jsonl":
        return JsonLinesWriter(out)
    if fmt == "json":
        return JsonArrayWriter(out)
    if fmt == "seed":
        return SeedWriter(out, several)
    return TableWriter(out, width, model, score_range, per_frame)


def file_format(path: str) -> str:
    """``csv``, ``jsonl`` or ``parquet`` from an output file's suffix."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in FILE_FORMATS:
        raise MusiqError(f"--output {path}: use a .csv or .jsonl file name (or .parquet) "
                         "(rows are appended as images finish)")
    return FILE_FORMATS[ext]


def csv_records(text: str) -> tuple[list[str], int]:
    """Whole CSV records of ``text`` (each with its newline) and the length they cover: a
    record ends at a newline outside quotes (a quoted file name may hold newlines), so a
    record cut anywhere, even inside a quoted name, is left out."""
    records, start, quoted = [], 0, False
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif ch == "\n" and not quoted:
            records.append(text[start:i + 1])
            start = i + 1
    return records, start


@dataclass
class ResultRow:
    """One row already in an output file: its path (as written), failed or not, its text."""

    path: str
    failed: bool
    text: str


@dataclass
class OutputFile:
    """An output file opened for appending, locked against a second run, with the rows a
    previous run left (``--resume``). Open it with :func:`open_output`."""

    path: str
    fmt: str
    file: IO[str]
    rows: list[ResultRow] = field(default_factory=list)
    header: list[str] | None = None
    #: Bytes to keep when a crash cut the last row (removed by :meth:`repair`, so a resume
    #: that is then refused, for another model say, leaves the file untouched).
    cut_at: int | None = None

    def repair(self) -> None:
        """Remove a row a crash cut short, so appending goes on cleanly."""
        if self.cut_at is not None:
            self.file.seek(0)
            self.file.truncate(self.cut_at)
            self.file.seek(0, os.SEEK_END)
            self.cut_at = None

    #: Parquet: rows of the previous run that failed are not carried over (``--retry-failed``).
    drop_failed_rows: bool = False

    def check_kind(self, kind: str, per_frame: bool = False) -> None:
        """Raise when a resumed CSV or Parquet file was written for another kind of model
        (or per frame when this run is per video, or the reverse). A file from before videos
        (no video columns) is accepted; its rows go on in its layout."""
        if self.fmt == "parquet" and self.rows:
            _parquet_schema_check(self.path, kind, per_frame)
        expected = csv_header(kind, per_frame)
        allowed = [expected] if per_frame else [expected, legacy_csv_header(kind)]
        if self.fmt == "csv" and self.header is not None and self.header not in allowed:
            raise MusiqError(f"--resume: {self.path} has columns {','.join(self.header)}, "
                             f"expected {','.join(expected)} (another model kind, or "
                             "--per-frame differs?)")

    def drop_failed(self) -> int:
        """Remove the failed rows from the file (they are scored again); returns how many."""
        failed = [r for r in self.rows if r.failed]
        if failed and self.fmt == "parquet":  # the writer leaves them out of the new file
            self.rows = [r for r in self.rows if not r.failed]
            self.drop_failed_rows = True
        elif failed:
            self.rows = [r for r in self.rows if not r.failed]
            head = self._row_text(self.header) if self.header is not None else ""
            self.file.seek(0)
            self.file.truncate()
            self.file.write(head + "".join(r.text for r in self.rows))
            self.file.flush()
        return len(failed)

    @staticmethod
    def _row_text(values: list[str]) -> str:
        return CsvWriter._row(values)

    def done(self) -> set[str]:
        """Resolved paths of the rows present (see :func:`musiq.cli.inputs.resolved`)."""
        from .inputs import resolved
        return {resolved(r.path) for r in self.rows}

    def close(self) -> None:
        self.file.close()
        if self.fmt == "parquet":  # the lock file beside it
            try:
                os.unlink(self.file.name)
            except OSError:
                pass


def open_output(path: str, *, resume: bool, overwrite: bool) -> OutputFile:
    """Open (create) an output file for appending and lock it (``flock``: a second run on
    the same file is refused, never interleaved). With ``resume``, rows a crash cut short
    are removed exactly and the rows before them are read. Raises :class:`MusiqError` for a
    missing folder, an unwritable file, a file in use, or (without ``resume``/``overwrite``)
    an existing non-empty file."""
    fmt = file_format(path)
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise MusiqError(f"--output {path}: folder {folder} does not exist")
    if os.path.isdir(path):
        raise MusiqError(f"--output {path}: is a directory")
    exists = os.path.exists(path) and os.path.getsize(path) > 0
    if exists and not (resume or overwrite):
        raise MusiqError(f"--output {path} exists: add --resume to go on with it "
                         "or --overwrite to replace it")
    # Parquet is written beside the file and renamed over it at the end (ParquetWriter):
    # the lock is then held on OUT.lock, and the file itself is only read here.
    target = path + ".lock" if fmt == "parquet" else path
    try:
        f = open(target, "a+", encoding=ENCODING, errors=ERRORS, newline="")
    except OSError as e:
        raise MusiqError(f"--output {path}: cannot write ({e.strerror or e})") from None
    try:
        _lock(f, path)
        out = OutputFile(path, fmt, f)
        if resume and fmt == "parquet":
            if exists:
                _read_parquet_rows(out)
        elif resume:
            _read_rows(out)
        elif fmt != "parquet":
            f.seek(0)
            f.truncate()
    except BaseException:
        f.close()
        raise
    return out


def _lock(f: IO[str], path: str) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        return
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise MusiqError(f"--output {path} is being written by another musiq run (the file "
                         "is locked); wait for it to finish or use another file") from None


def _read_rows(out: OutputFile) -> None:
    f = out.file
    f.seek(0)
    text = f.read()
    if out.fmt == "csv":
        records, keep = csv_records(text)
    else:
        keep = text.rfind("\n") + 1
    if keep < len(text):  # a row cut by a crash: removed by OutputFile.repair
        text = text[:keep]
        out.cut_at = len(text.encode(ENCODING, ERRORS))
    f.seek(0, os.SEEK_END)
    if out.fmt == "jsonl":
        for n, line in enumerate(text.splitlines(keepends=True), 1):
            if line.strip():
                try:
                    obj = json.loads(line)
                    out.rows.append(ResultRow(obj["path"], obj.get("error") is not None, line))
                except (ValueError, KeyError, TypeError):
                    raise MusiqError(f"--resume: {out.path} line {n} is not a result "
                                     "row") from None
        return
    if not records:
        return
    out.header = next(csv.reader(io.StringIO(records[0])))
    for rec in records[1:]:
        cells = next(csv.reader(io.StringIO(rec)), None)
        if not cells:
            continue
        if len(cells) != len(out.header):
            raise MusiqError(f"--resume: {out.path} has a row with {len(cells)} columns, "
                             f"expected {len(out.header)}: {rec.strip()[:80]}")
        at = out.header.index("error") if "error" in out.header else 2
        error = cells[at] if len(cells) > at else ""
        out.rows.append(ResultRow(csv_unguard(cells[0]), bool(error), rec))


def _parquet_schema_check(path: str, kind: str, per_frame: bool = False) -> None:
    from ..tables import arrow_schema, require_pyarrow
    require_pyarrow()
    import pyarrow.parquet as pq
    try:
        schema = pq.read_schema(path)
    except Exception as e:
        raise MusiqError(f"--resume: {path} is not a readable Parquet file ({e})") from None
    expected = arrow_schema(kind, per_frame).names
    legacy = [] if per_frame else [n for n in expected if n not in VIDEO_COLUMNS]
    if schema.names not in (expected, legacy):
        raise MusiqError(f"--resume: {path} has columns {','.join(schema.names)}, expected "
                         f"{','.join(expected)} (another model kind, or --per-frame "
                         "differs?)")


def _read_parquet_as(path: str, schema):
    """A Parquet file's rows in ``schema`` (columns it lacks, from before videos, are null)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pq.read_table(path)
    columns = [table.column(f.name).cast(f.type) if f.name in table.column_names
               else pa.nulls(table.num_rows, f.type) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema.remove_metadata())


def _read_parquet_rows(out: "OutputFile") -> None:
    from ..tables import require_pyarrow
    require_pyarrow()
    import pyarrow.parquet as pq
    try:
        table = pq.read_table(out.path, columns=["path", "error"])
    except Exception as e:
        raise MusiqError(f"--resume: {out.path} is not a readable Parquet file ({e})") from None
    for path, error in zip(table.column("path").to_pylist(), table.column("error").to_pylist()):
        out.rows.append(ResultRow(path, error is not None, ""))
