"""One uploaded image through decode (a killable worker process), the batcher (model thread) and
:func:`~musiq.scorer.interpret`, to the entry the client receives."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from ..failures import describe_failure, is_out_of_memory
from ..network.outputs import EXTRA_KEYS
from ..scorer import Scorer
from .batcher import Batcher, BatcherStopped
from .decoding import DecodePool
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


async def score_upload(upload: Upload, scorer: Scorer, batcher: Batcher,
                       decode_pool: DecodePool, slots: asyncio.Semaphore) -> Outcome:
    """Decode, batch and interpret one image; every failure becomes an :class:`Outcome`.

    ``slots`` bounds the images between decoding and their answer: tokens are many times
    larger than the upload, so queued images wait as bytes, not as tokens.
    """
    async with slots:
        return await _score(upload, scorer, batcher, decode_pool)


async def _score(upload: Upload, scorer: Scorer, batcher: Batcher,
                 decode_pool: DecodePool) -> Outcome:
    out = Outcome(upload.filename)
    decoded = await decode_pool.decode(bytes(upload.data))
    if decoded.tokens is None:
        out.error, out.status = decoded.error, decoded.status
        return out
    try:
        logits = await batcher.submit(decoded.tokens)
    except BatcherStopped as e:
        out.error, out.status = str(e), 503
        return out
    except Exception as e:  # a model failure fails this image, not the server
        if is_out_of_memory(e):
            out.error, out.status = describe_failure(e, "the forward pass"), 503
        else:
            out.error, out.status = f"internal error in the model ({type(e).__name__})", 500
        return out
    pred = scorer.prediction(upload.filename, logits)  # the scorer's own rows and checks
    if pred.error is not None:
        out.error, out.status = pred.error, 500
        return out
    result = pred.to_dict()
    out.score = result["score"]
    out.logits = [float(v) for v in logits]
    out.extra = {k: result[k] for k in EXTRA_KEYS if k in result}
    return out
