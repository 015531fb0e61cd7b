"""Open Inference Protocol ("v2", as KServe and Triton speak it) beside ``/v1``.

Routes: ``GET /v2``, ``GET /v2/health/live``, ``GET /v2/health/ready``,
``GET /v2/models/{name}``, ``GET /v2/models/{name}/ready``, ``POST /v2/models/{name}/infer``.
Infer takes one input ``image`` (``BYTES``, shape ``[N]``, encoded image files) and answers
``score`` (``FP32 [N]``), ``logits`` (``FP32 [N, classes]``) and ``error`` (``BYTES [N]``,
``""`` for a scored image). Each image goes through the same path as ``/v1/score``
(:func:`musiq.serve.work.score_upload`): same limits, API key, queue, batcher and scores.
Refusals answer ``{"error": "..."}`` with the same status codes as ``/v1``. See docs/serve.md.
"""
from __future__ import annotations

import asyncio
import functools
import re
from typing import TYPE_CHECKING, Awaitable, Callable

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from .._version import __version__
from .auth import check_api_key
from .limits import QueueFull, check_declared_length, limited_stream, refused
from .v2_tensors import BINARY_HEADER, INPUT, InferRequest, output_tensors, parse_infer
from .work import Outcome, score_upload

if TYPE_CHECKING:
    from .app import Service

#: Route templates, for the metrics' ``route`` label (a raw path would make a new series).
TEMPLATES = [(re.compile(p), t) for p, t in [
    (r"^/v2$", "/v2"), (r"^/v2/health/(live|ready)$", None),
    (r"^/v2/models/[^/]+$", "/v2/models/{name}"),
    (r"^/v2/models/[^/]+/ready$", "/v2/models/{name}/ready"),
    (r"^/v2/models/[^/]+/infer$", "/v2/models/{name}/infer")]]


def route_label(path: str) -> str | None:
    """The route template of a ``/v2`` path, or None when it is none of ours."""
    for pattern, template in TEMPLATES:
        if pattern.match(path):
            return template or path
    return None


def v2_errors(handler: Callable[..., Awaitable]) -> Callable[..., Awaitable]:
    """Answer an ``HTTPException`` in the protocol's error form, ``{"error": message}``,
    keeping its status and headers (``Retry-After``, ``WWW-Authenticate``)."""
    @functools.wraps(handler)
    async def wrapped(*args, **kwargs):
        try:
            return await handler(*args, **kwargs)
        except HTTPException as e:
            return JSONResponse({"error": str(e.detail)}, status_code=e.status_code,
                                headers=e.headers)
    return wrapped


def router(service: "Service") -> APIRouter:
    """The ``/v2`` routes over ``service`` (the one ``/v1`` uses)."""
    config = service.config
    r = APIRouter(prefix="/v2", tags=["Open Inference Protocol (v2)"])

    @r.get("", summary="Server metadata")
    async def server_metadata() -> dict:
        return {"name": "musiq", "version": __version__, "extensions": ["binary_tensor_data"]}

    @r.get("/health/live", summary="200 while the process serves")
    async def live() -> dict:
        return {"live": True}

    @r.get("/health/ready", summary="200 when every model can score, else 503")
    async def ready() -> JSONResponse:
        why = service.readiness()
        if why is not None:
            return JSONResponse({"ready": False, "error": why}, status_code=503)
        return JSONResponse({"ready": True})

    @r.get("/models/{name}/ready", summary="200 when this model can score, else 503")
    @v2_errors
    async def model_ready(name: str) -> JSONResponse:
        service.pick(name)
        return await ready()

    @r.get("/models/{name}", summary="Model metadata: its input and outputs")
    @v2_errors
    async def model_metadata(name: str, request: Request) -> dict:
        check_api_key(request, config.api_key)
        return metadata(service, name)

    @r.post("/models/{name}/infer", summary="Score images (input 'image', BYTES [N])")
    @v2_errors
    async def infer(name: str, request: Request) -> JSONResponse:
        check_api_key(request, config.api_key)
        scorer = service.pick(name)
        check_declared_length(request, config.max_upload_bytes)
        hold = service.body_budget.hold()  # the same byte budget as /v1/score's bodies
        try:
            try:
                body = await asyncio.wait_for(_read(request, hold), config.body_timeout_s)
            except asyncio.TimeoutError:
                raise HTTPException(408, f"the request body did not arrive within the limit "
                                         f"of {config.body_timeout_s:g} s") from None
            parsed = parse_infer(body, request.headers.get(BINARY_HEADER), config.max_files)
            try:
                outcomes = await admitted(service, scorer.name, parsed)
            except QueueFull as e:
                raise refused(request, "queue_full", e) from None
            return answer(scorer, parsed, outcomes)
        finally:
            hold.release()

    async def _read(request: Request, hold) -> bytes:
        return b"".join([c async for c in limited_stream(request, config.max_upload_bytes,
                                                         hold)])

    return r


def metadata(service: "Service", name: str) -> dict:
    """The protocol's model metadata of model ``name`` (404 if this server lacks it)."""
    scorer = service.pick(name)
    classes = scorer.describe()["num_classes"]
    return {"name": scorer.name, "versions": [], "platform": "pytorch_musiq",
            "inputs": [{"name": INPUT, "datatype": "BYTES", "shape": [-1]}],
            "outputs": [{"name": "score", "datatype": "FP32", "shape": [-1]},
                        {"name": "logits", "datatype": "FP32", "shape": [-1, classes]},
                        {"name": "error", "datatype": "BYTES", "shape": [-1]}],
            "parameters": {"kind": scorer.kind,
                           "score_range": list(scorer.score_range or []) or None}}


async def admitted(service: "Service", model: str, parsed: InferRequest) -> list[Outcome]:
    """Score the images under the same queue admission and deadline as ``/v1/score``."""
    config = service.config
    s = service.served(model)
    n = len(parsed.uploads)
    service.admission.acquire(n, s.batcher.seconds_per_image)
    service.inflight += 1
    try:
        outcomes = await asyncio.wait_for(asyncio.gather(
            *(score_upload(u, s.scorer, s.batcher, s.pool, service.token_slots,
                           index=s.index)
              for u in parsed.uploads)), config.timeout_s)
    except asyncio.TimeoutError:
        raise HTTPException(504, f"request took longer than the limit of "
                                 f"{config.timeout_s:g} s") from None
    finally:
        service.inflight -= 1
        service.admission.release(n)
    for o in outcomes:
        ok = "ok" if o.error is None else "error"
        service.metrics.images.inc(outcome=ok)
        service.metrics.model_images.inc(model=model, outcome=ok)
    return outcomes


def answer(scorer, parsed: InferRequest, outcomes: list[Outcome]) -> JSONResponse:
    """200 with the output tensors when at least one image was scored; when none was, the
    error form with the status a single bad image gets on ``/v1`` (415 or 422, 503...)."""
    if all(o.error is not None for o in outcomes):
        message = "; ".join(f"{o.filename}: {o.error}" for o in outcomes)
        return JSONResponse({"error": message}, status_code=max(o.status for o in outcomes))
    body = {"model_name": scorer.name, "outputs": output_tensors(
        outcomes, scorer.describe()["num_classes"], parsed.outputs)}
    if parsed.id is not None:
        body["id"] = parsed.id
    return JSONResponse(body)
