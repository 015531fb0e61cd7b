"""One uploaded image through decode (a killable worker process), the batcher (model thread) and
:func:`~musiq.scorer.interpret`, to the entry the client receives: one model's
(:func:`score_upload`), or several models' from one decode (:func:`score_several`)."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from ..failures import describe_failure, is_out_of_memory
from ..network.outputs import EXTRA_KEYS
from ..scorer import Scorer
from ..tokens.preprocess import Tokens
from .batcher import Batcher, BatcherStopped
from .decoding import Decoded, DecodePool
from .uploads import Upload

log = logging.getLogger("musiq.serve")


@dataclass
class Outcome:
    """The result for one image; ``status`` is what a single-image raw request answers."""

    filename: str
    score: float | None = None
    error: str | None = None
    status: int = 200
    extra: dict = field(default_factory=dict)
    #: The model's raw float32 logits (``num_classes`` values) when scored; not in to_json.
    logits: list[float] | None = None

    def to_json(self) -> dict:
        return {"filename": self.filename, "score": self.score, "error": self.error,
                **self.extra}

    def model_json(self) -> dict:
        """This model's entry in a several-model row: ``score``, ``error``, extras."""
        return {"score": self.score, "error": self.error, **self.extra}


@dataclass(frozen=True)
class Served:
    """One served model as a request uses it: the model, its batcher, and the decode pool
    and preprocessing index that make its tokens."""

    scorer: Scorer
    batcher: Batcher
    pool: DecodePool
    index: int = 0


@dataclass
class Several:
    """Several models' results for one image (``models`` in the order asked). ``error`` (and
    ``status``) is a failure before any model ran: the upload could not be decoded."""

    filename: str
    models: dict[str, Outcome]
    error: str | None = None
    status: int = 200

    @property
    def ok(self) -> bool:
        return self.error is None and all(o.error is None for o in self.models.values())

    def to_json(self) -> dict:
        """``{"filename", "score", "error", "models": {NAME: {"score", "error", extras}}}``;
        ``score`` is the first model's (the answer's ``model``), null where it failed."""
        lead = next(iter(self.models.values()))
        return {"filename": self.filename, "score": lead.score, "error": self.error,
                "models": {name: o.model_json() for name, o in self.models.items()}}


async def score_upload(upload: Upload, scorer: Scorer, batcher: Batcher,
                       decode_pool: DecodePool, slots: asyncio.Semaphore, *,
                       index: int = 0) -> Outcome:
    """Decode, batch and interpret one image; every failure becomes an :class:`Outcome`.

    ``slots`` bounds the images between decoding and their answer: tokens are many times
    larger than the upload, so queued images wait as bytes, not as tokens. ``index``: the
    model's preprocessing in ``decode_pool``.
    """
    async with slots:
        out = Outcome(upload.filename)
        decoded = await decode_pool.decode(bytes(upload.data), index)
        if decoded.tokens is None:
            out.error, out.status = decoded.error, decoded.status
            return out
        return await _model(out, decoded.tokens, scorer, batcher)


async def score_several(upload: Upload, models: dict[str, Served],
                        slots: asyncio.Semaphore) -> Several:
    """Every model of ``models`` on one upload: decoded once per decode pool (one, unless
    the models' pixel limits differ), tokens made once per preprocessing, then each model's
    batcher scores them concurrently. One model's failure is its own entry's error."""
    async with slots:
        per_model, failure = await _decode_once(upload, list(models.values()))
        if failure is not None:  # not decoded at all: one error, for every model
            outcomes = [Outcome(upload.filename, error=failure.error, status=failure.status)
                        for _ in models]
            return Several(upload.filename, dict(zip(models, outcomes)), failure.error,
                           failure.status)
        outcomes = await asyncio.gather(*(_model_of(upload.filename, d, s)
                                          for d, s in zip(per_model, models.values())))
        return Several(upload.filename, dict(zip(models, outcomes)))


async def _decode_once(upload: Upload,
                       served: list[Served]) -> tuple[list[Decoded], Decoded | None]:
    """Each model's tokens (or its preprocessing's error), in order, and the failure when
    the image could not be decoded at all. Every pool the models use decodes the upload
    once, asked for its distinct preprocessings."""
    wanted: dict[int, tuple[DecodePool, list[int]]] = {}
    for s in served:
        pool, indices = wanted.setdefault(id(s.pool), (s.pool, []))
        if s.index not in indices:
            indices.append(s.index)
    data = bytes(upload.data)
    answers = await asyncio.gather(*(pool.decode(data, tuple(indices))
                                     for pool, indices in wanted.values()))
    if all(d.variants is None for d in answers):
        return [], answers[0]
    tokens: dict[tuple[int, int], Decoded] = {}
    for key, (_, indices), d in zip(wanted, wanted.values(), answers):
        for n, i in enumerate(indices):  # a pool that failed: its error for its models
            tokens[key, i] = d if d.variants is None else d.variants[n]
    return [tokens[id(s.pool), s.index] for s in served], None


async def _model_of(filename: str, decoded: Decoded, s: Served) -> Outcome:
    out = Outcome(filename)
    if decoded.tokens is None:
        out.error, out.status = decoded.error, decoded.status
        return out
    return await _model(out, decoded.tokens, s.scorer, s.batcher)


async def _model(out: Outcome, tokens: Tokens, scorer: Scorer, batcher: Batcher) -> Outcome:
    """The model's answer on ``tokens`` into ``out``; every failure becomes its error."""
    try:
        logits = await batcher.submit(tokens)
    except BatcherStopped as e:
        out.error, out.status = str(e), 503
        return out
    except Exception as e:  # a model failure fails this image, not the server
        if is_out_of_memory(e):
            out.error, out.status = describe_failure(e, "the forward pass"), 503
        else:
            out.error, out.status = f"internal error in the model ({type(e).__name__})", 500
        return out
    pred = scorer.prediction(out.filename, logits)  # the scorer's own rows and checks
    if pred.error is not None:
        out.error, out.status = pred.error, 500
        return out
    result = pred.to_dict()
    out.score = result["score"]
    out.logits = [float(v) for v in logits]
    out.extra = {k: result[k] for k in EXTRA_KEYS if k in result}
    return out
