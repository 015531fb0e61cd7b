"""Decode image bytes to an ``(H, W, 3)`` uint8 RGB array exactly as the original does.

The original reads images with ``tf.image.decode_jpeg``/``decode_image`` and 3 channels.
TensorFlow's JPEG decoder is libjpeg-turbo with the fast integer DCT (IFAST) and "fancy"
(smooth) chroma upsampling; ``simplejpeg`` exposes exactly those switches, so JPEGs decode
bit-identically. Other formats go through Pillow, whose RGB output equals TF's for them.

Where the original crashes (it hard-codes 3 channels) we follow what TF's decoders do when
asked for 3 channels: grey is replicated, alpha is dropped, 16-bit samples become 8-bit by
``>> 8``. EXIF orientation is never applied unless asked for (the original ignores it).

The format is decided by the first bytes only (never the file name); only JPEG, PNG, GIF,
WebP, TIFF and BMP are decoded, so no other Pillow plugin (or external program) ever sees
untrusted data. Every failure is an :class:`ImageError` naming the input and the reason; the
pixel limits are checked from the header, before any pixel is decoded. ``docs/inputs.md``
lists what each kind of input becomes.
"""
from __future__ import annotations

import io
import os
import warnings
from typing import Union

import numpy as np
from PIL import Image

from ..errors import ImageError, UnsupportedFormat
from .jpeg import _cmyk_to_rgb, _decode_jpeg
# The limits are part of this module's API (musiq.decoding.decode.DEFAULT_MAX_PIXELS, read_bytes ...).
from .limits import (DEFAULT_MAX_PIXELS, _check_pixels, _memory_error,  # noqa: F401
                     max_file_bytes, read_bytes, too_large)
from .sniff import header_size, png_shortfall, sniff, strip_png_metadata

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, Image.Image]

#: Pillow plugins allowed to see input bytes (format ids as ``Image.open(formats=...)``).
PILLOW_FORMATS = ("PNG", "GIF", "WEBP", "TIFF", "BMP")


def _pillow_to_rgb(img: Image.Image, source: str) -> np.ndarray:
    """Pillow image -> HxWx3 uint8, as TF's decoders give for 3 channels."""
    mode = img.mode
    if mode.startswith("I"):
        # 16-bit grey (PNG/TIFF): TF keeps the high byte. 32-bit "I" is treated alike.
        a = np.clip(np.asarray(img).astype(np.int64) >> 8, 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if mode == "F":
        a = np.clip(np.nan_to_num(np.asarray(img), nan=0.0), 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if mode in ("L", "LA", "La", "1"):
        a = np.asarray(img.convert("L"))
        return np.repeat(a[..., None], 3, axis=2)
    if mode == "CMYK":  # TIFF stores plain CMYK: the same formula as a non-Adobe JPEG
        return _cmyk_to_rgb(np.asarray(img), adobe=False)
    if mode == "P" and "transparency" not in img.info:
        img = img.convert("RGB")
    elif mode in ("P", "PA"):
        img = img.convert("RGBA")  # palette colours; the alpha is dropped below
    elif mode not in ("RGB", "RGBA", "RGBX"):
        try:
            img = img.convert("RGB")
        except (ValueError, OSError) as e:
            raise ImageError(source, f"unsupported colour mode {mode} ({e})") from None
    a = np.asarray(img)
    if a.ndim != 3 or a.shape[2] < 3 or a.dtype != np.uint8:
        raise ImageError(source, f"unsupported pixel layout {a.dtype} {a.shape} (mode {mode})")
    return np.ascontiguousarray(a[..., :3])


def _exif_orientation(img: Image.Image) -> int:
    """EXIF orientation 1-8 from an opened image; 1 when absent or unreadable."""
    try:
        value = int(img.getexif().get(0x0112, 1))
    except Exception:  # a damaged EXIF block must not fail an otherwise good image
        return 1
    return value if 1 <= value <= 8 else 1


def _bomb_error(source: str, e: Exception, max_pixels: int | None) -> ImageError:
    """Pillow refuses above 2 x ``PIL.Image.MAX_IMAGE_PIXELS`` (where we could not read the
    size first, e.g. TIFF); that is above our own limit too unless it was raised."""
    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    if max_pixels is not None and max_pixels <= limit:
        return ImageError(source, f"image is above the limit of {max_pixels:,} pixels "
                                  f"({_short(e)})")
    return ImageError(source, f"image is above Pillow's decompression-bomb limit of "
                              f"{limit:,} pixels (PIL.Image.MAX_IMAGE_PIXELS) ({_short(e)})")


def _open_pillow(data: bytes, source: str, kind: str | None,
                 max_pixels: int | None, formats: tuple[str, ...]) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Our own max_pixels check applies, and Pillow's warnings about damaged metadata
            # would only add noise to a batch's output.
            warnings.simplefilter("ignore")
            return Image.open(io.BytesIO(data), formats=list(formats))
    except Image.DecompressionBombError as e:  # only above 2 x PIL.Image.MAX_IMAGE_PIXELS
        raise _bomb_error(source, e, max_pixels) from None
    except Image.UnidentifiedImageError:
        raise ImageError(source, f"corrupt or truncated {kind} header (the {kind} decoder "
                                 "cannot parse it)") from None
    except Exception as e:  # Pillow raises many types for damaged headers
        raise ImageError(source, f"corrupt or truncated {kind} header ({_short(e)})") from None


def _short(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text if len(text) <= 200 else text[:200] + "..."


def decode_bytes(
    data: bytes,
    source: str = "<bytes>",
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    exif_transpose: bool = False,
) -> np.ndarray:
    """Decode encoded image bytes to an ``(H, W, 3)`` uint8 array.

    The format is decided by content, never by file name. ``source`` only names the input in
    errors. ``max_pixels`` (None: no limit) is checked from the header before decoding.
    Raises :class:`ImageError` for empty, corrupt, truncated, unsupported or oversized input.
    """
    if not data:
        raise ImageError(source, "empty file (0 bytes)")
    data = bytes(data)
    kind = sniff(data)
    if kind == "JPEG":
        rgb = _decode_jpeg(data, source, max_pixels)
        if exif_transpose:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    orientation = _exif_orientation(
                        Image.open(io.BytesIO(data), formats=["JPEG", "MPO"]))
            except Exception:  # simplejpeg decoded it; unreadable metadata means no rotation
                orientation = 1
            rgb = _apply_orientation(rgb, orientation)
        return rgb
    if kind not in PILLOW_FORMATS:
        what = f"a {kind} file, which is" if kind else "not an image:"
        raise UnsupportedFormat(source, f"{what} not a supported format (supported: JPEG, PNG, "
                                 "GIF, WebP, TIFF, BMP; decided by content, not by name)")
    size = header_size(data, kind)
    if size is not None:
        _check_pixels(source, size[0], size[1], max_pixels)
    if kind == "PNG":
        # Colour profiles and text are not pixels (TF ignores them); Pillow refuses those
        # above 1 MiB decompressed as if the file were corrupt.
        data = strip_png_metadata(data)
    img = _open_pillow(data, source, kind, max_pixels, (kind,))
    _check_pixels(source, img.width, img.height, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.seek(0)
            img.load()
        if kind == "PNG":
            _check_png_complete(data, img, source)
        rgb = _pillow_to_rgb(img, source)
    except ImageError:
        raise
    except MemoryError:
        raise _memory_error(source, img.width, img.height) from None
    except Image.DecompressionBombError as e:  # GIF/TIFF/WebP frames are checked on seek
        raise _bomb_error(source, e, max_pixels) from None
    except Exception as e:
        raise ImageError(source, f"corrupt or truncated {kind} data ({_short(e)})") from None
    if rgb.shape[:2] != (img.height, img.width):
        raise ImageError(source, f"decoded size {rgb.shape[1]}x{rgb.shape[0]} differs from "
                                 f"the header's {img.width}x{img.height}")
    return _apply_orientation(rgb, _exif_orientation(img)) if exif_transpose else rgb


def _check_png_complete(data: bytes, img: Image.Image, source: str) -> None:
    """Refuse a PNG whose image data ends early (Pillow would return it black-filled).

    Missing rows are left zero, so a last row with any non-zero sample proves a
    non-interlaced image complete without inflating it again.
    """
    last_row = img.crop((0, img.height - 1, img.width, img.height))
    if not img.info.get("interlace") and np.asarray(last_row).any():
        return
    short = png_shortfall(data)
    if short is not None:
        raise ImageError(source, f"truncated PNG: the image data ends after {short[0]:,} of "
                                 f"{short[1]:,} bytes")


def _apply_orientation(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation tag (1-8) to an HxWx3 array (as ``ImageOps.exif_transpose``)."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, -1)[::-1],  # transverse
        8: lambda a: np.rot90(a, 1),
    }
    op = ops.get(int(orientation))
    return rgb if op is None else np.ascontiguousarray(op(rgb))


def source_name(image: object) -> str:
    """How an input is named in results and errors: its path, or ``<bytes>``, ``<PIL image>``,
    ``<array>`` (``<TypeName>`` for anything else) for in-memory data."""
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if isinstance(image, Image.Image):
        return "<PIL image>"
    if isinstance(image, np.ndarray):
        return "<array>"
    return f"<{type(image).__name__}>"


def load_image(
    image: ImageInput,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    exif_transpose: bool = False,
) -> np.ndarray:
    """Turn any accepted input into an ``(H, W, 3)`` uint8 RGB array.

    Accepts a path, encoded bytes, a PIL image or an ``(H, W, 3)`` / ``(H, W)`` uint8 array.
    A path or bytes give the original's exact pixels (JPEG: libjpeg-turbo with TF's
    settings). A PIL image, or an array decoded by Pillow, holds Pillow's own JPEG decode,
    which differs by up to 9 levels per pixel and moves scores (e.g. 1.2937727 vs 1.2958442):
    pass the path or bytes, or an array from ``musiq.load_image(path)``, for exact scores.
    A path is read only if it is a regular file of at most ``8 * max_pixels + 16 MiB`` bytes.
    """
    if isinstance(image, (str, os.PathLike)):
        return decode_bytes(read_bytes(image, max_file_bytes(max_pixels)), str(image),
                            max_pixels=max_pixels, exif_transpose=exif_transpose)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_bytes(bytes(image), source_name(image), max_pixels=max_pixels,
                            exif_transpose=exif_transpose)
    if isinstance(image, Image.Image):
        src = source_name(image)
        _check_pixels(src, image.width, image.height, max_pixels)
        try:
            rgb = _pillow_to_rgb(image, src)
        except ImageError:
            raise
        except Exception as e:
            raise ImageError(src, f"cannot read pixels ({_short(e)})") from None
        return _apply_orientation(rgb, _exif_orientation(image)) if exif_transpose else rgb
    if isinstance(image, np.ndarray):
        return _check_array(image, max_pixels)
    raise ImageError(source_name(image),
                     "unsupported input type: expected a path, bytes, PIL image or uint8 array")


def _check_array(a: np.ndarray, max_pixels: int | None) -> np.ndarray:
    src = source_name(a)
    if a.dtype != np.uint8:
        raise ImageError(src, f"array dtype must be uint8 (0-255), got {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[..., :3]
    elif not (a.ndim == 3 and a.shape[2] == 3):
        raise ImageError(src, f"array must be HxW, HxWx1, HxWx3 or HxWx4, got shape {a.shape}")
    _check_pixels(src, a.shape[1], a.shape[0], max_pixels)
    return np.ascontiguousarray(a)
