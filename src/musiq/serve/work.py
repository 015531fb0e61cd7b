"""One uploaded image through decode (worker thread), the batcher (model thread) and
:func:`~musiq.scorer.interpret`, to the entry the client receives."""
from __future__ import annotations

import asyncio
import logging
import math
from concurrent.futures import Executor
from dataclasses import dataclass, field

from ..errors import MusiqError, UnsupportedFormat
from ..scorer import Scorer, interpret
from .batcher import Batcher, BatcherStopped
from .uploads import Upload

log = logging.getLogger("musiq.serve")

#: Outputs of :func:`interpret` passed on to clients besides the score.
EXTRA_KEYS = ("distribution", "std", "top5")


@dataclass
class Outcome:
    """The result for one image; ``status`` is what a single-image raw request answers."""

    filename: str
    score: float | None = None
    error: str | None = None
    status: int = 200
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"filename": self.filename, "score": self.score, "error": self.error,
                **self.extra}


def image_error_status(error: MusiqError) -> int:
    """415 when the bytes are not an image format we read, 422 when they are one but cannot
    be scored (corrupt, truncated, empty, above the pixel limit)."""
    return 415 if isinstance(error, UnsupportedFormat) else 422


async def score_upload(upload: Upload, scorer: Scorer, batcher: Batcher,
                       decode_pool: Executor, slots: asyncio.Semaphore) -> Outcome:
    """Decode, batch and interpret one image; every failure becomes an :class:`Outcome`.

    ``slots`` bounds the images between decoding and their answer: tokens are many times
    larger than the upload, so queued images wait as bytes, not as tokens.
    """
    async with slots:
        return await _score(upload, scorer, batcher, decode_pool)


async def _score(upload: Upload, scorer: Scorer, batcher: Batcher,
                 decode_pool: Executor) -> Outcome:
    loop = asyncio.get_running_loop()
    out = Outcome(upload.filename)
    try:
        # Always bytes: Scorer.tokens would read a path if it were given a str.
        tokens = await loop.run_in_executor(decode_pool, scorer.tokens, bytes(upload.data))
    except MusiqError as e:
        out.error = getattr(e, "reason", None) or str(e)
        out.status = image_error_status(e)
        return out
    except Exception as e:
        log.exception("decoding %r failed unexpectedly", upload.filename)
        out.error, out.status = f"internal error while decoding ({type(e).__name__})", 500
        return out
    try:
        logits = await batcher.submit(tokens)
    except BatcherStopped as e:
        out.error, out.status = str(e), 503
        return out
    except Exception as e:
        out.error, out.status = f"internal error in the model ({type(e).__name__})", 500
        return out
    result = interpret(logits, scorer.kind)
    if not math.isfinite(result["score"]):
        out.error, out.status = "the model returned a non-finite score", 500
        return out
    out.score = result["score"]
    out.extra = {k: result[k] for k in EXTRA_KEYS if k in result}
    return out
