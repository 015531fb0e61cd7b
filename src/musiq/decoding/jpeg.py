"""JPEG decoding exactly as TensorFlow does it: libjpeg-turbo through ``simplejpeg`` with the
fast integer DCT (IFAST) and smooth chroma upsampling; CMYK/YCCK by TF's integer formulas
(Adobe APP14 aware)."""
from __future__ import annotations

import warnings

import numpy as np
import simplejpeg

from ..errors import ImageError
from .limits import _check_jpeg_cost, _check_pixels, _memory_error

#: libjpeg(-turbo) warning that the data ended early (JWRN_JPEG_EOF); TF refuses such files.
_JPEG_TRUNCATED = "Premature end of JPEG file"


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


def _simplejpeg(data: bytes, colorspace: str, source: str) -> np.ndarray:
    """IFAST + fancy-upsampling decode, refusing truncated data as TF does.

    TF's decoder fails when the data ends early (unless ``try_recover_truncated``), but only
    logs libjpeg's other warnings (e.g. extraneous bytes) and keeps the pixels. simplejpeg's
    strict mode raises on every warning, so a warning other than truncation is decoded again
    non-strictly to get the pixels TF returns.
    """
    try:
        return simplejpeg.decode_jpeg(data, colorspace=colorspace, fastdct=True,
                                      fastupsample=False, strict=True)
    except (ValueError, RuntimeError) as e:
        if _JPEG_TRUNCATED in str(e):
            raise ImageError(source, "truncated JPEG: the data ends before the image is "
                                     "complete (an interrupted copy or download?)") from None
        strict_error = e
    try:
        return simplejpeg.decode_jpeg(data, colorspace=colorspace, fastdct=True,
                                      fastupsample=False, strict=False)
    except (ValueError, RuntimeError):
        raise ImageError(source, f"corrupt JPEG data ({strict_error})") from None


def _decode_jpeg(data: bytes, source: str, max_pixels: int | None) -> np.ndarray:
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except (ValueError, RuntimeError) as e:
        raise ImageError(source, f"corrupt or truncated JPEG header ({e})") from None
    _check_pixels(source, width, height, max_pixels)
    _check_jpeg_cost(source, data, width, height, max_pixels)
    try:
        if colorspace in ("CMYK", "YCCK"):
            return _cmyk_to_rgb(_simplejpeg(data, "CMYK", source), _has_adobe_marker(data))
        if colorspace == "Gray":
            grey = _simplejpeg(data, "GRAY", source)
            return np.repeat(grey.reshape(height, width, 1), 3, axis=2)
        return _simplejpeg(data, "RGB", source)
    except MemoryError:
        raise _memory_error(source, width, height) from None
