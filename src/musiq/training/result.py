"""What a fine-tuning run produced (:class:`TrainResult`) and the trainer's small helpers."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import MusiqError
from ..evaluation.labels import LabelItem


@dataclass
class TrainResult:
    """What a run produced.

    ``initial``: validation metrics before training (SRCC is NaN when a new zero head makes
    every prediction equal); ``best``: those of the chosen epoch (``epoch``, ``srcc``,
    ``plcc``, ``krcc``, ``rmse``, ``emd`` for distributions, ``loss``); ``history``: one
    dict per epoch; ``predictions``: validation scores of the chosen model, in label-file
    order (None for an image that could not be read); ``output``: the written checkpoint;
    ``skipped``: images left out because they could not be read (``path``, ``reason``).
    """

    output: Path
    initial: dict
    best: dict
    history: list[dict] = field(default_factory=list)
    predictions: list[float | None] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"output": str(self.output), "initial": self.initial, "best": self.best,
                "history": self.history, "skipped": self.skipped}


def stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def check_present(items: list[LabelItem], what: str, file) -> None:
    """Refuse a label file naming images that are not there (the first 10 named)."""
    gone = [it for it in items if not it.path.is_file()]
    if gone:
        shown = "\n".join(f"  {it.path} (line {it.line})" for it in gone[:10])
        more = f"\n  ... and {len(gone) - 10} more" if len(gone) > 10 else ""
        raise MusiqError(f"{file}: {len(gone)} of {len(items)} {what} image(s) not found:\n"
                         f"{shown}{more}")


def better(new: float, old: float) -> bool:
    """Whether SRCC ``new`` beats ``old`` (NaN never wins; anything beats NaN)."""
    if np.isnan(new):
        return False
    return np.isnan(old) or new > old


def fmt(x: float | None) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.4f}"


def write_json(path: Path, data: dict) -> None:
    from ..evaluation.core import write_json as _write
    _write(path, data)
