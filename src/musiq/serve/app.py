"""The FastAPI application of ``musiq serve``: routes, error answers and lifecycle.

Routes: ``POST /v1/score``, ``GET /v1/models``, ``GET /healthz``, ``GET /metrics``, the page
at ``/``, and the OpenAPI description at ``/openapi.json`` and (as a page) ``/docs``. See
``docs/serve.md`` for the contract.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from .._version import __version__
from ..tokens.preprocessor import Preprocessor
from ..scorer import Scorer
from . import apidocs
from .auth import KeyGuard, check_api_key
from .batcher import Batcher
from .config import ServeConfig
from .decoding import DecodePool
from .limits import REFUSAL_KEY, Admission, BodyBudget, check_declared_length
from .prometheus import Registry
from .schema import SCORE_BODY, SCORE_ERRORS, ErrorAnswer, HealthAnswer, ScoreAnswer, \
    ScoreEntry  # noqa: F401  (ScoreEntry: public name)
from .page import Page
from .scoring import MODEL_QUERY, admit_and_score, models_asked
from .work import Served
from .origin import OriginGuard, default_hosts
from .uploads import is_multipart
from . import v2

ROUTES = {"/", "/v1/score", "/v1/models", "/healthz", "/metrics", "/docs", "/openapi.json"}
#: Status codes counted as refusals in ``musiq_rejected_total``, unless the answer recorded its
#: own reason in the scope (``limits.refused``: ``queue_full``, ``body_memory``; "" = not a
#: refusal, as /healthz's readiness 503). Other 503s (out of memory, shutting down):
#: ``unavailable``.
REFUSALS = {401: "unauthorized", 403: "forbidden_origin", 408: "body_timeout",
            413: "too_large", 503: "unavailable", 504: "timeout"}


def route_label(path: str) -> str:
    """The metrics label of a path: its route template, never the raw path (each new raw
    path would add a series, and anyone can send any path)."""
    if path in ROUTES:
        return path
    if path.startswith("/static/"):
        return "/static/{name}"
    return v2.route_label(path) or "other"


class Service:
    """Everything the routes share: models with their batchers, limits, pools, metrics."""

    def __init__(self, scorers: list[Scorer], config: ServeConfig) -> None:
        if not scorers:
            raise ValueError("at least one model is needed")
        names = [s.name for s in scorers]
        if len(set(names)) != len(names):
            raise ValueError(f"two models have the same name: {names}")
        self.config = config
        self.scorers = {s.name: s for s in scorers}
        self.default = scorers[0].name
        self.metrics = Registry(config.max_batch_size)
        self.admission = Admission(config.max_queue)
        self.body_budget = BodyBudget(config.max_body_memory_bytes)
        self.inflight = 0
        # Decoded images at most: one batch running and the next one filling.
        self.token_slots = asyncio.Semaphore(2 * config.max_batch_size)
        self.metrics.queue_depth.read_from(lambda: self.admission.depth)
        self.metrics.inflight.read_from(lambda: self.inflight)
        # One pool of decode processes per decoding setting (pixel limit, EXIF): its
        # workers make the tokens of every preprocessing of the models that share it
        # (multi- and single-scale differ), so several models decode an upload once.
        self.decode_pools, self._decoders = _decode_pools(scorers, config)
        # One model thread for all models: forward passes never compete for the cores.
        self.model_pool = ThreadPoolExecutor(1, thread_name_prefix="musiq-model")
        self.batchers = {name: Batcher(s, self.model_pool, self.metrics,
                                       max_batch_size=config.max_batch_size,
                                       max_wait_ms=config.max_wait_ms)
                         for name, s in self.scorers.items()}

    @staticmethod
    def options(scorer: Scorer) -> Preprocessor:
        """What the decode processes run: the plan's worker preprocessing (tokens made on
        the host, never a CUDA context in a worker)."""
        return scorer.plan.worker_preprocessor()

    def readiness(self) -> str | None:
        """Why scoring cannot proceed now, or None (read from the scoring loops)."""
        if not all(p.ready() for p in self.decode_pools.values()):
            return "decode worker processes are starting"
        for name, b in self.batchers.items():
            why = b.stalled(self.config.timeout_s)
            if why:
                return f"model '{name}': {why}"
        return None

    def served(self, name: str) -> Served:
        """Model ``name`` as a request uses it: scorer, batcher, decode pool and index."""
        pool, index = self._decoders[name]
        return Served(self.scorers[name], self.batchers[name], pool, index)

    def pick(self, name: str | None) -> Scorer:
        if name is None:
            return self.scorers[self.default]
        if name not in self.scorers:
            raise HTTPException(404, f"unknown model '{name}'; this server has: "
                                     f"{', '.join(self.scorers)}")
        return self.scorers[name]

    def describe(self, scorer: Scorer) -> dict:
        d = scorer.describe()
        d.pop("path", None)  # server-side paths are nobody's business
        d["score_range"] = list(d["score_range"]) if d["score_range"] else None
        return d

    async def start(self) -> None:
        for p in self.decode_pools.values():
            p.start()
        for b in self.batchers.values():
            b.start()

    async def stop(self) -> None:
        for b in self.batchers.values():
            await b.stop()
        for p in self.decode_pools.values():
            p.stop()
        self.model_pool.shutdown(wait=False, cancel_futures=True)


def _decode_pools(scorers: list[Scorer], config: ServeConfig) -> tuple[
        dict[tuple, DecodePool], dict[str, tuple[DecodePool, int]]]:
    """The decode pools by decoding setting, and each model's pool and preprocessing index."""
    groups: dict[tuple, list[Preprocessor]] = {}
    for s in scorers:
        opts = Service.options(s)
        group = groups.setdefault((opts.max_pixels, opts.exif_transpose), [])
        if opts not in group:
            group.append(opts)
    pools = {key: DecodePool(config.decode_workers, tuple(group),
                             timeout_s=config.decode_timeout_s, max_tokens=config.max_tokens)
             for key, group in groups.items()}
    decoders = {}
    for s in scorers:
        opts = Service.options(s)
        key = (opts.max_pixels, opts.exif_transpose)
        decoders[s.name] = (pools[key], groups[key].index(opts))
    return pools, decoders


class MetricsMiddleware:
    """Counts every answer by route and status and times it (pure ASGI, no buffering)."""

    def __init__(self, app, metrics: Registry) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_count(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                self.metrics.request_seconds.observe(time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_and_count)
        finally:
            self.metrics.requests.inc(route=route_label(scope.get("path", "")),
                                      status=str(status))
            reason = scope.get(REFUSAL_KEY, REFUSALS.get(status))
            if reason:
                self.metrics.rejected.inc(reason=reason)


def load_scorers(names: list[str] | tuple[str, ...], **load) -> list[Scorer]:
    """The served models, loaded with ``musiq.load(name, **load)`` and warmed up (so that
    the first client does not pay for lazy initialisation)."""
    import numpy as np

    from ..scorer import load as load_model
    scorers = []
    for name in names:
        scorer = load_model(name, **load)
        scorer.logits([scorer.tokens(np.zeros((32, 32, 3), np.uint8))])
        scorers.append(scorer)
    return scorers


def create_app(scorers: list[Scorer], config: ServeConfig | None = None, *,
               host: str = "127.0.0.1") -> FastAPI:
    """The application serving ``scorers`` (the first is the default model); ``host`` is the
    bound address, the default allow-list of Host headers."""
    config = config or ServeConfig()
    service = Service(scorers, config)
    page = Page()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="musiq", version=__version__, lifespan=lifespan,
                  description="MUSIQ image quality scores over HTTP. See docs/serve.md.",
                  docs_url=None, redoc_url=None)  # apidocs serves /docs without a CDN
    app.state.service = service
    app.add_middleware(OriginGuard, hosts=config.allowed_hosts or default_hosts(host),
                       origins=config.allowed_origins)
    if config.api_key and config.protect_all:
        app.add_middleware(KeyGuard, key=config.api_key)
    app.add_middleware(MetricsMiddleware, metrics=service.metrics)
    apidocs.register(app)
    app.include_router(v2.router(service))
    _status_routes(app, service)
    _score_routes(app, service)
    _page_routes(app, page)
    return app


def _status_routes(app: FastAPI, service: Service) -> None:
    """``/healthz``, ``/metrics`` and ``/v1/models``."""
    config = service.config

    @app.get("/healthz", summary="200 when the scoring loop is ready, 503 when it is stalled",
             response_model=HealthAnswer, responses={503: {
                 "model": HealthAnswer, "description": "not ready: `status` is `stalled` and "
                                                       "`detail` says why"}})
    async def healthz(request: Request) -> JSONResponse:
        why = service.readiness()
        if why is not None:
            request.scope[REFUSAL_KEY] = ""  # a readiness answer, not refused work
            return JSONResponse({"status": "stalled", "detail": why,
                                 "models": list(service.scorers)}, status_code=503)
        return JSONResponse({"status": "ok", "models": list(service.scorers)})

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    async def metrics() -> Response:
        return PlainTextResponse(service.metrics.render(),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models", summary="The models served, their output ranges and the limits",
             responses={401: {"model": ErrorAnswer}})
    async def models(request: Request) -> dict:
        check_api_key(request, config.api_key)
        return {
            "default": service.default,
            "models": [service.describe(s) for s in service.scorers.values()],
            "limits": {"max_upload_bytes": config.max_upload_bytes,
                       "max_files": config.max_files,
                       "max_pixels": service.scorers[service.default].max_pixels,
                       "max_body_memory_bytes": config.max_body_memory_bytes,
                       "timeout_s": config.timeout_s},
        }


def _score_routes(app: FastAPI, service: Service) -> None:
    """``POST /v1/score``."""
    config = service.config

    @app.post("/v1/score", summary="Score one or more images", response_model=ScoreAnswer,
              responses=SCORE_ERRORS, openapi_extra=SCORE_BODY)
    async def score(request: Request,
                    model: Optional[str] = Query(None, description=MODEL_QUERY),
                    filename: Optional[str] = Query(None, description="name to report for a "
                                                    "raw-body image")) -> JSONResponse:
        """Multipart fields named `file` (one or more; answers 200 with an error per bad file),
        or the image as the raw body (a bad image answers 415/422 with `detail`). With
        several models (`model=a,b` or `model=all`), each result has a `models` object with
        every model's result, from one decode of the file."""
        check_api_key(request, config.api_key)
        names, several = models_asked(service, model)
        check_declared_length(request, config.max_upload_bytes)
        multipart = is_multipart(request)
        hold = service.body_budget.hold()
        try:
            return await admit_and_score(service, request, names, several, multipart,
                                         filename, hold)
        finally:
            hold.release()


def _page_routes(app: FastAPI, page: Page) -> None:
    """The web page and its files."""

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return page.response("index.html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return page.response("favicon.svg")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        return page.response(name)
