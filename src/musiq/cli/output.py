"""``musiq score``'s outputs: the CLI glue around :mod:`musiq.results` (the one codec).

The writers, output files, ``--resume`` and the formats live in :mod:`musiq.results`; this
module keeps their old names importable and prepares a run's output file: checks, repair,
``--retry-failed``, the paths already done and the writer (Parquet like the others).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys

from ..results.provenance import check_resume, read_provenance, write_sidecar
from ..results.columns import (CSV_FORMULA_START, ENCODING, ERRORS, csv_guard,  # noqa: F401
                               csv_header, csv_unguard, fmt_float)
from ..results.arrow import utf8_text
from ..results.csvfmt import render_row
from ..results.files import (FILE_FORMATS, OutputFile, ResultRow, file_format,  # noqa: F401
                             open_output, resolve)
from ..results.parquet import ParquetWriter
from ..results.rows import MultiPrediction, Prediction
from ..results.several import ModelSet
from ..results.several_writers import make_several_writer
from ..results.writers import (CsvWriter, JsonArrayWriter, JsonLinesWriter,  # noqa: F401
                               SeedWriter, TableWriter, Writer, make_writer, model_line)
from .video_options import check_video_resume, video_provenance

#: Provenance key: the absolute folder the file's relative paths are relative to (the
#: folder its first run was started in).
BASE_KEY = "paths_relative_to"


def csv_records(text: str) -> tuple[list[str], int]:
    """Whole CSV records of ``text`` (each with its newline) and the length they cover."""
    from ..results.csvfmt import _records
    recs = [t for _, t in _records(text, "text")]
    if recs and not recs[-1].endswith(("\n", "\r")):
        recs.pop()
    return recs, sum(map(len, recs))


class RebasedWriter:
    """Writes rows with relative paths made relative to the file's recorded folder (a run
    resumed from another folder keeps one meaning for every path in the file)."""

    def __init__(self, inner, base: str) -> None:
        self.inner, self.base = inner, base

    def write(self, p: Prediction | MultiPrediction) -> None:
        if not os.path.isabs(p.source):
            p = dataclasses.replace(p, source=os.path.relpath(os.path.abspath(p.source),
                                                              self.base))
        self.inner.write(p)

    def close(self) -> None:
        self.inner.close()


@dataclasses.dataclass
class Prepared:
    """A run's output file made ready: its writer, and the inputs still to score."""

    writer: object
    files: list[str]
    problems: list[Prediction] | list[MultiPrediction]
    skipped: int


def model_set(scorer) -> ModelSet | None:
    """The models of a several-model run (a :class:`~musiq.multi_scorer.MultiScorer`), in
    its order; None for one model's."""
    scorers = getattr(scorer, "scorers", None)
    return None if scorers is None else ModelSet.of({n: s.kind for n, s in scorers.items()})


def _file_order(models: ModelSet, provenance: dict, recorded: dict | None) -> ModelSet:
    """A resumed file's own order of the same models (its columns); ``provenance``'s
    ``models`` are put in that order too, so that the record keeps matching the file."""
    had = (recorded or {}).get("models")
    if isinstance(had, dict) and set(had) == set(models.names) and \
            list(had) != list(models.names):
        models = models.reordered(list(had))
        provenance["models"] = {n: provenance["models"][n] for n in models.names}
    return models


def prepare_output(output: OutputFile, scorer, args: argparse.Namespace, files: list[str],
                   problems: list[Prediction]) -> Prepared:
    """Check a resumed file (provenance, video settings, kind) before changing it in any
    way, then repair it, drop failed rows (``--retry-failed``), leave out the inputs already
    done (paths compared resolved, relative ones against the folder recorded for the file)
    and open the writer (``args.per_frame``: one row per video frame)."""
    per_frame = bool(getattr(args, "per_frame", False))
    provenance = scorer.provenance()
    if getattr(args, "sampling", None) is not None:
        provenance["video"] = video_provenance(args.sampling, per_frame)
    recorded = _recorded(output, provenance, args.resume)
    models = model_set(scorer)
    if models is not None:
        models = _file_order(models, provenance, recorded)
    layout = models if models is not None else scorer.kind
    output.check_kind(layout, per_frame)
    base = (recorded or {}).get(BASE_KEY)
    base = base if isinstance(base, str) and os.path.isabs(base) else os.getcwd()
    provenance = {**provenance, BASE_KEY: base}
    output.repair(layout, provenance, per_frame)
    if args.retry_failed:
        output.drop_failed()
    skipped = 0
    if args.resume:
        done = output.done(base)
        # Parquet holds UTF-8 text only: compare names as it wrote them.
        text = utf8_text if output.fmt == "parquet" else str
        before = len(files) + len(problems)
        files = [f for f in files if resolve(text(f)) not in done]
        problems = [p for p in problems if resolve(text(p.source)) not in done]
        skipped = before - len(files) - len(problems)
    write_sidecar(output.path, provenance)
    if output.fmt == "parquet":
        writer = ParquetWriter(output.path, layout, keep=bool(output.rows),
                               drop_failed=output.drop_failed_rows, provenance=provenance,
                               per_frame=per_frame)
    elif models is not None:
        writer = make_several_writer(output.fmt, output.file, models,
                                     header=not output.rows and output.header is None,
                                     columns=output.header)
    else:
        writer = make_writer(output.fmt, output.file, kind=scorer.kind,
                             header=not output.rows and output.header is None,
                             columns=output.header, per_frame=per_frame)
    if os.path.realpath(base) != os.path.realpath(os.getcwd()):
        writer = RebasedWriter(writer, base)
    return Prepared(writer, files, problems, skipped)


def _recorded(output: OutputFile, provenance: dict, resume: bool) -> dict | None:
    """The provenance recorded for a resumed file, checked against this run's (model, and
    how videos are sampled and pooled) before the file is changed in any way."""
    if not resume:
        return None
    if not (output.rows or output.header is not None or output.cut_at is not None
            or output.journal):
        return read_provenance(output.path) \
            if os.path.exists(output.path + ".meta.json") else None
    recorded = check_resume(output.path, provenance)
    if recorded is None:
        print(f"musiq score: warning: {output.path} has no provenance record "
              f"({output.path}.meta.json); cannot check it was made by this model",
              file=sys.stderr)
    if "video" in provenance:
        check_video_resume(output.path, recorded, provenance["video"])
    return recorded


def stop_on_sigterm() -> None:
    """SIGTERM (schedulers, container runtimes) ends a run as Ctrl-C does: the rows written
    stay, the files are closed whole and the lock is released."""
    def _raise(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second TERM ends at once
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not the main thread (embedded use): leave the handler alone
        pass


__all__ = ["open_output", "make_writer", "ParquetWriter", "prepare_output", "stop_on_sigterm",
           "file_format", "csv_header", "csv_guard", "csv_unguard", "fmt_float",
           "render_row", "ENCODING", "ERRORS"]
