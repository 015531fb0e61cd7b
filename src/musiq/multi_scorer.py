"""Score with several models in one pass: each image is decoded once, tokenised once per
preprocessing, and every model scores those tokens.

    >>> import musiq
    >>> panel = musiq.load(["koniq", "ava"])      # or musiq.load("koniq,ava"), "all"
    >>> panel.score("photo.jpg")                  # {"koniq": 61.2, "ava": 5.1}
    >>> panel.predict("photo.jpg").to_dict()      # {"path", "error", "models": {...}}

A model's score here equals its :class:`~musiq.scorer.Scorer`'s alone (the same engine on
the same tokens). Multi-scale models share one set of tokens; a single-scale model gets its
own from the same decoded pixels.
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

from .decoding.decode import ImageInput
from .engine.stream import run_stream
from .errors import ImageError
from .results.columns import check_model_names
from .results.rows import MultiPrediction, Prediction
from .scorer import Scorer
from .tokens.pipeline import iter_prepared
from .tokens.shared import SharedPreprocessor

__all__ = ["MultiScorer", "load_several", "model_name", "spec_name"]


def model_name(scorer: Scorer) -> str:
    """What a model is called in a several-model output: its registry name, else its
    file's stem (``my_model.npz`` -> ``my_model``)."""
    if scorer.info is not None:
        return scorer.info.name
    return Path(scorer.path).stem if scorer.path else "musiq"


class MultiScorer:
    """Several loaded models that score the same images together (see the module).

    ``scorers``: a mapping ``{name: Scorer}`` or a sequence of scorers (named by
    :func:`model_name`); names must be distinct and must not be an output column
    (``path``, ``error`` ...). The scorers must share their decoding settings
    (``max_pixels``, ``exif_transpose``), device and where tokens are made.
    """

    def __init__(self, scorers: Mapping[str, Scorer] | Sequence[Scorer]) -> None:
        if not isinstance(scorers, Mapping):
            check_model_names([model_name(s) for s in scorers])
            scorers = {model_name(s): s for s in scorers}
        if not scorers:
            raise ValueError("MultiScorer needs at least one model")
        check_model_names(list(scorers))
        self.scorers: dict[str, Scorer] = dict(scorers)
        # One preprocessing per distinct configuration, in order of first use.
        distinct: list = []
        self._group: dict[str, int] = {}
        for name, s in self.scorers.items():
            if s.preprocessor not in distinct:
                distinct.append(s.preprocessor)
            self._group[name] = distinct.index(s.preprocessor)
        self.shared = SharedPreprocessor(tuple(distinct))
        self._workers_shared = SharedPreprocessor(
            tuple(dict.fromkeys(s.plan.worker_preprocessor() for s in self.scorers.values())))

    # -- description -------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self.scorers)

    @property
    def lead(self) -> Scorer:
        """The first model: its plan sets the run's workers and threads."""
        return next(iter(self.scorers.values()))

    plan = property(lambda self: self.lead.plan)

    def describe(self) -> dict:
        return {name: s.describe() for name, s in self.scorers.items()}

    def provenance(self) -> dict:
        """``{"models": {name: that model's provenance}}`` (:meth:`Scorer.provenance`)."""
        return {"models": {name: s.provenance() for name, s in self.scorers.items()}}

    # -- scoring -----------------------------------------------------------------------
    def predict_many(self, images: Iterable[ImageInput], *, batch_size: int = 8,
                     workers: int | None = None, max_batch_tokens: int | None = None,
                     window: int | None = None) -> Iterator[MultiPrediction]:
        """Predictions in input order, every model's for each image; a file that cannot be
        decoded is one row with its ``error`` (and every model's). Each model runs exactly
        the packed passes :meth:`Scorer.predict_many` would (same windows, same batches), so
        its scores equal its single-model run's; the decoded images wait for the slowest
        model in a buffer of about one window."""
        workers = self.plan.workers if workers is None else workers
        pixels = self.plan.tokens_on == "torch"
        stream = iter_prepared(images, self._workers_shared if workers else self.shared,
                               workers=workers, pixels=pixels)
        top, *branches = itertools.tee(stream, len(self.scorers) + 1)
        runs = []
        for (name, scorer), branch in zip(self.scorers.items(), branches):
            runs.append(run_stream(scorer.engine, self._variants(branch, self._group[name]), batch_size=batch_size,
                                   max_tokens=max_batch_tokens, window=window))
        for item, *results in zip(top, *runs):
            models = {name: scorer.prediction(item.source, row)
                      for (name, scorer), (_, row) in zip(self.scorers.items(), results)}
            decoded = item.variants is not None or item.pixels is not None
            yield MultiPrediction(item.source, models,
                                  error=None if decoded else (item.error or "not decoded"))

    def _variants(self, items: Iterable, group: int) -> Iterator:
        """The items of one preprocessing (one group of models)."""
        for item in items:
            yield self.shared.split(item)[group]

    def predict(self, image: ImageInput) -> MultiPrediction:
        """Every model's prediction of one image; raises :class:`ImageError` when the image
        cannot be decoded (a single model's failure stays in its prediction's ``error``)."""
        row = next(self.predict_many([image], workers=0))
        if row.error is not None:
            raise ImageError(row.source, row.error)
        return row

    def score(self, image: ImageInput) -> dict[str, float | None]:
        """``{model name: score}`` for one image (None where that model failed)."""
        return self.predict(image).scores

    __call__ = score

    def predict_files(self, files: Iterable[ImageInput], sampling=None, *,
                      batch_size: int = 8, workers: int | None = None,
                      max_batch_tokens: int | None = None) -> Iterator[MultiPrediction]:
        """Images and videos mixed, in input order (as
        :func:`musiq.video_scoring.predict_files`): runs of images through
        :meth:`predict_many`, each video through every model."""
        from .video_scoring import VideoSampling, is_video, predict_video
        sampling = sampling or VideoSampling()

        def video(f: ImageInput) -> bool:
            return isinstance(f, (str, os.PathLike)) and is_video(f)

        for videos, group in itertools.groupby(files, key=video):
            if not videos:
                yield from self.predict_many(group, batch_size=batch_size, workers=workers,
                                             max_batch_tokens=max_batch_tokens)
                continue
            for f in group:
                models = {name: predict_video(s, f, sampling, batch_size=batch_size,
                                              max_batch_tokens=max_batch_tokens)
                          for name, s in self.scorers.items()}
                yield _video_row(models)


def _video_row(models: dict[str, Prediction]) -> MultiPrediction:
    """A video's row: its ``error`` is the models' common one when none got a score (the
    file could not be opened or decoded)."""
    first = next(iter(models.values()))
    errors = {p.error for p in models.values()}
    common = first.error if len(errors) == 1 and all(p.score is None for p in
                                                     models.values()) else None
    return MultiPrediction(first.source, models, error=common)


def spec_name(spec: str | os.PathLike) -> str:
    """The name a model given as ``spec`` (registry name or path) will have (see
    :func:`model_name`), known before its checkpoint is read."""
    from .network.registry import REGISTRY, canonical_name
    text = os.fspath(spec)
    if canonical_name(text) in REGISTRY and not os.path.isfile(text):
        return canonical_name(text)
    return Path(text).stem


def load_several(models: Sequence[str | os.PathLike], **kwargs) -> MultiScorer:
    """Load every model of ``models`` (names or paths, as :func:`musiq.load`; ``all`` is
    every official quality and aesthetic model) with the same options, names checked
    before any checkpoint is read where they are known from the names alone."""
    from .network.registry import split_models
    from .scorer import load
    specs = split_models([os.fspath(m) for m in models])
    check_model_names([spec_name(spec) for spec in specs])  # before any file is read
    return MultiScorer([load(spec, **kwargs) for spec in specs])
