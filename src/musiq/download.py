"""Download official checkpoints: resumable, validated, recorded.

A file is fetched to ``<name>.partial`` beside its final place, resumed with an HTTP
``Range`` request when a partial file is already there, and renamed to its final name only
when it is complete (the server's length, and its MD5 when it sends ``x-goog-hash``) and
structurally a checkpoint of the expected model (every parameter key, shape and CRC, via
:mod:`musiq.checkpoint`). Size and SHA-256 are then recorded in ``<name>.json`` beside it.
A file that arrives complete but is not the right checkpoint is deleted; an interrupted
transfer leaves only the ``.partial`` file, which the next attempt resumes. Nothing here
ever runs when offline (``offline=True`` or ``$MUSIQ_OFFLINE=1``).

Only the standard library (``urllib``) is used: one GET per attempt needs nothing more.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from tqdm import tqdm

from .checkpoint import load_checkpoint
from .errors import CheckpointError, CheckpointNotFound, MusiqError
from .locate import ENV_DIR, cache_dir, find_checkpoint
from .registry import BASE_URL, ModelInfo

ENV_OFFLINE = "MUSIQ_OFFLINE"
ENV_BASE_URL = "MUSIQ_BASE_URL"
PARTIAL = ".partial"
CHUNK = 1 << 20  # bytes per read
#: Seconds without any data before a connection is abandoned (per socket operation).
DEFAULT_TIMEOUT = 60.0
#: Seconds one whole download may take (155 MB at the minimum rate below takes ~2.5 h; at
#: 1 MB/s, 2.6 min).
DEFAULT_DEADLINE = 4 * 3600.0
#: Bytes per second, averaged over RATE_WINDOW seconds, below which a transfer is abandoned
#: (a server trickling a byte every few seconds never trips the per-read timeout).
DEFAULT_MIN_RATE = 16 * 1024
RATE_WINDOW = 30.0
#: Upper bounds of the official files' sizes. The exact sizes are not published (public
#: listings give 155.4 MB for the four quality checkpoints and 315.1 MB for imagenet); a
#: response longer than its Content-Length, or than this bound when it sends none, is junk
#: and is deleted rather than kept to resume.
SIZE_BOUNDS = {"imagenet_pretrain.npz": 340_000_000}
DEFAULT_SIZE_BOUND = 170_000_000
#: Progress lines, when stderr is not a terminal, at most this often (seconds).
LOG_EVERY_S = 10.0


def size_bound(info: ModelInfo) -> int:
    """Most bytes a download of ``info`` may take (see :data:`SIZE_BOUNDS`)."""
    return SIZE_BOUNDS.get(info.filename, DEFAULT_SIZE_BOUND)


class DownloadError(MusiqError):
    """A download failed (network, HTTP status, incomplete or wrong content)."""


class TransferInterrupted(DownloadError):
    """The connection ended early; the ``.partial`` file is kept for resuming."""


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


def _md5_from_headers(headers) -> str | None:
    """MD5 (hex) of the whole object from Google Cloud Storage's ``x-goog-hash`` header."""
    for value in headers.get_all("x-goog-hash") or []:
        for part in value.split(","):
            key, _, b64 = part.strip().partition("=")
            if key == "md5" and b64:
                try:
                    return base64.b64decode(b64).hex()
                except ValueError:
                    return None
    return None


def _total_from_content_range(value: str | None) -> int | None:
    """``bytes a-b/total`` -> total."""
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _start_from_content_range(value: str | None) -> int | None:
    if not value or not value.startswith("bytes "):
        return None
    first = value[6:].split("-", 1)[0].strip()
    return int(first) if first.isdigit() else None


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to the host of the first URL (the official bucket, or the
    mirror in ``$MUSIQ_BASE_URL``): a file from anywhere else is not the official one."""

    def __init__(self, host: str) -> None:
        self.host = host

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        target = urllib.parse.urlsplit(newurl)
        if target.netloc.lower() != self.host or target.scheme not in ("http", "https"):
            raise DownloadError(f"{req.full_url}: redirected to {newurl}, another host; "
                                f"only {self.host} is trusted for checkpoints")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _Transfer:
    """One GET, resuming ``partial`` where possible. Returns the object's total size."""

    def __init__(self, url: str, partial: Path, timeout: float, progress: bool, *,
                 bound: int = DEFAULT_SIZE_BOUND, deadline: float = DEFAULT_DEADLINE,
                 min_rate: float = DEFAULT_MIN_RATE,
                 log: Callable[[str], None] | None = None) -> None:
        self.url, self.partial, self.timeout, self.progress = url, partial, timeout, progress
        self.bound, self.deadline, self.min_rate, self.log = bound, deadline, min_rate, log
        self.md5: str | None = None
        self.opener = urllib.request.build_opener(
            _SameHostRedirects(urllib.parse.urlsplit(url).netloc.lower()))

    def run(self) -> int:
        have = self.partial.stat().st_size if self.partial.exists() else 0
        req = urllib.request.Request(self.url, headers={"User-Agent": "musiq-downloader"})
        if have:
            req.add_header("Range", f"bytes={have}-")
        try:
            resp = self.opener.open(req, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:  # nothing after `have`: the partial file may be whole
                total = _total_from_content_range(e.headers.get("Content-Range"))
                if total == have:
                    return have
                self.partial.unlink()  # longer than the object: it cannot be a prefix of it
                raise DownloadError(f"{self.url}: the partial download did not match the "
                                    "server's file and was removed; run again") from None
            raise DownloadError(f"{self.url}: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", e)
            raise DownloadError(f"{self.url}: cannot connect ({reason})") from None
        with resp:
            self.md5 = _md5_from_headers(resp.headers)
            if resp.status == 206:
                start = _start_from_content_range(resp.headers.get("Content-Range"))
                total = _total_from_content_range(resp.headers.get("Content-Range"))
                if start != have or total is None:
                    self.partial.unlink()  # start again next time
                    raise DownloadError(f"{self.url}: the server answered the resume request "
                                        f"with an unexpected range "
                                        f"({resp.headers.get('Content-Range')})")
                mode = "ab"
            else:  # 200: the whole file (a server without Range support restarts it)
                have, mode = 0, "wb"
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
            if total is not None and total > self.bound:
                raise DownloadError(f"{self.url}: the server announces {total:,} bytes, more "
                                    f"than this checkpoint can be ({self.bound:,}); refused")
            return self._copy(resp, mode, have, total)

    def _copy(self, resp, mode: str, have: int, total: int | None) -> int:
        got = have
        bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=self.partial.name[:-len(PARTIAL)], disable=not self.progress,
                   file=sys.stderr, leave=False)
        try:
            f = open(self.partial, mode)
        except OSError as e:
            raise DownloadError(f"cannot write {self.partial} ({e.strerror or e})") from None
        limit = total if total is not None else self.bound
        started = window_start = last_log = time.monotonic()
        window_bytes = 0
        try:
            with f:
                while True:
                    try:
                        block = resp.read1(CHUNK)  # what has arrived: keep all of it
                    except (OSError, ValueError, http.client.HTTPException) as e:
                        # IncompleteRead, connection reset, read timeout
                        raise TransferInterrupted(
                            f"{self.url}: transfer interrupted after {got:,} of "
                            f"{total or 0:,} bytes ({type(e).__name__}); run again to resume"
                        ) from None
                    if not block:
                        break
                    try:
                        f.write(block)
                    except OSError as e:  # disk full, quota: keep what is written
                        raise DownloadError(f"cannot write {self.partial} "
                                            f"({e.strerror or e}); free space and run again "
                                            "to resume") from None
                    got += len(block)
                    bar.update(len(block))
                    if got > limit:  # an endless or lying response: junk, not a prefix
                        f.close()
                        self.partial.unlink()
                        raise DownloadError(f"{self.url}: the server sent more than "
                                            f"{limit:,} bytes; the data was removed")
                    now = time.monotonic()
                    window_bytes += len(block)
                    if now - started > self.deadline:
                        raise DownloadError(f"{self.url}: not finished after the limit of "
                                            f"{self.deadline:g} s ({got:,} bytes so far, kept "
                                            "to resume)")
                    if now - window_start >= RATE_WINDOW:
                        rate = window_bytes / (now - window_start)
                        if rate < self.min_rate:
                            raise DownloadError(
                                f"{self.url}: too slow ({rate:,.0f} bytes/s over "
                                f"{now - window_start:.0f} s, below the minimum of "
                                f"{self.min_rate:,.0f}); {got:,} bytes kept to resume")
                        window_start, window_bytes = now, 0
                    if self.log and not self.progress and now - last_log >= LOG_EVERY_S:
                        last_log = now
                        of = f" of {total / 1e6:.1f} MB ({100 * got / total:.0f}%)" if total else ""
                        self.log(f"{self.partial.name[:-len(PARTIAL)]}: {got / 1e6:.1f} MB{of}")
        finally:
            bar.close()
        if total is None:
            return got
        if got != total:
            raise TransferInterrupted(f"{self.url}: transfer interrupted after {got:,} of "
                                      f"{total:,} bytes; run again to resume")
        return total


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

    Two writers appending to one ``.partial`` file would corrupt it.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no lock; validation still catches a corrupted result
        yield
        return
    with open(lock, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


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
