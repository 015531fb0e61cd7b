"""Scatter plot of predictions against labels with the fitted logistic curve (PNG); several
models side by side, one panel each.

Needs matplotlib (the ``eval`` extra); drawn off-screen (Agg), no display needed.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from .metrics import LogisticFit


def scatter_plot(path: str | os.PathLike, pred: np.ndarray, label: np.ndarray,
                 fit: LogisticFit | None = None, *, title: str = "",
                 xlabel: str = "prediction", ylabel: str = "label (MOS)",
                 summary: str = "") -> Path:
    """Write a PNG (about 600x450 px) and return its path.

    ``summary``: text drawn in the upper-left corner (e.g. ``SRCC 0.91  PLCC 0.93``).
    """
    fig = _figure(6.0, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    _panel(ax, pred, label, fit, title=title, xlabel=xlabel, ylabel=ylabel, summary=summary)
    return save_figure(fig, path)


def panels_plot(path: str | os.PathLike, panels: list[dict], *, title: str = "") -> Path:
    """Several models side by side (issue 21): one panel per model, as :func:`scatter_plot`
    draws one (``panels``: dicts of its arguments ``pred``, ``label``, ``fit``, ``title``,
    ``xlabel``, ``ylabel``, ``summary``), at most 4 a row, the same label axis."""
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig = _figure(4.5 * cols, 4.2 * rows)
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
    for ax, panel in zip(axes.flat, panels):
        _panel(ax, **panel)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)


def _figure(width: float, height: float):
    import matplotlib
    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height), dpi=100)


def _panel(ax, pred: np.ndarray, label: np.ndarray, fit: LogisticFit | None = None, *,
           title: str = "", xlabel: str = "prediction", ylabel: str = "label (MOS)",
           summary: str = "") -> None:
    pred = np.asarray(pred, np.float64)
    label = np.asarray(label, np.float64)
    alpha = 0.8 if len(pred) <= 200 else max(0.15, 200.0 / len(pred))
    ax.scatter(pred, label, s=14, alpha=alpha, color="#1f77b4", edgecolors="none",
               label=f"images (n = {len(pred)})")
    if fit is not None and len(pred) > 1 and np.ptp(pred) > 0:
        xs = np.linspace(pred.min(), pred.max(), 200)
        name = "fitted 4-parameter logistic" if fit.kind == "logistic" else "fitted line"
        ax.plot(xs, fit(xs), color="#d62728", linewidth=2.0, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    if summary:
        ax.text(0.02, 0.98, summary, transform=ax.transAxes, va="top", ha="left",
                fontsize=9, family="monospace",
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "#cccccc"})
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, alpha=0.3)


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Write a matplotlib figure as PNG under a temporary name, then rename it (no half file)."""
    fig.tight_layout()
    path = Path(path)
    with atomic_write(path, "wb") as f:  # exclusive temporary file, renamed when whole
        fig.savefig(f, format="png")
    return path
