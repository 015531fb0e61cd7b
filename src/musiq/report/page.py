"""Build the report page: one HTML file with the scores as JSON, the script and styles
inline (package data in ``static/``), thumbnails embedded or in ``NAME_thumbs/`` beside it.

Rows are embedded in a compact form (null fields left out; the page derives each card's
name from its path) and written in chunks, so a million-row page is never held whole.

A several-model file (issue 21) embeds ``models`` (the names, in the file's order), one
``range`` and ``stats`` per model, and per row ``scores`` (one per model) with ``errors``,
``dists``, ``stds`` and ``curves`` where any model has them; the page ranks and filters by
the model picked and draws a scatter of two models' scores.
"""
from __future__ import annotations

import html
import os
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..atomic import atomic_write
from ..errors import MusiqError
from ..results.provenance import read_provenance
from .read import ScoreRow, read_scores
from .template import script_json, write_pieces
from .thumbs import make_thumbnails

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
#: Rows serialised per JSON call when the page is written.
CHUNK = 10_000


def _static(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


class Finder:
    """Where the images named in a scores file are: as written (relative to the current
    directory), else relative to the scores file's folder. A name that cannot be a file
    (too long, a NUL byte, a missing folder) is simply not found, never an error."""

    def __init__(self, scores_file: str | os.PathLike) -> None:
        self.base = os.path.dirname(os.fspath(scores_file))

    def __call__(self, path: str) -> str | None:
        if os.path.isfile(path):  # False on any OSError (ENAMETOOLONG included)
            return path
        if self.base and not os.path.isabs(path):
            cand = os.path.join(self.base, path)
            if os.path.isfile(cand):
                return cand
        return None


def locate(path: str, scores_file: Path) -> Path | None:
    """An image named in a scores file (see :class:`Finder`); None if it is not there."""
    found = Finder(scores_file)(path)
    return Path(found) if found is not None else None


def summary(rows: list[ScoreRow]) -> dict:
    """count, scored, failed, mean, min, max and the 5/25/50/75/95 % quantiles of the scores."""
    s = np.fromiter((r.score for r in rows if r.score is not None), np.float64)
    out: dict = {"count": len(rows), "scored": int(s.size), "failed": len(rows) - int(s.size)}
    if s.size:
        qs = np.quantile(s, QUANTILES)
        out.update(mean=float(s.mean()), min=float(s.min()), max=float(s.max()),
                   quantiles={f"{int(q * 100)}": float(v) for q, v in zip(QUANTILES, qs)})
    return out


def _row(r: ScoreRow, thumb: str | None) -> dict:
    d: dict = {"path": r.path}
    for key, value in (("score", r.score), ("error", r.error), ("std", r.std),
                       ("dist", r.distribution), ("thumb", thumb), ("curve", r.curve)):
        if value is not None:
            d[key] = value
    return d


def _multi_row(r: ScoreRow, thumb: str | None, names: Sequence[str]) -> dict:
    """A several-model row: per-model fields as lists in the order of ``names`` (a model
    missing from the row has null everywhere)."""
    models = [(r.models or {}).get(n) for n in names]
    d: dict = {"path": r.path, "scores": [m.score if m else None for m in models]}
    if r.error is not None:
        d["error"] = r.error
    for key, attr in (("errors", "error"), ("stds", "std"), ("dists", "distribution"),
                      ("curves", "curve")):
        values = [getattr(m, attr) if m else None for m in models]
        if any(v is not None for v in values):
            d[key] = values
    if thumb is not None:
        d["thumb"] = thumb
    return d


def model_names(rows: Sequence[ScoreRow]) -> list[str]:
    """The models of a several-model file, in order of first appearance ([] for one model)."""
    return list(dict.fromkeys(n for r in rows for n in (r.models or {})))


def model_rows(rows: Sequence[ScoreRow], name: str) -> list[ScoreRow]:
    """One model's results, one per row (a row without that model counts as failed)."""
    return [(r.models or {}).get(name) or ScoreRow(r.path, None, r.error or "not scored")
            for r in rows]


def _rows_json(rows: Sequence[ScoreRow], thumbs: Sequence[str | None],
               names: Sequence[str] = ()) -> Iterable[str]:
    yield "["
    for lo in range(0, len(rows), CHUNK):
        part = [_multi_row(r, t, names) if names else _row(r, t)
                for r, t in zip(rows[lo:lo + CHUNK], thumbs[lo:lo + CHUNK])]
        yield ("," if lo else "") + script_json(part)[1:-1]
    yield "]"


def _data_json(head: dict, rows: Sequence[ScoreRow], thumbs: Sequence[str | None]) -> \
        Iterable[str]:
    yield script_json(head)[:-1] + ',"rows":'
    yield from _rows_json(rows, thumbs, head.get("models") or ())
    yield "}"


def _range(rows: Sequence[ScoreRow], prov: dict | None) -> list[float] | None:
    """The model's score range: recorded in the provenance, else 1-10 for distributions
    (AVA), else None (the page uses the data's)."""
    rng = prov.get("score_range") if isinstance(prov, dict) else None
    if rng is None and any(r.distribution for r in rows):
        rng = [1.0, 10.0]
    return rng


def _describe(rows: list[ScoreRow], prov: dict | None) -> dict:
    """The page's ``model``, ``range`` and ``stats``; with several models also ``models``
    and one ``ranges``/``stats`` entry per model (``range``/``stats`` then the first's)."""
    names = model_names(rows)
    if not names:
        return {"model": prov.get("model") if prov else None, "range": _range(rows, prov),
                "stats": summary(rows)}
    records = prov.get("models") if isinstance(prov, dict) else None
    records = records if isinstance(records, dict) else {}
    per = [model_rows(rows, n) for n in names]
    ranges = [_range(r, records.get(n)) for n, r in zip(names, per)]
    stats = [summary(r) for r in per]
    return {"model": names[0], "models": names, "range": ranges[0], "ranges": ranges,
            "stats": stats[0], "model_stats": stats}


def check_output(output: Path) -> None:
    """Refuse an output whose folder is missing (named), or that is a folder, before any
    work (the folder is never created)."""
    folder = output.parent
    if not folder.is_dir():
        raise MusiqError(f"--output {output}: folder {folder} does not exist")
    if output.is_dir():
        raise MusiqError(f"--output {output}: is a directory")


def build_report(scores: str | os.PathLike, output: str | os.PathLike, *, embed: bool = False,
                 thumb_size: int = 192, workers: int | None = None, progress: bool = True,
                 title: str | None = None) -> Path:
    """Write the HTML report of ``scores`` to ``output`` and return its path.

    ``embed``: thumbnails as data URIs in the page (one self-contained file) instead of the
    folder ``OUTPUT-stem_thumbs/`` beside it. ``thumb_size``: longer side in px (16-1024).
    An image that cannot be found or read gets a card without a picture.
    """
    scores, output = Path(scores), Path(output)
    if not 16 <= thumb_size <= 1024:
        raise MusiqError("--thumb-size must be between 16 and 1024 pixels")
    check_output(output)
    rows = read_scores(scores)
    prov = read_provenance(scores)
    folder = None if embed else output.with_name(output.stem + "_thumbs")
    find = Finder(scores)
    thumbs = make_thumbnails([find(r.path) for r in rows], thumb_size,
                             folder=folder, workers=workers, progress=progress)
    head = {
        "title": title or f"musiq report: {scores.name}",
        "source": str(scores),
        "provenance": prov,
        **_describe(rows, prov),
    }
    values = {"TITLE": html.escape(head["title"]), "CSS": _static("report.css"),
              "DATA": _data_json(head, rows, thumbs), "JS": _static("report.js")}
    with atomic_write(output, "w", encoding="utf-8") as f:
        write_pieces(f, _static("report.html"), values)
    return output
