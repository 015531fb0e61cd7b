"""Thumbnails of scored images, made in parallel threads with a progress bar.

Pillow releases the GIL while decoding and resizing, so threads use every core.
"""
from __future__ import annotations

import base64
import io
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

from PIL import Image
from tqdm import tqdm

# Pillow's own decompression-bomb limit stays as it is (it is process-wide: lifting it here
# would change what the decoder refuses in every other module); a file above it gets a card
# without a picture.


def thumbnail_bytes(path: Path, size: int) -> bytes | None:
    """A JPEG whose longer side is at most ``size`` px, or None if the file cannot be read."""
    try:
        with Image.open(path) as im:
            im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale
            im = im.convert("RGB")
            im.thumbnail((size, size), Image.Resampling.BILINEAR)
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=80)
            return buf.getvalue()
    except Exception:  # a missing or odd file: the card shows no picture, nothing else fails
        return _video_thumbnail(path, size)


def _video_thumbnail(path: Path, size: int) -> bytes | None:
    """A video's first frame as a thumbnail (None when it is no video or PyAV is missing)."""
    try:
        from ..video import VideoReader, is_video
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


def make_thumbnails(paths: Sequence[Path | None], size: int, *, folder: Path | None,
                    workers: int | None = None, progress: bool = True) -> list[str | None]:
    """Thumbnail URLs, one per path: ``folder/NNNNNN.jpg`` relative to the folder's parent
    when ``folder`` is given, else ``data:`` URIs embedded in the page. None where no
    thumbnail could be made."""
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)

    def one(item: tuple[int, Path | None]) -> str | None:
        i, p = item
        data = thumbnail_bytes(p, size) if p is not None else None
        if data is None:
            return None
        if folder is None:
            return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
        name = f"{i:06d}.jpg"
        (folder / name).write_bytes(data)
        return f"{folder.name}/{name}"

    workers = workers or min(16, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(workers) as pool, \
            tqdm(total=len(paths), unit="img", desc="thumbnails", file=sys.stderr,
                 disable=not progress) as bar:
        out = []
        for url in pool.map(one, enumerate(paths)):
            out.append(url)
            bar.update(1)
    return out
