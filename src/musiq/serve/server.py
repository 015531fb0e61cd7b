"""The uvicorn server of ``musiq serve``: one process, the app, and the connection limits of
:mod:`.connections` (header deadline, connection cap, accept errors logged at a bounded rate).
"""
from __future__ import annotations

import asyncio
import logging
import socket

import uvicorn
from starlette.formparsers import MultiPartParser

from .config import ServeConfig
from .connections import AcceptErrorLog, ConnectionGuard, connection_cap

log = logging.getLogger("musiq.serve")


class Server(uvicorn.Server):
    """uvicorn's server with :class:`AcceptErrorLog` as the event loop's exception handler."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().set_exception_handler(AcceptErrorLog())
        await super().startup(sockets)


def build_server(app, config: ServeConfig, *, log_level: str = "info",
                 access_log: bool = True) -> Server:
    """A server for ``app`` (made by :func:`.app.create_app`) with ``config``'s connection
    limits; refusals are counted in the app's ``musiq_rejected_total``."""
    # Multipart files above spool_max_size go to temporary files (one descriptor each); the
    # body budget bounds how many can be open at once.
    spooled = config.max_body_memory_bytes // MultiPartParser.spool_max_size
    cap = connection_cap(config.max_connections, spooled)
    if cap < config.max_connections:  # a warning only when the number was asked for
        explicit = config.max_connections != ServeConfig().max_connections
        log.log(logging.WARNING if explicit else logging.INFO,
                "at most %d connections (not %d): the open-file limit is lower; raise it with "
                "'ulimit -n'", cap, config.max_connections)
    metrics = app.state.service.metrics
    guard = ConnectionGuard(cap, config.header_timeout_s,
                            on_refusal=lambda reason: metrics.rejected.inc(reason=reason))
    return Server(uvicorn.Config(app, log_level=log_level, access_log=access_log, workers=1,
                                 http=guard.protocol(),
                                 timeout_keep_alive=config.keep_alive_timeout_s))
