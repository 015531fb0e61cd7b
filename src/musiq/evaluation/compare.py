"""Several models on the same labels: each image decoded once, every model scores it
(:class:`musiq.multi_scorer.MultiScorer`), one :class:`~.core.Evaluation` per model.

A model's evaluation here is exactly its single-model one: the same scores, the same items
(an image one model fails on is left out of that model's statistics only), the same
bootstrap seed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..multi_scorer import MultiScorer
from ..video_scoring import VideoSampling
from .core import Evaluation, collect, conclude, summary_text, write_json
from .labels import LabelItem


@dataclass
class Comparison:
    """Several models' :class:`Evaluation` on the same labels, in the order given.

    ``results[name]`` (or ``comparison[name]``) is that model's evaluation; ``plot`` the
    figure with one panel per model, when one was asked for."""

    labels: str
    results: dict[str, Evaluation]
    plot: str | None = None

    @property
    def names(self) -> list[str]:
        return list(self.results)

    def __getitem__(self, name: str) -> Evaluation:
        return self.results[name]

    @property
    def failed(self) -> list[dict]:
        """Every model's failures, each with its ``model``."""
        return [{"model": n, **f} for n, e in self.results.items() for f in e.failed]

    def to_dict(self, items: bool = False) -> dict:
        """``{"labels", "models": {name: that model's Evaluation.to_dict()}}`` (and
        ``plot``); ``items=True`` adds each model's per-image predictions."""
        d: dict = {"labels": self.labels,
                   "models": {n: e.to_dict(items=items) for n, e in self.results.items()}}
        if self.plot:
            d["plot"] = self.plot
        return d


def evaluate_several(panel: MultiScorer, items: list[LabelItem], label_name: str, *,
                     batch_size: int = 8, bootstrap: int = 1000, confidence: float = 0.95,
                     seed: int = 0, emd_r: float = 1.0, plot: str | os.PathLike | None = None,
                     report: str | os.PathLike | None = None,
                     progress: Callable[[int, int], None] | None = None,
                     video: VideoSampling | None = None) -> Comparison:
    """Score ``items`` with every model of ``panel`` in one pass and evaluate each (see
    :func:`musiq.evaluation.core.evaluate`, which calls this for several models)."""
    rows = []
    for k, row in enumerate(panel.predict_files((it.path for it in items), video,
                                                batch_size=batch_size)):
        rows.append(row)
        if progress is not None:
            progress(k + 1, len(items))
    results = {}
    for name in panel.names:
        scored, failed = collect(items, (row.models[name] for row in rows))
        results[name] = conclude(name, label_name, len(items), scored, failed,
                                 bootstrap=bootstrap, confidence=confidence, seed=seed,
                                 emd_r=emd_r, who=f"model {name}: ")
    out = Comparison(label_name, results)
    if plot is not None:
        _plot(plot, out)
        out.plot = str(plot)
    if report is not None:
        write_json(report, out.to_dict(items=True))
    return out


def _plot(path: str | os.PathLike, comparison: Comparison) -> None:
    from .plot import panels_plot
    panels = []
    for name, e in comparison.results.items():
        panels.append({"pred": np.array([r["prediction"] for r in e.items]),
                       "label": np.array([r["label"] for r in e.items]), "fit": e.fit,
                       "title": name, "xlabel": f"prediction ({name})", "ylabel": "label",
                       "summary": summary_text(e.stats)})
    panels_plot(path, panels, title=f"{', '.join(comparison.names)} on "
                                    f"{Path(comparison.labels).name}")
