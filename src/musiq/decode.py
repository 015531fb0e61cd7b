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
import stat
import warnings
from typing import Union

import numpy as np
import simplejpeg
from PIL import Image

from .errors import ImageError, UnsupportedFormat
from .sniff import header_size, jpeg_scan_count, png_shortfall, sniff, strip_png_metadata

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

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, Image.Image]

#: Pillow plugins allowed to see input bytes (format ids as ``Image.open(formats=...)``).
PILLOW_FORMATS = ("PNG", "GIF", "WEBP", "TIFF", "BMP")
#: libjpeg(-turbo) warning that the data ended early (JWRN_JPEG_EOF); TF refuses such files.
_JPEG_TRUNCATED = "Premature end of JPEG file"


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


def _memory_error(source: str, width: int, height: int) -> ImageError:
    return ImageError(source, f"not enough memory to decode this {width}x{height} image "
                              "(lower max_pixels / --max-pixels to refuse such images early)")


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
