"""Decode image bytes to an ``(H, W, 3)`` uint8 RGB array exactly as the original does.

The original reads images with ``tf.image.decode_jpeg``/``decode_image`` and 3 channels.
TensorFlow's JPEG decoder is libjpeg-turbo with the fast integer DCT (IFAST) and "fancy"
(smooth) chroma upsampling; ``simplejpeg`` exposes exactly those switches, so JPEGs decode
bit-identically. Other formats go through Pillow, whose RGB output equals TF's for them.

Where the original crashes (it hard-codes 3 channels) we follow what TF's decoders do when
asked for 3 channels: grey is replicated, alpha is dropped, 16-bit samples become 8-bit by
``>> 8``. EXIF orientation is never applied unless asked for (the original ignores it).
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Union

import numpy as np
import simplejpeg
from PIL import Image, ImageOps

from .errors import ImageError

#: Default refusal threshold, in pixels (width x height), checked from the header.
DEFAULT_MAX_PIXELS = 100_000_000

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, Image.Image]

_JPEG_MAGIC = b"\xff\xd8\xff"


def read_bytes(path: str | os.PathLike) -> bytes:
    """Read a file, turning OS errors into :class:`ImageError` naming the file."""
    try:
        data = Path(path).read_bytes()
    except IsADirectoryError:
        raise ImageError(str(path), "is a directory, not an image file") from None
    except FileNotFoundError:
        raise ImageError(str(path), "no such file") from None
    except OSError as e:
        raise ImageError(str(path), f"cannot read file ({e.strerror or e})") from None
    return data


def _check_pixels(source: str, width: int, height: int, max_pixels: int | None) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(source, f"invalid image dimensions {width}x{height}")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            source,
            f"image is {width}x{height} = {width * height:,} pixels, above the limit of "
            f"{max_pixels:,} (raise max_pixels / --max-pixels to allow it)",
        )


def _has_adobe_marker(data: bytes) -> bool:
    """True when the JPEG carries an Adobe APP14 segment (it changes TF's CMYK formula)."""
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return False
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end of image: no more APPn
            return False
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker == 0xEE and data[i + 4:i + 9] == b"Adobe":
            return True
        i += 2 + length
    return False


def _cmyk_to_rgb(cmyk: np.ndarray, adobe: bool) -> np.ndarray:
    """TF's integer CMYK->RGB: Adobe files store inverted CMYK."""
    c = cmyk[..., :3].astype(np.uint16)
    k = cmyk[..., 3:4].astype(np.uint16)
    if adobe:
        rgb = k * c // 255
    else:
        rgb = (255 - k) * (255 - c) // 255
    return rgb.astype(np.uint8)


def _decode_jpeg(data: bytes, source: str, max_pixels: int | None) -> np.ndarray:
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except (ValueError, RuntimeError) as e:
        raise ImageError(source, f"corrupt JPEG header ({e})") from None
    _check_pixels(source, width, height, max_pixels)
    try:
        if colorspace in ("CMYK", "YCCK"):
            cmyk = simplejpeg.decode_jpeg(
                data, colorspace="CMYK", fastdct=True, fastupsample=False)
            return _cmyk_to_rgb(cmyk, _has_adobe_marker(data))
        if colorspace == "Gray":
            grey = simplejpeg.decode_jpeg(
                data, colorspace="GRAY", fastdct=True, fastupsample=False)
            return np.repeat(grey.reshape(height, width, 1), 3, axis=2)
        return simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=True, fastupsample=False)
    except (ValueError, RuntimeError) as e:
        raise ImageError(source, f"corrupt or truncated JPEG data ({e})") from None


def _pillow_to_rgb(img: Image.Image, source: str) -> np.ndarray:
    """Pillow image -> HxWx3 uint8, as TF's decoders give for 3 channels."""
    mode = img.mode
    if mode.startswith("I"):
        # 16-bit grey (PNG/TIFF): TF keeps the high byte.
        a = np.clip(np.asarray(img).astype(np.int64) >> 8, 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if mode == "F":
        a = np.clip(np.asarray(img), 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if mode in ("L", "LA", "1"):
        a = np.asarray(img.convert("L"))
        return np.repeat(a[..., None], 3, axis=2)
    if mode != "RGB":
        img = img.convert("RGBA" if "A" in mode or "transparency" in img.info else "RGB")
    a = np.asarray(img)
    return np.ascontiguousarray(a[..., :3])


def decode_bytes(
    data: bytes,
    source: str = "<bytes>",
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    exif_transpose: bool = False,
) -> np.ndarray:
    """Decode encoded image bytes to an ``(H, W, 3)`` uint8 array.

    The format is decided by content, never by file name. ``source`` only names the input in
    errors. Raises :class:`ImageError` for empty, corrupt, unsupported or oversized input.
    """
    if not data:
        raise ImageError(source, "empty file (0 bytes)")
    data = bytes(data)
    if data.startswith(_JPEG_MAGIC) and not exif_transpose:
        return _decode_jpeg(data, source, max_pixels)
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise ImageError(source, "image is far above the pixel limit") from None
    except Exception:  # Pillow raises many types for unknown data
        raise ImageError(source, "not a recognised image format") from None
    _check_pixels(source, img.width, img.height, max_pixels)
    if img.format == "JPEG":
        rgb = _decode_jpeg(data, source, max_pixels)
        if exif_transpose:
            rgb = _apply_orientation(rgb, img.getexif().get(0x0112, 1))
        return rgb
    try:
        img.seek(0)
        img.load()
        if exif_transpose:
            img = ImageOps.exif_transpose(img)
        return _pillow_to_rgb(img, source)
    except ImageError:
        raise
    except Exception as e:
        raise ImageError(source, f"corrupt or truncated {img.format or 'image'} data ({e})") from None


def _apply_orientation(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation tag (1-8) to an HxWx3 array."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, 1)[::-1],  # transverse
        8: lambda a: np.rot90(a, 1),
    }
    op = ops.get(int(orientation))
    return rgb if op is None else np.ascontiguousarray(op(rgb))


def load_image(
    image: ImageInput,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    exif_transpose: bool = False,
) -> np.ndarray:
    """Turn any accepted input into an ``(H, W, 3)`` uint8 RGB array.

    Accepts a path, encoded bytes, a PIL image or an ``(H, W, 3)`` / ``(H, W)`` uint8 array.
    """
    if isinstance(image, (str, os.PathLike)):
        return decode_bytes(read_bytes(image), str(image), max_pixels=max_pixels,
                            exif_transpose=exif_transpose)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_bytes(bytes(image), "<bytes>", max_pixels=max_pixels,
                            exif_transpose=exif_transpose)
    if isinstance(image, Image.Image):
        _check_pixels("<PIL image>", image.width, image.height, max_pixels)
        if exif_transpose:
            image = ImageOps.exif_transpose(image)
        return _pillow_to_rgb(image, "<PIL image>")
    if isinstance(image, np.ndarray):
        return _check_array(image, max_pixels)
    raise ImageError(f"<{type(image).__name__}>",
                     "unsupported input type: expected a path, bytes, PIL image or uint8 array")


def _check_array(a: np.ndarray, max_pixels: int | None) -> np.ndarray:
    src = "<array>"
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
