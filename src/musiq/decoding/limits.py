"""Limits every input is held to before it is decoded: file size and type, pixels from the
header, a JPEG's pixels per byte and scans, a thin image's patch grid. Each refusal is an
:class:`~musiq.errors.ImageError` naming the input and the limit (docs/inputs.md)."""
from __future__ import annotations

import os
import stat

from ..errors import ImageError
from .sniff import jpeg_scan_count

#: Default refusal threshold, in pixels (width x height), checked from the header. The cost
#: of an image is its native-scale sequence (one token per 32x32 patch, attention over all of
#: them): 50 MP (~49,000 tokens) covers every camera up to 50 MP and costs about a quarter
#: of what the former 100 MP default allowed (over 30 min on 2 CPU cores). docs/inputs.md.
DEFAULT_MAX_PIXELS = 50_000_000
#: Densest encoding read (16-bit RGBA, uncompressed): a file above ``8 * max_pixels`` bytes
#: (plus slack for metadata) cannot be an image within the limit; it is refused unread.
BYTES_PER_PIXEL_BOUND = 8
FILE_SLACK_BYTES = 16 * 2**20
#: A JPEG of more than 4 MP claiming more pixels per byte of file than this is refused:
#: Huffman coding spends at least ~4 bits per 8x8 block (~128 pixels per byte for flat grey,
#: fewer for colour), so only a crafted header or a cut file gets near it.
JPEG_MAX_PIXELS_PER_BYTE = 1024
JPEG_RATIO_MIN_PIXELS = 4_000_000
#: Scans of a progressive JPEG at most (ordinary files have up to ~12; each scan re-reads the
#: whole coefficient buffer, so thousands of scans make a small file take minutes).
JPEG_MAX_SCANS = 256
#: Side of the model's patches; thin images are limited by their padded patch grid.
PATCH = 32
#: A native patch grid may hold at most ``max_pixels / PATCH_BUDGET_DIVISOR`` patches: twice
#: what a compact image at the pixel limit needs, so only absurdly thin images hit it.
PATCH_BUDGET_DIVISOR = PATCH * PATCH // 2


def max_file_bytes(max_pixels: int | None) -> int | None:
    """Largest file read for ``max_pixels`` (None: no limit), in bytes."""
    if max_pixels is None:
        return None
    return BYTES_PER_PIXEL_BOUND * max_pixels + FILE_SLACK_BYTES


def read_bytes(path: str | os.PathLike, max_bytes: int | None = None) -> bytes:
    """Read a regular file of at most ``max_bytes`` bytes (None: any size).

    Only regular files are read: a FIFO, socket or device (``/dev/zero``) would block or
    never end, so it is refused without reading (it is opened non-blocking, which never
    waits for a writer). OS errors become :class:`ImageError` naming the file.
    """
    source = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_BINARY", 0))
    except IsADirectoryError:
        raise ImageError(source, "is a directory, not an image file") from None
    except FileNotFoundError:
        raise ImageError(source, "no such file") from None
    except OSError as e:
        raise ImageError(source, f"cannot read file ({e.strerror or e})") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ImageError(source, "is a directory, not an image file")
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(source, f"is a {_file_type(st.st_mode)}, not a regular file "
                                     "(only regular files are read)")
        if max_bytes is not None and st.st_size > max_bytes:
            raise too_large(source, st.st_size, max_bytes)
        with os.fdopen(fd, "rb", closefd=False) as f:
            # One byte more than allowed tells a file that grew after fstat.
            data = f.read() if max_bytes is None else f.read(max_bytes + 1)
    except ImageError:
        raise
    except OSError as e:
        raise ImageError(source, f"cannot read file ({e.strerror or e})") from None
    finally:
        os.close(fd)
    if max_bytes is not None and len(data) > max_bytes:
        raise ImageError(source, f"file is above the limit of {max_bytes:,} bytes")
    return data


def too_large(source: str, size: int, max_bytes: int) -> ImageError:
    """The error for an input of ``size`` bytes above ``max_bytes`` (see
    :func:`max_file_bytes`), refused before it is read."""
    return ImageError(source, f"file is {size:,} bytes, above the limit of {max_bytes:,} for "
                              "this --max-pixels (8 bytes per pixel + 16 MiB); no image "
                              "within the pixel limit is that large")


def _file_type(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def _check_pixels(source: str, width: int, height: int, max_pixels: int | None) -> None:
    """Refuse dimensions that are invalid, above ``max_pixels`` or absurdly thin.

    A thin image costs far more than its pixels: each 32-pixel run of a 1-pixel-wide image is
    a whole padded 32x32 patch. Its native patch grid is capped at ``max_pixels / 512``
    patches (twice what any compact image within the pixel limit needs).
    """
    if width <= 0 or height <= 0:
        raise ImageError(source, f"invalid image dimensions {width}x{height}")
    if max_pixels is None:
        return
    if width * height > max_pixels:
        raise ImageError(
            source,
            f"image is {width}x{height} = {width * height:,} pixels, above the limit of "
            f"{max_pixels:,} (its native scale alone is {_tokens(width, height):,} tokens; "
            "raise max_pixels / --max-pixels to allow it)",
        )
    patches = -(-width // PATCH) * -(-height // PATCH)
    budget = max(max_pixels // PATCH_BUDGET_DIVISOR, 1)
    if patches > budget:
        raise ImageError(
            source,
            f"image is {width}x{height}: too thin - its native scale needs {patches:,} "
            f"32x32 patches, above the limit of {budget:,} (max_pixels / 512; raise "
            "max_pixels / --max-pixels to allow it)",
        )


def _tokens(width: int, height: int) -> int:
    return -(-width // PATCH) * -(-height // PATCH)


def _check_jpeg_cost(source: str, data: bytes, width: int, height: int,
                     max_pixels: int | None) -> None:
    """Refuse JPEGs whose header promises far more work than their size allows."""
    if max_pixels is None:
        return
    pixels = width * height
    if pixels > JPEG_RATIO_MIN_PIXELS and pixels > JPEG_MAX_PIXELS_PER_BYTE * len(data):
        raise ImageError(
            source, f"header claims {width}x{height} = {pixels:,} pixels from only "
                    f"{len(data):,} bytes ({pixels // len(data):,} pixels per byte, above the "
                    f"limit of {JPEG_MAX_PIXELS_PER_BYTE:,} that a real JPEG stays under): a "
                    "crafted or truncated file")
    scans = jpeg_scan_count(data)
    if scans > JPEG_MAX_SCANS:
        raise ImageError(source, f"JPEG has {scans:,} scans, above the limit of "
                                 f"{JPEG_MAX_SCANS} (ordinary progressive files have ~10)")


def _memory_error(source: str, width: int, height: int) -> ImageError:
    return ImageError(source, f"not enough memory to decode this {width}x{height} image "
                              "(lower max_pixels / --max-pixels to refuse such images early)")
