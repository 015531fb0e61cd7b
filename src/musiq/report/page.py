"""Build the report page: one HTML file with the scores as JSON, the script and styles
inline (package data in ``static/``), thumbnails embedded or in ``NAME_thumbs/`` beside it."""
from __future__ import annotations

import html
import json
import os
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import MusiqError
from ..provenance import read_provenance
from .read import ScoreRow, read_scores
from .thumbs import make_thumbnails

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _static(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


def locate(path: str, scores_file: Path) -> Path | None:
    """An image named in a scores file: as written (relative to the current directory),
    else relative to the scores file's folder; None if neither exists."""
    p = Path(path)
    for cand in ([p] if p.is_absolute() else [p, scores_file.parent / p]):
        if cand.is_file():
            return cand
    return None


def summary(rows: list[ScoreRow]) -> dict:
    """count, scored, failed, mean, min, max and the 5/25/50/75/95 % quantiles of the scores."""
    s = np.array([r.score for r in rows if r.score is not None], np.float64)
    out: dict = {"count": len(rows), "scored": int(s.size), "failed": len(rows) - int(s.size)}
    if s.size:
        out.update(mean=float(s.mean()), min=float(s.min()), max=float(s.max()),
                   quantiles={f"{int(q * 100)}": float(np.quantile(s, q)) for q in QUANTILES})
    return out


def build_report(scores: str | os.PathLike, output: str | os.PathLike, *, embed: bool = False,
                 thumb_size: int = 192, workers: int | None = None, progress: bool = True,
                 title: str | None = None) -> Path:
    """Write the HTML report of ``scores`` to ``output`` and return its path.

    ``embed``: thumbnails as data URIs in the page (one self-contained file) instead of the
    folder ``OUTPUT-stem_thumbs/`` beside it. ``thumb_size``: longer side in px (16-1024).
    """
    scores, output = Path(scores), Path(output)
    if not 16 <= thumb_size <= 1024:
        raise MusiqError("--thumb-size must be between 16 and 1024 pixels")
    rows = read_scores(scores)
    prov = read_provenance(scores)
    folder = None if embed else output.with_name(output.stem + "_thumbs")
    thumbs = make_thumbnails([locate(r.path, scores) for r in rows], thumb_size,
                             folder=folder, workers=workers, progress=progress)
    rng = prov.get("score_range") if prov else None
    if rng is None and any(r.distribution for r in rows):
        rng = [1.0, 10.0]
    data = {
        "title": title or f"musiq report: {scores.name}",
        "source": str(scores),
        "provenance": prov,
        "model": prov.get("model") if prov else None,
        "range": rng,
        "stats": summary(rows),
        "rows": [{"name": os.path.basename(r.path) or r.path, "path": r.path, "score": r.score,
                  "error": r.error, "std": r.std, "dist": r.distribution, "thumb": t,
                  "curve": r.curve}
                 for r, t in zip(rows, thumbs)],
    }
    payload = json.dumps(data, allow_nan=False).replace("</", "<\\/")
    page = (_static("report.html")
            .replace("{{TITLE}}", html.escape(data["title"]))
            .replace("{{CSS}}", _static("report.css"))
            .replace("{{DATA}}", payload)
            .replace("{{JS}}", _static("report.js")))
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".partial")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, output)
    return output
