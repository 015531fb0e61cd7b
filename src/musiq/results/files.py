"""Score files a run appends to: opened, locked, read back for ``--resume`` and repaired.

Every format is read by the same codec the writers use (:mod:`musiq.results.read`). A row a
crash cut short (only the *final* record lacking its newline) is removed exactly; anything
else that is not whole rows is refused with the file untouched. Files are replaced only by
writing aside and renaming (:mod:`musiq.atomic`); lock files are never opened through a
symbolic link.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import IO

from ..atomic import create_exclusive
from ..errors import MusiqError
from .columns import ENCODING, ERRORS
from .csvfmt import parse_csv
from .jsonfmt import parse_jsonl
from .parquet import journal_path, read_parquet
from .rows import MultiPrediction
from .several import ModelSet

FILE_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


@dataclass
class ResultRow:
    """One row already in an output file: its path (as written), failed or not (for several
    models: any model failed), its text, and (JSON lines) its models' names when it is a
    several-model row."""

    path: str
    failed: bool
    text: str
    models: tuple[str, ...] | None = None


@dataclass
class OutputFile:
    """An output file opened for appending, locked against a second run, with the rows a
    previous run left (``--resume``). Open it with :func:`musiq.results.open_output`."""

    path: str
    fmt: str
    file: IO[str]
    rows: list[ResultRow] = field(default_factory=list)
    header: list[str] | None = None
    #: Bytes to keep when a crash cut the last row (removed by :meth:`repair`, so a resume
    #: that is then refused, for another model say, leaves the file untouched).
    cut_at: int | None = None
    #: Parquet: rows of the previous run that failed are not carried over (``--retry-failed``).
    drop_failed_rows: bool = False
    #: Parquet: a journal left by a killed run, folded in by :meth:`repair`.
    journal: bool = False
    #: Parquet: the lock file beside it (removed on :meth:`close`).
    lock_path: str | None = None

    def repair(self, kind: str | None = None, provenance: dict | None = None,
               per_frame: bool = False) -> None:
        """Remove a row a crash cut short (CSV, JSONL) or fold a killed Parquet run's journal
        into the file (``per_frame``: its layout), so appending goes on cleanly."""
        if self.cut_at is not None:
            self.file.seek(0)
            self.file.truncate(self.cut_at)
            self.file.seek(0, os.SEEK_END)
            self.cut_at = None
        if self.journal and kind is not None:
            from .parquet import fold_journal
            fold_journal(self.path, kind, provenance, per_frame)
            self.journal = False

    def check_kind(self, kind: "str | ModelSet", per_frame: bool = False) -> None:
        """Raise when a resumed file was written for another kind of model, or per frame
        when this run is per video (``per_frame``) or the reverse, or (``kind`` a
        :class:`ModelSet`) for other models. A file from before videos (no video columns)
        is accepted."""
        from .columns import VIDEO_COLUMNS, accepted_headers
        if isinstance(kind, ModelSet) or any(r.models is not None for r in self.rows):
            return self._check_models(kind if isinstance(kind, ModelSet) else None)
        why = "(another model kind, or --per-frame differs?)"
        if self.fmt == "parquet" and os.path.exists(self.path):
            from .arrow import arrow_schema
            from .parquet import parquet_schema_names
            names, want = parquet_schema_names(self.path), arrow_schema(kind, per_frame).names
            before_videos = [n for n in want if n not in VIDEO_COLUMNS]
            if names != want and (per_frame or names != before_videos):
                raise MusiqError(f"--resume: {self.path} has columns {','.join(names)}, "
                                 f"expected {','.join(want)} {why}")
        if self.fmt == "csv" and self.header is not None and \
                self.header not in accepted_headers(kind, per_frame):
            want = accepted_headers(kind, per_frame)[0]
            raise MusiqError(f"--resume: {self.path} has columns {','.join(self.header)}, "
                             f"expected {','.join(want)} {why}")

    def _check_models(self, models: "ModelSet | None") -> None:
        """Raise unless the resumed file holds rows of exactly these models (``None``: one
        model's rows), in the columns this run writes."""
        from .several import several_csv_header
        from .several_arrow import several_arrow_names
        names = list(models.names) if models is not None else None
        which = f"models {','.join(names)}" if names else "one model"
        refuse = f"--resume: {self.path} was written with other models than this run's " \
                 f"({which}); the file is left untouched: use another --output or --overwrite"
        for row in self.rows:  # CSV and Parquet files' own rows: their columns are checked
            if self.fmt != "jsonl" and row.models is None:
                continue
            if (row.models is None) != (names is None) or \
                    (names is not None and set(row.models or ()) != set(names)):
                raise MusiqError(refuse)
        if names is None:
            return
        if self.fmt == "parquet" and os.path.exists(self.path):
            from .parquet import parquet_schema_names
            if parquet_schema_names(self.path) != several_arrow_names(models):
                raise MusiqError(refuse)
        if self.fmt == "csv" and self.header is not None and \
                self.header != several_csv_header(models):
            raise MusiqError(refuse)

    def drop_failed(self) -> int:
        """Remove the failed rows (they are scored again); returns how many. CSV and JSONL
        are rewritten aside and renamed over the file, never truncated in place."""
        failed = [r for r in self.rows if r.failed]
        self.rows = [r for r in self.rows if not r.failed]
        if failed and self.fmt == "parquet":  # the writer leaves them out of the new file
            self.drop_failed_rows = True
        elif failed:
            from .csvfmt import render_row
            head = render_row(self.header) if self.header is not None else ""
            self._replace(head + "".join(r.text for r in self.rows))
        return len(failed)

    def _replace(self, text: str) -> None:
        """Write ``text`` to a new file beside the output, lock it, rename it over the output
        and append to it from then on (the lock never leaves the file's current inode)."""
        from ..atomic import temp_path
        tmp = temp_path(self.path)
        new = create_exclusive(tmp, "w", encoding=ENCODING, newline="")
        try:
            new.reconfigure(errors=ERRORS)
            new.write(text)
            new.flush()
            os.fsync(new.fileno())
            _lock(new, self.path)
            os.replace(tmp, self.path)
        except BaseException:
            new.close()
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        self.file.close()
        self.file = new

    def done(self, base: str | None = None) -> set[str]:
        """Resolved paths of the rows present; relative ones are taken relative to ``base``
        (the folder the file's runs were started in; default: the current one)."""
        return {resolve(r.path, base) for r in self.rows}

    def close(self) -> None:
        if self.lock_path is not None:  # removed while still held: no second run slips in
            try:
                os.unlink(self.lock_path)
            except OSError:
                pass
        self.file.close()


def resolve(path: str, base: str | None = None) -> str:
    """The absolute, symlink-free form of ``path`` (relative to ``base`` when given)."""
    if base is not None and not os.path.isabs(path):
        path = os.path.join(base, path)
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return os.path.abspath(path)


def file_format(path: str) -> str:
    """``csv``, ``jsonl`` or ``parquet`` from an output file's suffix."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in FILE_FORMATS:
        raise MusiqError(f"--output {path}: use a .csv or .jsonl file name (or .parquet) "
                         "(rows are appended as images finish)")
    return FILE_FORMATS[ext]


def _lock(f: IO, path: str) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        return
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise MusiqError(f"--output {path} is being written by another musiq run (the file "
                         "is locked); wait for it to finish or use another file") from None


def _open_target(target: str, path: str, nofollow: bool) -> IO[str]:
    """Open (create) ``target`` for reading and appending (``nofollow``: never through a
    symbolic link; the lock file beside a Parquet output)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | (_NOFOLLOW if nofollow else 0)
    try:
        fd = os.open(target, flags, 0o644)
    except OSError as e:
        why = "a symbolic link there is never followed" if os.path.islink(target) else \
            (e.strerror or str(e))
        raise MusiqError(f"--output {path}: cannot write {target} ({why})") from None
    return os.fdopen(fd, "a+", encoding=ENCODING, errors=ERRORS, newline="")


def open_output(path: str, *, resume: bool, overwrite: bool) -> OutputFile:
    """Open (create) an output file for appending and lock it (``flock``: a second run on
    the same file is refused, never interleaved). With ``resume`` the rows a previous run
    left are read (see the module). Raises :class:`MusiqError` for a missing folder, an
    unwritable file, a file in use, or (without ``resume``/``overwrite``) an existing one."""
    fmt = file_format(path)
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise MusiqError(f"--output {path}: folder {folder} does not exist")
    if os.path.isdir(path):
        raise MusiqError(f"--output {path}: is a directory")
    journal = fmt == "parquet" and os.path.lexists(journal_path(path))
    exists = (os.path.exists(path) and os.path.getsize(path) > 0) or journal
    if exists and not (resume or overwrite):
        raise MusiqError(f"--output {path} exists: add --resume to go on with it "
                         "or --overwrite to replace it")
    # Parquet is rewritten at the end (musiq.results.parquet): the lock is held on OUT.lock.
    target = path + ".lock" if fmt == "parquet" else path
    f = _open_target(target, path, nofollow=fmt == "parquet")
    try:
        _lock(f, path)
        if fmt == "parquet" and os.path.lexists(target) and \
                os.stat(target, follow_symlinks=False).st_ino != os.fstat(f.fileno()).st_ino:
            raise MusiqError(f"--output {path} is being written by another musiq run")
        out = OutputFile(path, fmt, f, journal=journal and resume,
                         lock_path=target if fmt == "parquet" else None)
        if resume:
            _read_rows(out)
        elif fmt != "parquet":
            f.seek(0)
            f.truncate()
    except BaseException:
        f.close()
        raise
    return out


def _read_rows(out: OutputFile) -> None:
    if out.fmt == "parquet":
        for p in read_parquet(out.path, columns=["path", "error"]):
            out.rows.append(ResultRow(p.source, not p.ok, "", tuple(p.models)
                                      if isinstance(p, MultiPrediction) else None))
        return
    out.file.seek(0)
    text = out.file.read()
    out.file.seek(0, os.SEEK_END)
    where = f"--resume: {out.path}"
    if out.fmt == "jsonl":
        lines, kept = parse_jsonl(text, where)
        out.rows = [ResultRow(r.prediction.source, not r.prediction.ok, r.text,
                              tuple(r.prediction.models)
                              if isinstance(r.prediction, MultiPrediction) else None)
                    for r in lines]
    else:
        parsed = parse_csv(text, where)
        kept, out.header = parsed.kept, parsed.header
        if out.header is not None and "path" not in out.header:
            raise MusiqError(f"{where}: not a musiq CSV (no 'path' column); left untouched")
        if out.header is not None:
            from .columns import prediction_from_cells
            for rec in parsed.records:
                p = prediction_from_cells(dict(zip(out.header, rec.cells)))
                out.rows.append(ResultRow(p.source, not p.ok, rec.text))
    if kept < len(text):  # a row cut by a crash: removed by OutputFile.repair
        out.cut_at = len(text[:kept].encode(ENCODING, ERRORS))
