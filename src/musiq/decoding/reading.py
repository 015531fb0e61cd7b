"""An input's encoded bytes, with the same checks for every engine.

The local engine, the Ray engine and anything else that reads an image file by path goes
through :func:`read_source`: a local path is read by :func:`musiq.decoding.decode.read_bytes` (regular
files only, the size bound checked before a byte is read, clear reasons); a filesystem URI
(``s3://``, ``gs://``, ``hdfs://``) gets the same checks through pyarrow's filesystem. Bytes
that arrive in a table (a Parquet column, a ``ray.data.Dataset``) go through
:func:`bytes_value`, which refuses what is not bytes (null, a number, text) and what is above
the same size bound. Every refusal is an :class:`~musiq.errors.ImageError` naming the input.
"""
from __future__ import annotations

import os
from typing import Any

from .decode import read_bytes, too_large
from ..errors import ImageError

#: How a row without a path is named in results.
NULL_PATH = "<null path>"


def is_uri(path: str) -> bool:
    """True for a filesystem URI other than ``file://`` (read through pyarrow)."""
    return "://" in path and not path.startswith("file://")


def read_source(path: str | os.PathLike, max_bytes: int | None) -> bytes:
    """The bytes of a file or filesystem URI of at most ``max_bytes`` bytes (None: any).

    Raises :class:`ImageError` (no such file, not a regular file, too large, unreadable)
    without reading a file that is refused.
    """
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not is_uri(text):
        return read_bytes(text[len("file://"):] if text.startswith("file://") else text,
                          max_bytes)
    return _read_uri(text, max_bytes)


def _read_uri(uri: str, max_bytes: int | None) -> bytes:
    import pyarrow.fs as pafs
    try:
        fs, where = pafs.FileSystem.from_uri(uri)
        info = fs.get_file_info(where)
        if info.type == pafs.FileType.NotFound:
            raise ImageError(uri, "no such file")
        if info.type == pafs.FileType.Directory:
            raise ImageError(uri, "is a directory, not an image file")
        if info.type != pafs.FileType.File:
            raise ImageError(uri, "is not a regular file (only regular files are read)")
        if max_bytes is not None and info.size is not None and info.size > max_bytes:
            raise too_large(uri, info.size, max_bytes)
        with fs.open_input_stream(where) as f:
            data = f.read() if max_bytes is None else f.read(max_bytes + 1)
    except ImageError:
        raise
    except Exception as e:  # pyarrow raises OSError and its own types for remote failures
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise ImageError(uri, f"cannot read file ({first})") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise ImageError(uri, f"file is above the limit of {max_bytes:,} bytes")
    return bytes(data)


def path_value(value: Any) -> str:
    """A table's ``path`` cell as the name results carry (:data:`NULL_PATH` for null)."""
    if value is None:
        return NULL_PATH
    if isinstance(value, bytes):
        return os.fsdecode(value)
    return str(value)


def bytes_value(value: Any, source: str, max_bytes: int | None) -> bytes:
    """A table's ``bytes`` cell as encoded image bytes, or :class:`ImageError`.

    Null, numbers, text and anything else that is not bytes are refused by type (a number is
    never turned into that many zero bytes); bytes above ``max_bytes`` are refused as a file
    of that size would be."""
    if source == NULL_PATH:
        raise ImageError(source, "the row's 'path' is null: every row needs a path")
    if value is None:
        raise ImageError(source, "the row's 'bytes' is null: no image data")
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise ImageError(source, f"the row's 'bytes' is {type(value).__name__}, not bytes "
                                 "(encoded image data)")
    if max_bytes is not None and len(value) > max_bytes:
        raise too_large(source, len(value), max_bytes)
    return bytes(value)
