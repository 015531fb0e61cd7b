"""Write several-model rows (:class:`MultiPrediction`) as they arrive: table, JSON array,
JSON lines, CSV, or the seed's lines; columns from :mod:`musiq.results.several` (the models'
names and kinds, known before the first image). Each writer flushes after every row, as the
one-model writers (:mod:`musiq.results.writers`) do; Parquet is
:class:`musiq.results.parquet.ParquetWriter` given a :class:`ModelSet`.
"""
from __future__ import annotations

from typing import IO

from .csvfmt import render_row
from .rows import MultiPrediction
from .several import ModelSet, several_csv_header, several_csv_values, several_row_dict
from .writers import JsonArrayWriter, JsonLinesWriter, Writer, fmt_float32

__all__ = ["SeveralCsvWriter", "SeveralJsonLinesWriter", "SeveralJsonArrayWriter",
           "SeveralTableWriter", "SeveralSeedWriter", "make_several_writer"]


class SeveralCsvWriter(Writer):
    """CSV rows in :func:`several_csv_header`'s columns (or a resumed file's own)."""

    def __init__(self, out: IO[str], models: ModelSet, header: bool = True,
                 columns: list[str] | None = None) -> None:
        super().__init__(out)
        self.models = models
        self.columns = list(columns) if columns else several_csv_header(models)
        if header:
            self.out.write(render_row(self.columns))
            self.out.flush()

    def render(self, p: MultiPrediction) -> str:  # type: ignore[override]
        return render_row(several_csv_values(p, self.columns, self.models))


class SeveralJsonLinesWriter(JsonLinesWriter):
    """One JSON object a line, every model's every key in every row."""

    def __init__(self, out: IO[str], models: ModelSet) -> None:
        super().__init__(out)
        self.models = models

    def row(self, p: MultiPrediction) -> dict:  # type: ignore[override]
        return several_row_dict(p, self.models)


class SeveralJsonArrayWriter(JsonArrayWriter):
    """A JSON array streamed element by element (valid JSON once closed)."""

    def __init__(self, out: IO[str], models: ModelSet) -> None:
        self.models = models
        super().__init__(out)

    row = SeveralJsonLinesWriter.row


class SeveralTableWriter(Writer):
    """Aligned text: a score column per model (``-`` where it failed), then the failures.
    The first line names each model's score range (``ranges``: name -> (low, high))."""

    def __init__(self, out: IO[str], width: int, models: ModelSet,
                 ranges: dict[str, tuple[float, float] | None] | None = None) -> None:
        super().__init__(out)
        self.width, self.models = max(width, 4), models
        self.widths = [max(len(n), 11) for n in models.names]
        ranges = ranges or {}
        said = [n + (f" ({r[0]:g} to {r[1]:g})" if (r := ranges.get(n)) else "")
                for n in models.names]
        self.out.write(f"models {', '.join(said)}\n")
        heads = "  ".join(f"{n:>{w}}" for n, w in zip(models.names, self.widths))
        self.out.write(f"{'path':<{self.width}}  {heads}  info\n")

    def render(self, p: MultiPrediction) -> str:  # type: ignore[override]
        cells = []
        for name, w in zip(self.models.names, self.widths):
            pred = p.models.get(name)
            score = "-" if pred is None or pred.score is None else f"{pred.score:.6f}"
            cells.append(f"{score:>{w}}")
        info = f"ERROR: {p.failure}" if p.failure else ""
        return f"{p.source:<{self.width}}  {'  '.join(cells)}  {info}".rstrip() + "\n"


class SeveralSeedWriter(Writer):
    """The seed tool's line once per model: ``MUSIQ score (koniq): <value>`` (prefixed by
    the path when several files are scored)."""

    def __init__(self, out: IO[str], several: bool, models: ModelSet) -> None:
        super().__init__(out)
        self.several, self.models = several, models

    def render(self, p: MultiPrediction) -> str:  # type: ignore[override]
        prefix = f"{p.source}: " if self.several else ""
        if p.error is not None:
            return f"{prefix}MUSIQ error: {p.error}\n"
        lines = []
        for name in self.models.names:
            pred = p.models.get(name)
            if pred is not None and pred.error is None:
                lines.append(f"{prefix}MUSIQ score ({name}): {fmt_float32(pred.score)}\n")
            else:
                why = pred.error if pred is not None else "not scored"
                lines.append(f"{prefix}MUSIQ error ({name}): {why}\n")
        return "".join(lines)


def make_several_writer(fmt: str, out: IO[str], models: ModelSet, *, width: int = 0,
                        several: bool = True, header: bool = True,
                        ranges: dict | None = None,
                        columns: list[str] | None = None) -> Writer:
    """A several-model writer for ``table``, ``json``, ``jsonl``, ``csv`` or ``seed``;
    ``ranges``: each model's score range for the table's first line; ``columns``: a
    resumed CSV's own."""
    if fmt == "csv":
        return SeveralCsvWriter(out, models, header=header, columns=columns)
    if fmt == "jsonl":
        return SeveralJsonLinesWriter(out, models)
    if fmt == "json":
        return SeveralJsonArrayWriter(out, models)
    if fmt == "seed":
        return SeveralSeedWriter(out, several, models)
    return SeveralTableWriter(out, width, models, ranges)
