"""``musiq serve``: serve models over HTTP (``POST /v1/score``) with a web page at ``/``.

Contract: ``musiq serve --model NAME|PATH --host H --port P`` serves until stopped (Ctrl-C or
SIGTERM). ``--model`` may be repeated; the first is the default. Needs the ``serve`` extra.
"""
from __future__ import annotations

import argparse
import errno
import logging
import os
import socket
import sys


from ..errors import MusiqError
from ..serve.config import SERVE_MAX_PIXELS, ServeConfig
from .common import add_model_options, options_from_args

API_KEY_ENV = "MUSIQ_API_KEY"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve models over HTTP with a web page",
                       description=__doc__.split("\n")[0])
    # --max-tokens is the server's own (below): it answers 422 rather than an error row.
    add_model_options(p, several=True, max_pixels=SERVE_MAX_PIXELS, image_tokens=False)
    d = ServeConfig()
    g = p.add_argument_group("server")
    _limit_options(g, d)
    _access_options(g, d)
    _ray_options(p)
    g.add_argument("--log-level", default="info",
                   choices=("critical", "error", "warning", "info", "debug"))
    g.add_argument("--no-access-log", action="store_true", help="do not log each request")
    p.set_defaults(func=run)


def _limit_options(g, d: ServeConfig) -> None:
    """Address, batching, queue, sizes and deadlines."""
    g.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    g.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    g.add_argument("--max-batch-size", type=int, default=d.max_batch_size, metavar="N",
                   help=f"images per forward pass at most (default {d.max_batch_size})")
    g.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms, metavar="MS",
                   help="how long a batch waits for more images after its first "
                        f"(default {d.max_wait_ms:g})")
    g.add_argument("--max-queue", type=int, default=d.max_queue, metavar="N",
                   help="images admitted and not yet answered; beyond it requests get 503 "
                        f"with Retry-After (default {d.max_queue})")
    g.add_argument("--max-upload-mb", type=float, default=d.max_upload_bytes / 2**20,
                   metavar="MB", help="largest request body in MiB, else 413 "
                                      f"(default {d.max_upload_bytes / 2**20:g})")
    g.add_argument("--max-body-memory-mb", type=float,
                   default=d.max_body_memory_bytes / 2**20, metavar="MB",
                   help="request bodies held at once over all connections in MiB (received or "
                        "waiting for their answer); beyond it 503 at once "
                        f"(default {d.max_body_memory_bytes / 2**20:g})")
    g.add_argument("--max-files", type=int, default=d.max_files, metavar="N",
                   help=f"files per request, else 413 (default {d.max_files})")
    g.add_argument("--timeout", type=float, default=d.timeout_s, metavar="S",
                   help=f"deadline of one request in seconds, else 504 (default {d.timeout_s:g})")
    g.add_argument("--decode-workers", type=int, default=d.decode_workers, metavar="N",
                   help="worker processes decoding and tokenising images, shared by the "
                        "models; each makes every model's tokens from one decode "
                        f"(default {d.decode_workers})")
    g.add_argument("--body-timeout", type=float, default=d.body_timeout_s, metavar="S",
                   help="seconds a client has to send its request body, else 408; the queue "
                        f"slot is taken only after it (default {d.body_timeout_s:g})")
    g.add_argument("--decode-timeout", type=float, default=d.decode_timeout_s, metavar="S",
                   help="seconds one image may take to decode; past it its worker process is "
                        f"killed and the image gets an error (default {d.decode_timeout_s:g})")
    g.add_argument("--max-tokens", type=int, default=d.max_tokens, metavar="N",
                   help="refuse images that would make more than N tokens (all scales) with "
                        f"422, before tokenising (default {d.max_tokens:,}; 0 = no limit)")


def _access_options(g, d: ServeConfig) -> None:
    """Who may call, and how connections are bounded."""
    g.add_argument("--allowed-host", action="append", metavar="NAME",
                   help="accept this Host header name (repeat; '*' = any; default: the bound "
                        "host, and localhost names for a loopback bind)")
    g.add_argument("--allowed-origin", action="append", metavar="ORIGIN",
                   help="accept cross-site requests from this origin, e.g. "
                        "https://app.example (repeat; default: same origin only)")
    g.add_argument("--api-key", default=os.environ.get(API_KEY_ENV), metavar="KEY",
                   help=f"require this key on /v1/* (default ${API_KEY_ENV}; prefer the "
                        "variable: arguments are visible to other local users)")
    g.add_argument("--max-connections", type=int, default=d.max_connections, metavar="N",
                   help="open connections at most, lowered to fit the open-file limit; one more "
                        "evicts the oldest one still sending its headers, else gets 503 "
                        f"(default {d.max_connections})")
    g.add_argument("--header-timeout", type=float, default=d.header_timeout_s, metavar="S",
                   help="seconds a request's headers may take, else 408 and the connection "
                        f"is closed (default {d.header_timeout_s:g})")
    g.add_argument("--keep-alive-timeout", type=float, default=d.keep_alive_timeout_s,
                   metavar="S", help="seconds an idle kept-alive connection stays open "
                                     f"(default {d.keep_alive_timeout_s:g})")
    g.add_argument("--protect-all", action="store_true",
                   help="with an API key, require it on every route but /healthz (/metrics, "
                        "/docs, /openapi.json and the page too; browsers then cannot open the "
                        "page without a proxy adding the key); default: only /v1/*")


def _ray_options(p: argparse.ArgumentParser) -> None:
    r = p.add_argument_group("engine")
    r.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process (default); ray: a Ray Serve deployment of "
                        "--replicas copies (needs the serve-ray extra; see docs/serve.md)")
    r.add_argument("--ray-address", metavar="A", help="Ray cluster to join (default: start a "
                   "local one, stopped with the server)")
    r.add_argument("--replicas", type=int, default=1, metavar="N",
                   help="model replicas with --engine ray (default 1)")
    r.add_argument("--replica-cpus", type=float, default=1.0, metavar="F",
                   help="CPUs Ray reserves per replica (default 1)")
    r.add_argument("--replica-gpus", type=float, default=0.0, metavar="F",
                   help="GPUs per replica, fractions share one (e.g. 0.5; default 0)")


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    try:
        return ServeConfig(
            max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
            max_queue=args.max_queue, max_upload_bytes=int(args.max_upload_mb * 2**20),
            max_files=args.max_files, timeout_s=args.timeout,
            max_body_memory_bytes=int(args.max_body_memory_mb * 2**20),
            decode_workers=args.decode_workers, api_key=args.api_key or None,
            protect_all=args.protect_all,
            body_timeout_s=args.body_timeout, decode_timeout_s=args.decode_timeout,
            max_tokens=args.max_tokens or None,
            allowed_hosts=tuple(args.allowed_host) if args.allowed_host else None,
            allowed_origins=tuple(args.allowed_origin or ()),
            max_connections=args.max_connections, header_timeout_s=args.header_timeout,
            keep_alive_timeout_s=args.keep_alive_timeout)
    except ValueError as e:
        raise MusiqError(f"invalid server option: {e}") from None


def run(args: argparse.Namespace) -> int:
    try:
        from ..serve.app import create_app, load_scorers
        from ..serve.server import build_server
    except ImportError as e:
        from ..extras import needs
        raise MusiqError(needs(f"musiq serve ({e.name} is missing)", "serve")) from None
    config = config_from_args(args)
    load = dict(checkpoint_dir=args.checkpoint_dir, offline=args.offline,
                options=options_from_args(args))  # every scoring option, checked now
    if args.engine == "ray":
        from ..serve.ray_engine import run_from_args
        if args.ray_address is None:  # a port in use fails here, not in Ray's proxy
            listen(args.host, args.port).close()
        return run_from_args(args, config, load)
    # Listen before loading anything: a port in use fails at once, and the URL printed
    # below is one this process really serves.
    sock = listen(args.host, args.port)
    scorers = load_scorers(args.model or ["koniq"], **load)
    try:
        app = create_app(scorers, config, host=args.host)
    except ValueError as e:
        raise MusiqError(str(e)) from None
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s: %(message)s")
    for s in scorers:
        print(f"musiq serve: model '{s.name}' ({s.kind}, range {s.score_range})",
              file=sys.stderr)
    if config.api_key is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"musiq serve: warning: listening on {args.host} without an API key; set "
              f"${API_KEY_ENV} or put an authenticating proxy in front", file=sys.stderr)
    print(f"musiq serve: http://{args.host}:{args.port}/ (API key "
          f"{'required' if config.api_key else 'off'})", file=sys.stderr, flush=True)
    server = build_server(app, config, log_level=args.log_level,
                          access_log=not args.no_access_log)
    server.run(sockets=[sock])
    return 0


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``, or a clear error (port in use, bad host)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
        family, _, _, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        raise MusiqError(f"cannot listen on {host}:{port}: {e.strerror or e}"
                         + (" (another process uses this port; choose another with --port)"
                            if getattr(e, "errno", None) == errno.EADDRINUSE else "")) from None
    sock.set_inheritable(True)
    return sock
