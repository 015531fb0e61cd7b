"""Evaluate a model on labelled images: correlation statistics, a plot and a JSON report.

    >>> import musiq
    >>> result = musiq.evaluate("koniq", "labels.csv", images="photos/")
    >>> result.srcc, result.plcc
    >>> result.to_dict()        # n, srcc, plcc, krcc, rmse, ... with bootstrap intervals
    >>> several = musiq.evaluate("koniq,spaq", "labels.csv")   # a Comparison
    >>> several["spaq"].srcc, several.to_dict()["models"]["koniq"]["plcc"]

The model scores every labelled image through :class:`musiq.Scorer` (the same path as
``musiq score``). An image that cannot be scored (missing, corrupt) is reported in
``failed`` and left out; the rest are evaluated.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from ..atomic import atomic_write
from ..errors import MusiqError
from .labels import LabelColumns, LabelItem, read_labels
from .metrics import LogisticFit, agreement, emd
from ..scorer import Scorer, load

if TYPE_CHECKING:
    from ..multi_scorer import MultiScorer
    from ..video_scoring import VideoSampling
    from .compare import Comparison


@dataclass
class Evaluation:
    """The outcome of :func:`evaluate`.

    ``stats``: what :func:`musiq.evaluation.metrics.agreement` returns (``n``, ``srcc``, ``plcc``,
    ``plcc_logistic``, ``krcc``, ``rmse``, ``rmse_logistic``, ``ci``, ``logistic``);
    ``emd``: mean EMD between predicted and label distributions (10-class model on
    distribution labels only) with ``emd_ci``; ``items``: per image ``image``, ``label``,
    ``prediction`` (and ``distribution``); ``failed``: ``image``, ``path``, ``error``.
    """

    model: str
    labels: str
    stats: dict
    items: list[dict]
    failed: list[dict] = field(default_factory=list)
    emd: float | None = None
    emd_ci: list[float] | None = None
    emd_r: float = 1.0
    plot: str | None = None

    @property
    def n(self) -> int:
        return int(self.stats["n"])

    def __getattr__(self, name: str):
        stats = self.__dict__.get("stats", {})
        if name in stats:
            return stats[name]
        raise AttributeError(name)

    @property
    def fit(self) -> LogisticFit:
        return LogisticFit(tuple(self.stats["logistic"]["params"]),
                           self.stats["logistic"]["kind"])

    def to_dict(self, items: bool = False) -> dict:
        """JSON-ready summary; ``items=True`` adds the per-image predictions."""
        d = {"model": self.model, "labels": self.labels, **self.stats}
        if self.emd is not None:
            d.update(emd=self.emd, emd_ci=self.emd_ci, emd_r=self.emd_r)
        d["n_failed"] = len(self.failed)
        d["failed"] = self.failed
        if self.plot:
            d["plot"] = self.plot
        if items:
            d["items"] = self.items
        return d


def evaluate(model: str | os.PathLike | Scorer | MultiScorer | list, labels: str | os.PathLike | list[LabelItem],
             images: str | os.PathLike | None = None, *,
             columns: LabelColumns = LabelColumns(), batch_size: int = 8,
             bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0,
             emd_r: float = 1.0, plot: str | os.PathLike | None = None,
             report: str | os.PathLike | None = None, device: str | None = "auto",
             progress: Callable[[int, int], None] | None = None,
             video: VideoSampling | None = None) -> Evaluation | Comparison:
    """Score every labelled image with ``model`` and compare with the labels.

    ``model``: a registry name, a ``.npz`` path or a loaded :class:`Scorer`; several models
    (a list, ``"koniq,spaq"``, ``"all"`` or a :class:`~musiq.multi_scorer.MultiScorer`)
    score each image from one decode and give a :class:`~.compare.Comparison`: per model
    the :class:`Evaluation` it would have alone, the plot one panel per model;
    ``labels``: a label file (see :mod:`musiq.evaluation.labels`, ``columns`` says where things are)
    or items already read; ``images``: the folder image names are relative to (default:
    the label file's folder). ``bootstrap``: resamples for the confidence intervals (0 for
    none). ``plot``/``report``: write the scatter PNG / the full JSON report there.
    ``progress(done, total)`` is called after each image. Labelled videos are scored as
    :func:`musiq.video_scoring.predict_video` does (``video``: their sampling and pooling,
    default one frame a second, mean); a video decoded only in part counts as failed.
    """
    from ..multi_scorer import MultiScorer
    from ..video_scoring import VideoSampling, predict_files
    scorer = model if isinstance(model, (Scorer, MultiScorer)) else load(model, device=device)
    items = labels if isinstance(labels, list) else read_labels(labels, images, columns)
    label_name = "<items>" if isinstance(labels, list) else str(labels)
    if isinstance(scorer, MultiScorer):
        from .compare import evaluate_several
        return evaluate_several(scorer, items, label_name, batch_size=batch_size,
                                bootstrap=bootstrap, confidence=confidence, seed=seed,
                                emd_r=emd_r, plot=plot, report=report, progress=progress,
                                video=video)
    preds = predict_files(scorer, (it.path for it in items), video or VideoSampling(),
                          batch_size=batch_size)
    results, failed = collect(items, preds, progress)
    out = conclude(scorer.name, label_name, len(items), results, failed, bootstrap=bootstrap,
                   confidence=confidence, seed=seed, emd_r=emd_r)
    pred = np.array([r["prediction"] for r in results])
    label = np.array([r["label"] for r in results])
    stats = out.stats
    if plot is not None:
        from .plot import scatter_plot
        scatter_plot(plot, pred, label, out.fit,
                     title=f"{scorer.name} on {Path(label_name).name}",
                     xlabel=f"prediction ({scorer.name})", ylabel="label",
                     summary=summary_text(stats))
        out.plot = str(plot)
    if report is not None:
        write_json(report, out.to_dict(items=True))
    return out


def collect(items: list[LabelItem], preds: Iterable, progress=None
            ) -> tuple[list[dict], list[dict]]:
    """Per image ``image``, ``label``, ``prediction`` (and the distributions) of the scored
    items, and ``image``, ``path``, ``line``, ``error`` of those that failed; ``preds``: one
    prediction per item, in order. ``progress(done, total)`` after each."""
    results, failed = [], []
    for k, (item, pred) in enumerate(zip(items, preds)):
        if pred.error is not None:
            failed.append({"image": item.name, "path": str(item.path), "line": item.line,
                           "error": pred.error})
        else:
            row = {"image": item.name, "label": item.mos, "prediction": pred.score}
            if pred.distribution is not None:
                row["distribution"] = pred.distribution
            if item.distribution is not None:
                row["label_distribution"] = [float(v) for v in item.distribution]
            results.append(row)
        if progress is not None:
            progress(k + 1, len(items))
    return results, failed


def conclude(name: str, label_name: str, total: int, results: list[dict], failed: list[dict],
             *, bootstrap: int, confidence: float, seed: int, emd_r: float,
             who: str = "") -> Evaluation:
    """The :class:`Evaluation` of one model's :func:`collect` (at least 2 scored images, else
    :class:`MusiqError`; ``who``: a prefix naming the model in that message)."""
    if len(results) < 2:
        raise MusiqError(f"{label_name}: {who}only {len(results)} of {total} labelled images "
                         f"could be scored; need at least 2"
                         + (f" (first failure: {failed[0]['path']}: {failed[0]['error']})"
                            if failed else ""))
    pred = np.array([r["prediction"] for r in results])
    label = np.array([r["label"] for r in results])
    stats = agreement(pred, label, bootstrap=bootstrap, confidence=confidence, seed=seed)
    out = Evaluation(model=name, labels=label_name, stats=stats, items=results,
                     failed=failed, emd_r=emd_r)
    _add_emd(out, results, bootstrap, confidence, seed, emd_r)
    return out


def summary_text(s: dict) -> str:
    """The statistics drawn in a plot's corner."""
    return (f"SRCC {s['srcc']:.3f}  PLCC {s['plcc']:.3f}\n"
            f"KRCC {s['krcc']:.3f}  PLCC(logistic) {s['plcc_logistic']:.3f}\nn = {s['n']}")


def _add_emd(out: Evaluation, results: list[dict], bootstrap: int, confidence: float,
             seed: int, r: float) -> None:
    pairs = [(x["distribution"], x["label_distribution"]) for x in results
             if "distribution" in x and "label_distribution" in x
             and len(x["distribution"]) == len(x["label_distribution"])]
    if len(pairs) != len(results) or not pairs:
        return
    d = emd(np.array([p for p, _ in pairs]), np.array([q for _, q in pairs]), r)
    for x, v in zip(results, d):
        x["emd"] = float(v)
    out.emd = float(d.mean())
    if bootstrap > 0:
        rng = np.random.default_rng(seed + 1)
        means = [d[rng.integers(0, len(d), len(d))].mean() for _ in range(bootstrap)]
        a = (1.0 - confidence) / 2.0
        out.emd_ci = [float(v) for v in np.quantile(means, [a, 1.0 - a])]


def write_json(path: str | os.PathLike, data: dict) -> Path:
    """Write JSON atomically (NaN written as null)."""
    path = Path(path)
    with atomic_write(path, "w") as f:
        f.write(json.dumps(json_safe(data), indent=2) + "\n")
    return path


def json_safe(x):
    """NaN/inf -> None recursively, so the JSON is standard."""
    if isinstance(x, float):
        return x if np.isfinite(x) else None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x
