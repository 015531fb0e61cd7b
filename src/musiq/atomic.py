"""Write files so that a reader never sees half of one, and never through a planted link.

Every output musiq replaces (score files, reports, thumbnails, checkpoints, ONNX files, JSON
sidecars) is written to a temporary file *created exclusively* beside its final place
(``O_CREAT | O_EXCL | O_NOFOLLOW``: an existing file or symbolic link of that name is never
opened, so a link planted there cannot redirect the write), flushed to disk and renamed over
the final path (``os.replace``: atomic on POSIX; the final path, if it was a link, is replaced
by the file, not followed). A crash, ``kill -9`` or a full disk leaves the previous file whole.

    >>> with atomic_write("report.html", "w") as f:
    ...     f.write("<html>...")
"""
from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import IO, Iterator

__all__ = ["atomic_write", "create_exclusive", "replace_with", "temp_path"]

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(
    os, "O_CLOEXEC", 0)


def temp_path(path: str | os.PathLike, tag: str = "partial") -> Path:
    """A fresh name beside ``path`` for its temporary file (``NAME.<tag>-<random>``)."""
    p = Path(path)
    return p.with_name(f"{p.name}.{tag}-{secrets.token_hex(4)}")


def create_exclusive(path: str | os.PathLike, mode: str = "wb", *, perms: int = 0o644,
                     encoding: str | None = None, newline: str | None = None) -> IO:
    """Open a new file for writing; fails (``FileExistsError``) if ``path`` exists, even as a
    dangling symbolic link, instead of following it."""
    fd = os.open(os.fspath(path), _FLAGS, perms)
    try:
        return os.fdopen(fd, mode, encoding=encoding if "b" not in mode else None,
                         newline=newline if "b" not in mode else None)
    except BaseException:
        os.close(fd)
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, encoding: str | None = "utf-8",
                 newline: str | None = None, fsync: bool = True) -> Iterator[IO]:
    """Write ``path`` as a whole: to a new temporary file beside it, renamed over it when the
    block ends without an exception. On an exception (Ctrl-C included) the temporary file is
    removed and ``path`` is left as it was."""
    tmp = temp_path(path)
    f = create_exclusive(tmp, mode, encoding=encoding, newline=newline)
    try:
        with f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def replace_with(path: str | os.PathLike, write) -> None:
    """``write(tmp_path)`` writes a whole file at a fresh temporary path (for libraries that
    take a file name: Parquet, ONNX, NumPy); it is then renamed over ``path``. The temporary
    name is reserved exclusively first, so no link planted there is followed."""
    tmp = temp_path(path)
    create_exclusive(tmp).close()
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
