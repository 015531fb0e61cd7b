"""``POST /v1/score`` past its checks: which models a request names, the body read under its
deadline, queue admission, and the answer of one model or of several (see docs/serve.md).

One model (``model=NAME`` or none): ``{"model", "kind", "score_range", "results": [{"filename",
"score", "error", ...extras}]}``, as it has always been. Several (``model=a,b`` or
``model=all``): each upload is decoded once and every model named scores it; each result
gains ``models: {NAME: {"score", "error", ...extras}}`` in the order asked, its top-level
``error`` is a failure before any model ran (the file could not be decoded), and the top-level
``model``/``kind``/``score_range`` and each result's ``score`` are the first model's.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse

from .config import ServeConfig
from .limits import QueueFull, refused
from .uploads import Upload, read_multipart, read_raw
from .work import Outcome, Several, score_several, score_upload

if TYPE_CHECKING:  # pragma: no cover
    from .app import Service

#: What the ``model`` query parameter of /v1/score takes (its OpenAPI description).
MODEL_QUERY = ("model name (default: the first one served); several, comma-separated "
               "(`a,b`), or `all` (every model served, in served order): each file is "
               "decoded once and every model named scores it (the answer's `models`)")


def models_asked(service: "Service", text: str | None) -> tuple[list[str], bool]:
    """The models a request names and whether it asked for several (the several-model
    answer: ``all``, or a comma-separated list). 404 for a name this server does not have
    (as for one model); 400 for an empty or repeated name."""
    if text is None or text in service.scorers:  # one name (even one holding a comma)
        return [service.pick(text).name], False
    if text.strip().lower() == "all":
        return list(service.scorers), True
    names = [n.strip() for n in text.split(",")]
    if len(names) == 1:
        service.pick(names[0])  # 404, naming it
    if any(not n for n in names):
        raise HTTPException(400, f"empty model name in model={text!r}: give names separated "
                                 "by commas, or 'all'")
    for n in names:
        service.pick(n)  # 404 for the first unknown name, naming it and the served ones
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise HTTPException(400, f"model {', '.join(repr(n) for n in repeated)} named more "
                                 "than once in model=; name each model once")
    return names, True


async def admit_and_score(service: "Service", request: Request, names: list[str],
                          several: bool, multipart: bool, filename: str | None,
                          hold) -> JSONResponse:
    """Read the body under its deadline, take queue slots, score; the answer."""
    config = service.config
    # The whole body first, under its own deadline, and only then a queue slot: a client
    # that stops sending holds a connection for body_timeout_s, never the queue.
    try:
        uploads = await asyncio.wait_for(_read(config, request, multipart, filename, hold),
                                         config.body_timeout_s)
    except asyncio.TimeoutError:
        raise HTTPException(408, f"the request body did not arrive within the limit of "
                                 f"{config.body_timeout_s:g} s") from None
    pace = sum(service.batchers[n].seconds_per_image for n in names)
    try:
        service.admission.acquire(len(uploads), pace)
    except QueueFull as e:
        raise refused(request, "queue_full", e) from None
    service.inflight += 1
    work = (_score_several(service, names, multipart, uploads) if several else
            _score_one(service, names[0], multipart, uploads))
    try:
        return await asyncio.wait_for(work, config.timeout_s)
    except asyncio.TimeoutError:
        raise HTTPException(504, f"request took longer than the limit of "
                                 f"{config.timeout_s:g} s") from None
    finally:
        service.inflight -= 1
        service.admission.release(len(uploads))


async def _read(config: ServeConfig, request: Request, multipart: bool,
                filename: str | None, hold) -> list[Upload]:
    if multipart:
        return await read_multipart(request, config.max_upload_bytes, config.max_files,
                                    hold)
    return [await read_raw(request, config.max_upload_bytes, filename, hold)]


async def _score_one(service: "Service", name: str, multipart: bool,
                     uploads: list[Upload]) -> JSONResponse:
    s = service.served(name)
    outcomes: list[Outcome] = await asyncio.gather(
        *(score_upload(u, s.scorer, s.batcher, s.pool, service.token_slots, index=s.index)
          for u in uploads))
    for o in outcomes:
        ok = "ok" if o.error is None else "error"
        service.metrics.images.inc(outcome=ok)
        service.metrics.model_images.inc(model=name, outcome=ok)
    if not multipart and outcomes[0].error is not None:
        o = outcomes[0]
        return JSONResponse({"detail": f"{o.filename}: {o.error}"}, status_code=o.status)
    desc = service.describe(s.scorer)
    return JSONResponse({"model": name, "kind": s.scorer.kind,
                         "score_range": desc["score_range"],
                         "results": [o.to_json() for o in outcomes]})


async def _score_several(service: "Service", names: list[str], multipart: bool,
                         uploads: list[Upload]) -> JSONResponse:
    """Every model of ``names`` on each upload, from one decode each. A raw body that cannot
    be decoded answers its status (415, 422...) as with one model; a model's own failure is
    that model's error in a 200 answer."""
    served = {n: service.served(n) for n in names}
    rows: list[Several] = await asyncio.gather(
        *(score_several(u, served, service.token_slots) for u in uploads))
    for row in rows:
        service.metrics.images.inc(outcome="ok" if row.ok else "error")
        for name, o in row.models.items():
            service.metrics.model_images.inc(model=name,
                                             outcome="ok" if o.error is None else "error")
    if not multipart and rows[0].error is not None:
        row = rows[0]
        return JSONResponse({"detail": f"{row.filename}: {row.error}"},
                            status_code=row.status)
    models = {n: {"kind": s.scorer.kind,
                  "score_range": service.describe(s.scorer)["score_range"]}
              for n, s in served.items()}
    lead = models[names[0]]
    return JSONResponse({"model": names[0], "kind": lead["kind"],
                         "score_range": lead["score_range"], "models": models,
                         "results": [r.to_json() for r in rows]})
