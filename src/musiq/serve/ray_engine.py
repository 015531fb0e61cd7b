"""``musiq serve --engine ray``: the same FastAPI app (page, ``/v1``, ``/v2``, ``/healthz``,
``/metrics``) as a Ray Serve deployment of ``--replicas`` model replicas.

Each replica is one whole single-process service (:func:`musiq.serve.app.create_app`): its
models, its batcher (dynamic batching of the images routed to it), its decode worker processes
and its limits. Ray Serve's proxy spreads requests over the replicas and replaces one that
dies or fails its health check (a stalled forward pass). ``/metrics`` and the queue limits are
per replica. The deployment is built here from plain values, so the cluster's workers only
need ``musiq`` installed (see docs/serve.md for KubeRay and ``serve run``).
"""
from __future__ import annotations

import signal
import sys
import threading
from dataclasses import dataclass, field

from ..errors import MusiqError
from .config import ServeConfig

APP_NAME = "musiq"


@dataclass(frozen=True)
class ReplicaSpec:
    """What one replica loads and how it serves: model names or paths, ``musiq.load``
    keyword arguments, the service's limits and the bound host (for the Host allow-list)."""

    models: tuple[str, ...]
    load: dict = field(default_factory=dict)
    config: ServeConfig = field(default_factory=ServeConfig)
    host: str = "127.0.0.1"


def build_app(spec: ReplicaSpec):
    """The FastAPI app of one replica, models loaded and warmed up."""
    from .app import create_app, load_scorers
    return create_app(load_scorers(spec.models, **spec.load), spec.config, host=spec.host)


def deployment(spec: ReplicaSpec, *, replicas: int, cpus: float, gpus: float):
    """The bound Ray Serve application: ``replicas`` copies of the app of ``spec``."""
    from ray import serve

    @serve.ingress()
    class MusiqReplica:
        def __init__(self, spec: ReplicaSpec) -> None:
            self.spec = spec
            self.musiq_app = None

        def __serve_build_asgi_app__(self):
            self.musiq_app = build_app(self.spec)
            return self.musiq_app

        def check_health(self) -> None:
            """Fail (so Serve replaces this replica) when a model's scoring loop has stopped
            or one forward pass has run past the request timeout."""
            if self.musiq_app is None:
                return
            service = self.musiq_app.state.service
            for name, b in service.batchers.items():
                why = b.stalled(service.config.timeout_s)
                if why:
                    raise RuntimeError(f"model '{name}': {why}")

    # A replica takes requests up to its own image queue; beyond it, it answers 503 itself.
    # Requests waiting for a replica are bounded too: past max_queue, Serve answers 503 with
    # Retry-After, as a full replica queue does.
    options = dict(num_replicas=replicas, max_ongoing_requests=spec.config.max_queue,
                   max_queued_requests=spec.config.max_queue,
                   backpressure_config={"status_code": 503, "retry_after_s": 1},
                   ray_actor_options={"num_cpus": cpus, "num_gpus": gpus},
                   health_check_period_s=10, health_check_timeout_s=30)
    return serve.deployment(name="MusiqReplica", **options)(MusiqReplica).bind(spec)


def run(spec: ReplicaSpec, *, port: int, address: str | None, replicas: int, cpus: float,
        gpus: float) -> int:
    """Start (or join, with ``address``) a Ray cluster, serve the app on ``spec.host:port``
    until SIGTERM/SIGINT, then delete it (and stop what this process started)."""
    try:
        import ray
        from ray import serve
    except ImportError as e:
        from ..extras import needs
        raise MusiqError(f"{needs('musiq serve --engine ray', 'serve-ray')} "
                         f"({e.name} is missing)") from None
    if replicas < 1:
        raise MusiqError("--replicas must be >= 1")
    ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        serve_was_running = _check_serve(serve, spec.host, port)
    except MusiqError:
        ray.shutdown()
        raise
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": spec.host, "port": port})
        try:
            serve.run(deployment(spec, replicas=replicas, cpus=cpus, gpus=gpus),
                      name=APP_NAME, route_prefix="/")
        except RuntimeError as e:  # a replica failed to start: its error is in the Ray logs
            raise MusiqError(f"the Ray Serve application did not start: {e} (the replica's "
                             "error is in the Ray session's logs/serve/ folder)") from None
        print(f"musiq serve: http://{spec.host}:{port}/ on Ray Serve, {replicas} replica(s) "
              f"(API key {'required' if spec.config.api_key else 'off'})", file=sys.stderr,
              flush=True)
        while not stop.wait(1.0):
            pass
        print("musiq serve: stopping the Ray Serve application", file=sys.stderr, flush=True)
    finally:
        _stop(serve, ray, shutdown_serve=not serve_was_running)
    return 0


def _check_serve(serve, host: str, port: int) -> bool:
    """Whether Ray Serve already runs on the cluster; refuse (before changing anything) when
    it listens elsewhere than ``host:port`` (its HTTP options are fixed once started) or
    already has an application named ``musiq``."""
    from ray.serve.context import _get_global_client  # no public way to read http_options
    client = _get_global_client(raise_if_no_controller_running=False)
    if client is None:
        return False
    http = client.http_config
    if (http.host, http.port) != (host, port):
        raise MusiqError(f"Ray Serve on this cluster already listens on {http.host}:"
                         f"{http.port}; use --host {http.host} --port {http.port}, or stop "
                         "it first (serve shutdown)")
    if APP_NAME in serve.status().applications:
        raise MusiqError(f"Ray Serve on this cluster already runs an application named "
                         f"'{APP_NAME}' (another musiq serve?); stop it first "
                         f"(serve delete {APP_NAME})")
    return True


def _stop(serve, ray, *, shutdown_serve: bool) -> None:
    """Delete the application; stop Serve too when this process started it (and Ray with
    the driver when it was this process's own)."""
    try:
        if shutdown_serve:
            serve.shutdown()
        else:
            serve.delete(APP_NAME)
    finally:
        ray.shutdown()
    print("musiq serve: Ray Serve application stopped", file=sys.stderr, flush=True)


def run_from_args(args, config: ServeConfig, load: dict) -> int:
    """``musiq serve --engine ray`` with the parsed command line ``args``; ``load``: the
    ``musiq.load`` arguments every replica loads its models with."""
    spec = ReplicaSpec(models=tuple(args.model or ["koniq"]), config=config, host=args.host,
                       load=load)
    return run(spec, port=args.port, address=args.ray_address, replicas=args.replicas,
               cpus=args.replica_cpus, gpus=args.replica_gpus)


def app_builder(args: dict):
    """The application for a Ray Serve config file (``serve run``, KubeRay's RayService):
    ``import_path: musiq.serve.ray_engine:app_builder`` with ``args`` ``models`` (list of
    names or paths; default ``[koniq]``), ``replicas`` (1), ``replica_cpus`` (1),
    ``replica_gpus`` (0), ``device`` ("auto"), ``checkpoint_dir``, ``max_pixels``, and any
    :class:`~musiq.serve.config.ServeConfig` field (e.g. ``api_key``, ``allowed_hosts``)."""
    from .config import SERVE_MAX_PIXELS
    args = dict(args)
    models = tuple(args.pop("models", None) or ["koniq"])
    replicas = int(args.pop("replicas", 1))
    cpus, gpus = float(args.pop("replica_cpus", 1)), float(args.pop("replica_gpus", 0))
    load = {"device": args.pop("device", "auto"),
            "checkpoint_dir": args.pop("checkpoint_dir", None),
            "max_pixels": args.pop("max_pixels", SERVE_MAX_PIXELS) or None}
    for key in ("allowed_hosts", "allowed_origins"):
        if key in args:
            args[key] = tuple(args[key])
    host = args.pop("host", "0.0.0.0")
    try:
        config = ServeConfig(**args)
    except (TypeError, ValueError) as e:
        raise MusiqError(f"invalid musiq serve settings in the Ray Serve config: {e}") from None
    return deployment(ReplicaSpec(models=models, load=load, config=config, host=host),
                      replicas=replicas, cpus=cpus, gpus=gpus)
