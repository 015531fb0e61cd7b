"""Write predictions as they arrive: table, JSON array, JSON lines, CSV, or the seed's line.

Every writer flushes after each row, so results already written survive a crash or Ctrl-C.
Columns depend only on the model's kind (known before the first image), never on the data
(:mod:`musiq.results.columns`); Parquet is :class:`musiq.results.parquet.ParquetWriter`.
"""
from __future__ import annotations

import json
from typing import IO

from .columns import csv_header, csv_values, fmt_float, row_dict
from .csvfmt import render_row
from .frames import frame_predictions
from .rows import Prediction


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
    """CSV rows in :func:`csv_header`'s columns, or in ``columns`` (a resumed file's own);
    ``per_frame``: one row per video frame (:mod:`musiq.results.frames`)."""

    def __init__(self, out: IO[str], kind: str, header: bool = True,
                 columns: list[str] | None = None, per_frame: bool = False) -> None:
        super().__init__(out)
        self.kind, self.per_frame = kind, per_frame
        self.columns = list(columns) if columns else csv_header(kind, per_frame)
        if header:
            self.out.write(render_row(self.columns))
            self.out.flush()

    def render(self, p: Prediction) -> str:
        if not self.per_frame:
            return render_row(csv_values(p, self.columns))
        return "".join(render_row(csv_values(row, self.columns, frame))
                       for row, frame in frame_predictions(p))


class JsonLinesWriter(Writer):
    """One JSON object a line, every key of the kind in every row (null where absent)."""

    def __init__(self, out: IO[str], kind: str | None = None) -> None:
        super().__init__(out)
        self.kind = kind

    def row(self, p: Prediction) -> dict:
        """The JSON object of one row."""
        return row_dict(p, self.kind) if self.kind else p.to_dict()

    def render(self, p: Prediction) -> str:
        return json.dumps(self.row(p)) + "\n"


class JsonArrayWriter(JsonLinesWriter):
    """A JSON array streamed element by element (valid JSON once closed)."""

    def __init__(self, out: IO[str], kind: str | None = None) -> None:
        super().__init__(out, kind)
        self.count = 0
        self.out.write("[")

    def render(self, p: Prediction) -> str:
        text = json.dumps(self.row(p), indent=2).replace("\n", "\n  ")
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
    """Aligned text for a terminal; a video's frame count and spread in ``info``, and
    (``per_frame``) a line per frame under it."""

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
            video = f"{p.frames} frames" + (f", spread {p.spread:.4f}"
                                             if p.spread is not None else "")
            info = f"{video}; {info}" if info else video
        score = "-" if p.score is None else f"{p.score:.6f}"
        line = f"{p.source:<{self.width}}  {score:>11}  {info}\n"
        if self.per_frame:
            line += "".join(self._frame_line(f) for f in p.frame_scores or [])
        return line

    def _frame_line(self, f: dict) -> str:
        score = "-" if f.get("score") is None else f"{f['score']:.6f}"
        at = f" at {f['time']:.3f} s" if f.get("time") is not None else ""
        return f"{'':<{self.width}}  {score:>11}  frame {f.get('frame')}{at}\n"


class SeedWriter(Writer):
    """The original tool's ``MUSIQ score: <value>`` line (prefixed by the path when several)."""

    def __init__(self, out: IO[str], several: bool) -> None:
        super().__init__(out)
        self.several = several

    def render(self, p: Prediction) -> str:
        prefix = f"{p.source}: " if self.several else ""
        if p.error is None:
            return f"{prefix}MUSIQ score: {fmt_float32(p.score)}\n"
        return f"{prefix}MUSIQ error: {p.error}\n"


def fmt_float32(x: float | None) -> str:
    """The seed tool's form: shortest text of the float32 value ('' for None)."""
    import numpy as np
    return "" if x is None else str(np.float32(x))


def make_writer(fmt: str, out: IO[str], *, kind: str, width: int = 0, several: bool = True,
                header: bool = True, model: str | None = None,
                score_range: tuple[float, float] | None = None,
                columns: list[str] | None = None, per_frame: bool = False) -> Writer:
    """A writer for ``table``, ``json``, ``jsonl``, ``csv`` or ``seed``; the table names
    ``model`` and its ``score_range`` on its first line; ``columns``: a resumed CSV's own;
    ``per_frame``: CSV and the table show one row per video frame (JSON always nests
    ``frame_scores``)."""
    if fmt == "csv":
        return CsvWriter(out, kind, header=header, columns=columns, per_frame=per_frame)
    if fmt == "jsonl":
        return JsonLinesWriter(out, kind)
    if fmt == "json":
        return JsonArrayWriter(out, kind)
    if fmt == "seed":
        return SeedWriter(out, several)
    return TableWriter(out, width, model, score_range, per_frame)
