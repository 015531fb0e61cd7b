"""Thumbnails of scored images, made in parallel threads with a progress bar.

Pillow releases the GIL while decoding and resizing, so threads use every core. Decoder
memory is bounded over all threads by a budget of decoded pixels (:class:`PixelBudget`): a
JPEG is decoded at a reduced scale (``draft``), other formats whole, and an image takes its
share of the budget while it is decoded and resized (one larger than the budget runs alone).
Thumbnail files are named by row number (``NNNNNN.jpg``, never from the image's path) and
written aside and renamed (:mod:`musiq.atomic`), so a link planted in the folder is replaced,
not followed.
"""
from __future__ import annotations

import base64
import io
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

from PIL import Image
from tqdm import tqdm

from ..atomic import atomic_write

# Pillow's own decompression-bomb limit stays as it is (it is process-wide: lifting it here
# would change what the decoder refuses in every other module); a file above it gets a card
# without a picture.

#: Decoded pixels held at once over all thumbnail threads (about 4 to 8 bytes each while an
#: image is converted and resized: 100 M pixels is about 0.4 to 0.8 GB).
PIXEL_BUDGET = 100_000_000


class PixelBudget:
    """A counting limit on decoded pixels: :meth:`take` waits until ``n`` pixels (at most the
    whole budget) are free; :meth:`give` returns them. ``peak`` is the most ever taken."""

    def __init__(self, total: int = PIXEL_BUDGET) -> None:
        self.total = max(int(total), 1)
        self.used = 0
        self.peak = 0
        self._cond = threading.Condition()

    def take(self, n: int) -> int:
        n = min(max(int(n), 1), self.total)
        with self._cond:
            self._cond.wait_for(lambda: self.used + n <= self.total)
            self.used += n
            self.peak = max(self.peak, self.used)
        return n

    def give(self, n: int) -> None:
        with self._cond:
            self.used -= n
            self._cond.notify_all()


def _trim() -> None:
    """Hand freed heap memory back to the system (glibc keeps one heap per thread: a large
    decode freed in one thread's heap is not reused by the next thread's decode)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _libc():
    try:
        import ctypes
        lib = ctypes.CDLL("libc.so.6")
        lib.malloc_trim  # noqa: B018 - present on glibc only
        return lib
    except (OSError, AttributeError):
        return None


_LIBC = _libc() if sys.platform.startswith("linux") else None
#: Images of at least this many decoded pixels are followed by :func:`_trim`.
TRIM_PIXELS = 4_000_000


def thumbnail_bytes(path: str | os.PathLike, size: int,
                    budget: PixelBudget | None = None) -> bytes | None:
    """A JPEG whose longer side is at most ``size`` px, or None if the file cannot be read.
    ``budget``: the shared limit on decoded pixels (None: no limit)."""
    try:
        with Image.open(path) as im:
            im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale
            w, h = im.size
            taken = budget.take(w * h) if budget is not None else 0
            try:
                if im.mode not in ("RGB", "RGBA", "L", "LA"):
                    im = im.convert("RGB")  # palette, 16-bit, CMYK: resample in colour
                im.thumbnail((size, size), Image.Resampling.BILINEAR)
                small = im.convert("RGB")
            finally:
                if w * h >= TRIM_PIXELS:
                    del im
                    _trim()
                if budget is not None:
                    budget.give(taken)
            buf = io.BytesIO()
            small.save(buf, "JPEG", quality=80)
            return buf.getvalue()
    except Exception:  # a missing or odd file: the card shows no picture, nothing else fails
        return _video_thumbnail(path, size)


def _video_thumbnail(path: Path, size: int) -> bytes | None:
    """A video's first frame as a thumbnail (None when it is no video or PyAV is missing)."""
    try:
        from ..decoding.video import VideoReader, is_video
        if not is_video(path):
            return None
        with VideoReader(path) as r:
            rgb = next(r.frames(None)).rgb
        im = Image.fromarray(rgb)
        im.thumbnail((size, size), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=80)
        return buf.getvalue()
    except Exception:
        return None


def make_thumbnails(paths: Sequence[str | os.PathLike | None], size: int, *,
                    folder: Path | None, workers: int | None = None, progress: bool = True,
                    budget: PixelBudget | None = None) -> list[str | None]:
    """Thumbnail URLs, one per path: ``folder/NNNNNN.jpg`` relative to the folder's parent
    when ``folder`` is given, else ``data:`` URIs embedded in the page. None where no
    thumbnail could be made (no path, or an unreadable file). ``budget``: decoded pixels
    over all threads (default :data:`PIXEL_BUDGET`)."""
    budget = budget or PixelBudget()
    if folder is not None:
        folder.mkdir(exist_ok=True)

    def one(item: tuple[int, str | os.PathLike]) -> str | None:
        i, p = item
        data = thumbnail_bytes(p, size, budget)
        if data is None:
            return None
        if folder is None:
            return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
        name = f"{i:06d}.jpg"
        with atomic_write(folder / name, "wb", fsync=False) as f:
            f.write(data)
        return f"{folder.name}/{name}"

    out: list[str | None] = [None] * len(paths)
    todo = [(i, p) for i, p in enumerate(paths) if p is not None]
    workers = workers or min(16, (os.cpu_count() or 2) * 2)
    window = workers * 64  # tasks in flight: a million rows never become a million futures
    with ThreadPoolExecutor(workers) as pool, \
            tqdm(total=len(todo), unit="img", desc="thumbnails", file=sys.stderr,
                 disable=not progress) as bar:
        for lo in range(0, len(todo), window):
            part = todo[lo:lo + window]
            for (i, _), url in zip(part, pool.map(one, part)):
                out[i] = url
                bar.update(1)
    return out
