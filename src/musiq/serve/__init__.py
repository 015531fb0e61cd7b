"""``musiq serve``: an HTTP scoring service with dynamic batching and a web page.

Needs the ``serve`` extra (FastAPI, uvicorn, python-multipart)::

    bash scripts/setup.sh            # from a checkout: every extra
    musiq serve --model koniq --host 127.0.0.1 --port 8000

Layout: ``server`` (uvicorn with the ``connections`` limits) -> ``config`` (limits) ->
``uploads`` / ``limits`` / ``auth`` (taking a request) -> ``work`` (decode in killable worker
processes, ``decoding``) -> ``batcher`` (model thread) -> ``app`` (routes, ``schema``), with
``prometheus``, ``page`` and ``apidocs`` beside them.
"""
from .config import SERVE_MAX_PIXELS, ServeConfig

__all__ = ["SERVE_MAX_PIXELS", "ServeConfig", "create_app"]


def create_app(*args, **kwargs):
    """See :func:`musiq.serve.app.create_app` (imported lazily: FastAPI is optional)."""
    from .app import create_app as _create_app
    return _create_app(*args, **kwargs)
