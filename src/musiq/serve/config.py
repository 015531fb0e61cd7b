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
    timeout_s: float = 60.0
    decode_workers: int = 2
    api_key: str | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.max_batch_size >= 1, "max_batch_size must be >= 1"),
            (self.max_wait_ms >= 0, "max_wait_ms must be >= 0"),
            (self.max_queue >= 1, "max_queue must be >= 1"),
            (self.max_upload_bytes >= 1, "max_upload_bytes must be >= 1"),
            (1 <= self.max_files <= self.max_queue,
             "max_files must be between 1 and max_queue (a request must be able to fit)"),
            (self.timeout_s > 0, "timeout_s must be > 0"),
            (self.decode_workers >= 1, "decode_workers must be >= 1"),
            (self.api_key is None or len(self.api_key) > 0, "api_key must not be empty"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
