"""One HTTP GET of a checkpoint into ``<name>.partial``, resumed with ``Range`` where a
partial file is there; bounded in size, time and rate; redirects only to the same host.

Used by :mod:`musiq.network.download`, which decides what to fetch, validates and renames. Only the
standard library (``urllib``) is used: one GET per attempt needs nothing more.
"""
from __future__ import annotations

import base64
import http.client
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from ..errors import MusiqError

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
DEFAULT_SIZE_BOUND = 170_000_000
#: Progress lines, when stderr is not a terminal, at most this often (seconds).
LOG_EVERY_S = 10.0


class DownloadError(MusiqError):
    """A download failed (network, HTTP status, incomplete or wrong content)."""


class TransferInterrupted(DownloadError):
    """The connection ended early; the ``.partial`` file is kept for resuming."""


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
