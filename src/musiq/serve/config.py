"""Settings of a ``musiq serve`` instance (limits, batching, authentication)."""
from __future__ import annotations

from dataclasses import dataclass

#: Pixel limit of the server unless ``--max-pixels`` says otherwise: 16 MP takes a 12 MP phone
#: photo (4032x3024) or a 4608x3456 camera frame; its tokens are ~0.2 GB. The library's
#: default (100 MP) would let one small upload cost gigabytes and minutes.
SERVE_MAX_PIXELS = 16_000_000


@dataclass(frozen=True)
class ServeConfig:
    """Limits and batching parameters; see ``docs/serve.md`` for what each one bounds.

    ``max_queue`` bounds images admitted and not yet answered (requests beyond it get 503);
    ``max_upload_bytes`` bounds one request body, ``max_files`` the files in one request.
    ``timeout_s`` is the deadline of a whole request (upload, decode, queue, model).
    """

    max_batch_size: int = 8
    max_wait_ms: float = 5.0
    max_queue: int = 64
    max_upload_bytes: int = 32 * 1024 * 1024
    max_files: int = 16
    #: Bytes of request bodies held at once over all connections (being received or waiting
    #: for their answer); a request beyond it gets 503 at once.
    max_body_memory_bytes: int = 256 * 1024 * 1024
    timeout_s: float = 60.0
    decode_workers: int = 2
    api_key: str | None = None
    #: With an API key: also require it on every route but /healthz (/metrics, /docs,
    #: /openapi.json, the page); without, only /v1/* needs it.
    protect_all: bool = False
    #: Seconds a client has to send its whole body; admission is taken only after it.
    body_timeout_s: float = 30.0
    #: Seconds one image may take to decode and tokenise before its worker is killed.
    decode_timeout_s: float = 20.0
    #: Tokens one image may make (all scales); None = no limit. 16,384 takes any image within
    #: SERVE_MAX_PIXELS at ordinary aspect ratios (16 MP 4:3 = 15.7k) and refuses thin ones.
    max_tokens: int | None = 16_384
    #: Host header names accepted (None: the bound host, plus loopback names for a loopback
    #: bind; ("*",) = any). Browsers send the name they resolved, so this stops DNS rebinding.
    allowed_hosts: tuple[str, ...] | None = None
    #: Origins (scheme://host[:port]) besides the server's own that may call it.
    allowed_origins: tuple[str, ...] = ()
    #: Open connections at most (lowered to fit the open-file limit); one more evicts the
    #: oldest connection still sending its headers, or is refused with 503.
    max_connections: int = 1000
    #: Seconds a request's headers may take from its first byte (or the connection's start).
    header_timeout_s: float = 10.0
    #: Seconds an idle kept-alive connection stays open after an answer.
    keep_alive_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        checks = [
            (self.max_batch_size >= 1, "max_batch_size must be >= 1"),
            (self.max_wait_ms >= 0, "max_wait_ms must be >= 0"),
            (self.max_queue >= 1, "max_queue must be >= 1"),
            (self.max_upload_bytes >= 1, "max_upload_bytes must be >= 1"),
            (self.max_body_memory_bytes >= self.max_upload_bytes,
             "max_body_memory_bytes must be >= max_upload_bytes (a request must be able to fit)"),
            (1 <= self.max_files <= self.max_queue,
             "max_files must be between 1 and max_queue (a request must be able to fit)"),
            (self.timeout_s > 0, "timeout_s must be > 0"),
            (self.decode_workers >= 1, "decode_workers must be >= 1"),
            (self.body_timeout_s > 0, "body_timeout_s must be > 0"),
            (self.decode_timeout_s > 0, "decode_timeout_s must be > 0"),
            (self.max_tokens is None or self.max_tokens >= 1, "max_tokens must be >= 1"),
            (self.api_key is None or len(self.api_key) > 0, "api_key must not be empty"),
            (not self.protect_all or self.api_key is not None,
             "protect_all needs an API key (--api-key or $MUSIQ_API_KEY)"),
            (self.max_connections >= 1, "max_connections must be >= 1"),
            (self.header_timeout_s > 0, "header_timeout_s must be > 0"),
            (self.keep_alive_timeout_s > 0, "keep_alive_timeout_s must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
