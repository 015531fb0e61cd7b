"""One row type for a scored or failed image: :class:`Prediction`."""
from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["Prediction", "MultiPrediction"]


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


@dataclass
class MultiPrediction:
    """What several models say about one image: one :class:`Prediction` per model name, in
    the order the models were given.

    ``error``: a failure before any model ran (the file could not be read or decoded); every
    model's prediction then carries the same error. A model's own failure (non-finite logits,
    too many tokens for its preprocessing) is only that model's ``error``: the other models'
    scores stay.
    """

    source: str
    models: dict[str, Prediction]
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when every model scored the image."""
        return self.error is None and all(p.error is None for p in self.models.values())

    @property
    def scores(self) -> dict[str, float | None]:
        """``{model name: score}`` (None where that model failed)."""
        return {name: p.score for name, p in self.models.items()}

    @property
    def failure(self) -> str | None:
        """One line for the row's failures (None when every model scored): the error before
        the models, else ``name: error`` for each model that failed."""
        if self.error is not None:
            return self.error
        failed = [f"{name}: {p.error}" for name, p in self.models.items() if p.error]
        return "; ".join(failed) or None

    @classmethod
    def failed(cls, source: str, names, error: str) -> "MultiPrediction":
        """A row for an input no model could score (every model's error is ``error``)."""
        return cls(source, {n: Prediction(source=source, error=error) for n in names}, error)

    def to_dict(self, provenance: dict | None = None) -> dict:
        """``{"path", "error", "models": {name: {"score", "error", "logits", ...extras}}}``;
        ``provenance`` is added under the key ``provenance`` when given."""
        models = {}
        for name, p in self.models.items():
            d = p.to_dict()
            d.pop("path")
            models[name] = d
        out = {"path": self.source, "error": self.error, "models": models}
        if provenance is not None:
            out["provenance"] = provenance
        return out
