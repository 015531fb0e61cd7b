"""One row type for a scored or failed image: :class:`Prediction`."""
from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["Prediction"]


@dataclass
class Prediction:
    """What a model says about one image.

    ``score``: MOS (KonIQ/SPAQ/PaQ-2-PiQ, 0-100), mean of the distribution (AVA, 1-10) or the
    top-1 probability (ImageNet, 0-1); None when the image failed, and ``error`` says why.
    ``distribution``/``std``: AVA's 10 bin probabilities (scores 1..10) and their std.
    ``top5``: ImageNet's five best classes as ``{"class": index, "probability": p}``.

    Videos (:mod:`musiq.video_scoring`): ``score`` is pooled over the sampled frames,
    ``frames`` their count, ``spread`` the standard deviation of their scores and
    ``frame_scores`` one ``{"frame", "time", "score", ...}`` per frame in stream order; a
    truncated or damaged video keeps the score of the frames decoded and ``error`` says so.
    Images leave these None.
    """

    source: str
    score: float | None = None
    error: str | None = None
    logits: list[float] | None = None
    distribution: list[float] | None = None
    std: float | None = None
    top5: list[dict] | None = None
    frames: int | None = None
    spread: float | None = None
    frame_scores: list[dict] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self, provenance: dict | None = None) -> dict:
        """JSON-ready fields; ``provenance`` (from :meth:`Scorer.provenance`) is added under
        the key ``provenance`` when given."""
        d = asdict(self)
        d = {"path": d.pop("source"), **d}
        out = {k: v for k, v in d.items() if v is not None or k in ("path", "score", "error")}
        if provenance is not None:
            out["provenance"] = provenance
        return out
