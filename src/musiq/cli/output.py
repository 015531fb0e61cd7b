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
from ..scorer import Prediction

FILE_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def fmt_float(x: float | None) -> str:
    """Shortest text that reads back as the same float32 ('' for None)."""
    return "" if x is None else str(np.float32(x))


def csv_header(kind: str) -> list[str]:
    """CSV columns for a model kind (``mos``, ``distribution`` or ``imagenet``)."""
    header = ["path", "score", "error"]
    if kind == "distribution":
        header += ["std"] + [f"p{i}" for i in range(1, 11)]
    if kind == "imagenet":
        header += [f"top{i}_class" for i in range(1, 6)]
    return header


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
        if self.kind == "distribution":
            row += [fmt_float(p.std)] + ([fmt_float(v) for v in p.distribution]
                                         if p.distribution else [""] * 10)
        if self.kind == "imagenet":
            row += [t["class"] for t in p.top5] if p.top5 else [""] * 5
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


def model_line(model: str | None, score_range: tuple[float, float] | None) -> str:
    """``model koniq, scores 0 to 100`` (the table's first line)."""
    if not model:
        return ""
    rng = (f", scores {score_range[0]:g} to {score_range[1]:g}" if score_range is not None
           else "")
    return f"model {model}{rng}\n"


class TableWriter(Writer):
    def __init__(self, out: IO[str], width: int, model: str | None = None,
                 score_range: tuple[float, float] | None = None) -> None:
        super().__init__(out)
        self.width = max(width, 4)
        self.out.write(model_line(model, score_range))
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


def make_writer(fmt: str, out: IO[str], *, kind: str, width: int = 0, several: bool = True,
                header: bool = True, model: str | None = None,
                score_range: tuple[float, float] | None = None) -> Writer:
    """A writer for ``table``, ``json``, ``jsonl``, ``csv`` or ``seed``; the table names
    ``model`` and its ``score_range`` on its first line."""
    if fmt == "csv":
        return CsvWriter(out, kind, header=header)
    if fmt == "jsonl":
        return JsonLinesWriter(out)
    if fmt == "json":
        return JsonArrayWriter(out)
    if fmt == "seed":
        return SeedWriter(out, several)
    return TableWriter(out, width, model, score_range)


def file_format(path: str) -> str:
    """``csv`` or ``jsonl`` from an output file's suffix."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in FILE_FORMATS:
        raise MusiqError(f"--output {path}: use a .csv or .jsonl file name "
                         "(rows are appended as images finish)")
    return FILE_FORMATS[ext]


def done_paths(path: str, fmt: str, kind: str) -> set[str]:
    """Paths already in an output file (scored or failed), for ``--resume``.

    A last line cut short by a crash is removed from the file, so appending goes on cleanly.
    Raises :class:`MusiqError` if the file was written for another kind of model.
    """
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
