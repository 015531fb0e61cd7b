"""Download official checkpoints: resumable, validated, recorded.

A file is fetched to ``<name>.partial`` beside its final place, resumed with an HTTP
``Range`` request when a partial file is already there, and renamed to its final name only
when it is complete (the server's length, and its MD5 when it sends ``x-goog-hash``) and
structurally a checkpoint of the expected model (every parameter key, shape and CRC, via
:mod:`musiq.network.checkpoint`). Size and SHA-256 are then recorded in ``<name>.json`` beside it.
A file that arrives complete but is not the right checkpoint is deleted; an interrupted
transfer leaves only the ``.partial`` file, which the next attempt resumes. Nothing here
ever runs when offline (``offline=True`` or ``$MUSIQ_OFFLINE=1``).

The transfer itself (one GET, resumed, bounded) is :mod:`musiq.network.transfer`. A ``<name>.lock``
file serialises downloads of one file across processes and is removed when done.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from .checkpoint import load_checkpoint
from ..errors import CheckpointError, CheckpointNotFound
from .locate import ENV_DIR, cache_dir, find_checkpoint
from .registry import BASE_URL, ModelInfo
from .transfer import (CHUNK, DEFAULT_DEADLINE, DEFAULT_MIN_RATE, DEFAULT_SIZE_BOUND,  # noqa: F401
                       DEFAULT_TIMEOUT, LOG_EVERY_S, PARTIAL, RATE_WINDOW, DownloadError,
                       TransferInterrupted, _Transfer)

ENV_OFFLINE = "MUSIQ_OFFLINE"
ENV_BASE_URL = "MUSIQ_BASE_URL"
#: Upper bounds of the official files' sizes. The exact sizes are not published (public
#: listings give 155.4 MB for the four quality checkpoints and 315.1 MB for imagenet); a
#: response longer than its Content-Length, or than this bound when it sends none, is junk
#: and is deleted rather than kept to resume.
SIZE_BOUNDS = {"imagenet_pretrain.npz": 340_000_000}


def size_bound(info: ModelInfo) -> int:
    """Most bytes a download of ``info`` may take (see :data:`SIZE_BOUNDS`)."""
    return SIZE_BOUNDS.get(info.filename, DEFAULT_SIZE_BOUND)


@dataclass(frozen=True)
class Record:
    """What ``<file>.json`` holds about a downloaded checkpoint."""

    name: str
    url: str
    size: int  # bytes
    sha256: str  # hex
    downloaded_at: str  # ISO 8601, UTC

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2) + "\n"


def is_offline(offline: bool | None = None) -> bool:
    """``offline`` when given, else ``$MUSIQ_OFFLINE`` (``1``/``true``/``yes`` = offline)."""
    if offline is not None:
        return offline
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in ("1", "true", "yes", "on")


def base_url() -> str:
    """The bucket URL, overridable with ``$MUSIQ_BASE_URL`` (a mirror, or a test server)."""
    url = os.environ.get(ENV_BASE_URL) or BASE_URL
    return url if url.endswith("/") else url + "/"


def url_for(info: ModelInfo) -> str:
    return base_url() + info.relpath


def download_dir(checkpoint_dir: str | os.PathLike | None = None) -> Path:
    """Where downloads go: ``checkpoint_dir``, else ``$MUSIQ_CHECKPOINT_DIR``, else the cache."""
    if checkpoint_dir:
        return Path(checkpoint_dir)
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR])
    return cache_dir()


def record_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def read_record(path: Path) -> dict | None:
    """The recorded size/sha256 of a downloaded file, or None."""
    try:
        return json.loads(record_path(path).read_text())
    except (OSError, ValueError):
        return None


def file_hashes(path: Path) -> tuple[str, str]:
    """``(md5, sha256)`` of a file, hex, in one pass."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            md5.update(block)
            sha.update(block)
    return md5.hexdigest(), sha.hexdigest()


def _validate(partial: Path, info: ModelInfo, url: str) -> None:
    """Raise unless the file is a complete checkpoint of exactly ``info``'s variant."""
    try:
        _, variant = load_checkpoint(partial)
    except CheckpointError as e:
        raise DownloadError(f"{url}: the downloaded file is not a valid checkpoint: "
                            f"{str(e).removeprefix(str(partial) + ': ')}") from None
    if variant.num_classes != info.num_classes or variant.single_scale != info.single_scale:
        raise DownloadError(
            f"{url}: the downloaded file is not a '{info.name}' checkpoint: it has "
            f"{variant.num_classes} output(s) and {variant.num_scales} scale(s), expected "
            f"{info.num_classes} and {1 if info.single_scale else 3}")


def download(info: ModelInfo, directory: str | os.PathLike | None = None, *,
             force: bool = False, offline: bool | None = None, retries: int = 3,
             timeout: float = DEFAULT_TIMEOUT, progress: bool | None = None,
             log: Callable[[str], None] | None = None, deadline: float = DEFAULT_DEADLINE,
             min_rate: float = DEFAULT_MIN_RATE) -> Path:
    """Fetch ``info``'s checkpoint to ``directory`` (default :func:`download_dir`).

    ``retries``: further attempts (each resuming) after an interrupted transfer.
    ``progress``: a progress bar on stderr (default: when stderr is a terminal); without one,
    ``log`` gets a progress line every :data:`LOG_EVERY_S` seconds.
    ``deadline``: seconds for the whole transfer; ``min_rate``: bytes/s over
    :data:`RATE_WINDOW` s below which it is abandoned (what arrived is kept to resume).
    Redirects are followed only to the URL's own host; more bytes than the announced length
    (or :func:`size_bound`) are deleted.
    Returns the final path. Raises :class:`DownloadError` (or :class:`CheckpointNotFound`
    when offline); never leaves anything but a ``.partial`` file behind on failure.
    """
    directory = download_dir(directory)
    dest = directory / info.relpath
    url = url_for(info)
    if dest.is_file() and not force:
        return dest
    if is_offline(offline):
        raise CheckpointNotFound(f"{dest}: not present, and offline mode ({ENV_OFFLINE}=1 or "
                                 f"--offline) forbids downloading it from {url}")
    if progress is None:
        progress = sys.stderr.isatty()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(dest.with_name(dest.name + ".lock")):
        if dest.is_file() and not force:  # another process finished it while we waited
            return dest
        transfer = _Transfer(url, dest.with_name(dest.name + PARTIAL), timeout, progress,
                             bound=size_bound(info), deadline=deadline, min_rate=min_rate,
                             log=log)
        return _download_locked(info, dest, url, transfer, force=force, retries=retries,
                                log=log)


@contextlib.contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """One download per file at a time, across processes (POSIX ``flock``; elsewhere none).

    Two writers appending to one ``.partial`` file would corrupt it. The lock file is
    removed on the way out, success or failure (no empty ``.lock`` files left in the cache);
    a waiter that then holds a lock on the removed file sees that the path no longer names
    it and locks the path again.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no lock; validation still catches a corrupted result
        yield
        return
    while True:
        f = open(lock, "a+b")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                same = os.stat(lock).st_ino == os.fstat(f.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
        except BaseException:
            f.close()
            raise
        f.close()  # the holder removed it after we opened it: lock the new one
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        f.close()  # releases the flock


def _download_locked(info: ModelInfo, dest: Path, url: str, transfer: _Transfer, *,
                     force: bool, retries: int, log: Callable[[str], None] | None) -> Path:
    partial = transfer.partial
    if force and partial.exists():
        partial.unlink()
    for attempt in range(retries + 1):
        try:
            size = transfer.run()
            break
        except TransferInterrupted as e:
            if attempt == retries:
                raise
            if log:
                log(f"{e}; retrying ({attempt + 1}/{retries})")
            time.sleep(min(2.0 ** attempt, 10.0) * 0.1)
    if partial.stat().st_size != size:
        raise DownloadError(f"{url}: size on disk differs from the server's ({size:,} bytes)")
    md5, sha256 = file_hashes(partial)
    if transfer.md5 is not None and md5 != transfer.md5:
        partial.unlink()
        raise DownloadError(f"{url}: MD5 {md5} differs from the server's {transfer.md5}; "
                            "the damaged download was removed, run again")
    try:
        _validate(partial, info, url)
    except DownloadError:
        partial.unlink()  # complete but wrong: resuming it could never help
        raise
    record = Record(info.name, url, size, sha256,
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    record_path(dest).write_text(record.to_json())
    os.replace(partial, dest)
    return dest


def ensure_checkpoint(info: ModelInfo, checkpoint_dir: str | os.PathLike | None = None, *,
                      offline: bool | None = None, **kwargs) -> Path:
    """The checkpoint's path, downloading it first when it is found nowhere and not offline.

    Raises :class:`CheckpointNotFound` (listing where it looked and the URL) when offline.
    """
    try:
        return find_checkpoint(info, checkpoint_dir)
    except CheckpointNotFound as e:
        if is_offline(offline):
            raise CheckpointNotFound(f"{e}\n(offline mode: {ENV_OFFLINE}=1 or --offline; not "
                                     "downloading)") from None
        not_found = e
    # Always said, terminal or not: a service's log must show why its start takes minutes.
    print(f"musiq: {info.name} not found locally; downloading {url_for(info)}",
          file=sys.stderr, flush=True)
    kwargs.setdefault("log", lambda m: print(f"musiq: {m}", file=sys.stderr, flush=True))
    try:
        return download(info, checkpoint_dir, offline=False, **kwargs)
    except DownloadError as e:
        raise DownloadError(f"{not_found}\nDownloading it failed: {e}") from None
