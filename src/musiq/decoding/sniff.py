"""Tell an image format from its first bytes, and read its dimensions from the header.

Content decides, never the file name. :func:`sniff` also names common formats we do not
decode (HEIF, AVIF, PDF ...) so that errors can say what a file really is.
:func:`header_size` reads width and height without any decoder, so that the pixel limit is
applied before a decoder (or Pillow's own decompression-bomb check) sees the data.
"""
from __future__ import annotations

import struct
import zlib

JPEG_MAGIC = b"\xff\xd8\xff"
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1", b"heim", b"heis")


def sniff(data: bytes) -> str | None:
    """Format of encoded bytes: ``JPEG``, ``PNG``, ``GIF``, ``WEBP``, ``TIFF``, ``BMP``; a
    descriptive name for recognised unsupported formats (``HEIF/HEIC``, ``AVIF``,
    ``JPEG 2000``, ``PDF`` ...); None when nothing matches."""
    head = data[:32]
    if head.startswith(JPEG_MAGIC):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:4] in (b"II+\x00", b"MM\x00+"):
        return "BigTIFF"
    if head[:2] == b"BM":
        return "BMP"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in _HEIF_BRANDS:
            return "HEIF/HEIC"
        return "ISO media (MP4/MOV/HEIF family)"
    if head.startswith((b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")):
        return "JPEG 2000"
    if head.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")):
        return "JPEG XL"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "Matroska/WebM video"
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
        return "AVI video"
    if head.startswith(b"%PDF"):
        return "PDF"
    if head.startswith(b"8BPS"):
        return "Photoshop PSD"
    if head.startswith(b"\x00\x00\x01\x00"):
        return "ICO"
    if head.startswith(b"PK\x03\x04"):
        return "ZIP archive"
    text = head.lstrip().lower()
    if text.startswith((b"<?xml", b"<svg")):
        return "SVG/XML"
    return None


def header_size(data: bytes, kind: str) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG, GIF, BMP or WebP header; None when not readable here
    (other formats, or a header too short or odd: the decoder then judges the file)."""
    try:
        if kind == "PNG" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if kind == "GIF":
            return struct.unpack("<HH", data[6:10])
        if kind == "BMP":
            if struct.unpack("<I", data[14:18])[0] == 12:  # OS/2 core header: 16-bit sizes
                return struct.unpack("<HH", data[18:22])
            w, h = struct.unpack("<ii", data[18:26])
            return abs(w), abs(h)  # negative height = top-down rows
        if kind == "WEBP":
            chunk = data[12:16]
            if chunk == b"VP8X":
                w = int.from_bytes(data[24:27], "little") + 1
                h = int.from_bytes(data[27:30], "little") + 1
                return w, h
            if chunk == b"VP8L" and data[20:21] == b"\x2f":
                bits = int.from_bytes(data[21:25], "little")
                return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
            if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
                w, h = struct.unpack("<HH", data[26:30])
                return w & 0x3FFF, h & 0x3FFF
    except struct.error:
        return None
    return None


#: PNG samples per pixel by colour type.
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: Adam7 passes as (x start, y start, x step, y step).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))


def png_expected_bytes(width: int, height: int, bit_depth: int, colour_type: int,
                       interlaced: bool) -> int:
    """Bytes of filtered scanlines (one filter byte per row) a complete PNG decompresses to."""
    channels = _PNG_CHANNELS.get(colour_type, 4)

    def rows(w: int, h: int) -> int:
        return h * (1 + (w * channels * bit_depth + 7) // 8) if w and h else 0

    if not interlaced:
        return rows(width, height)
    return sum(rows(max(0, -(-(width - xs) // dx)), max(0, -(-(height - ys) // dy)))
               for xs, ys, dx, dy in _ADAM7)


def png_shortfall(data: bytes) -> tuple[int, int] | None:
    """``(got, expected)`` bytes when a PNG's zlib stream ends before the image is complete.

    Pillow silently leaves the missing rows black in that case (libpng reports it), so the
    compressed data is inflated once more, counting bytes without keeping them. None when
    complete, or when the stream cannot be judged here (the decoder has judged it then).
    """
    if data[12:16] != b"IHDR":
        return None
    width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    expected = png_expected_bytes(width, height, depth, ctype, interlace == 1)
    inflater = zlib.decompressobj()
    got, pos = 0, 8
    try:
        while pos + 8 <= len(data) and got < expected:
            length, kind = struct.unpack(">I4s", data[pos:pos + 8])
            if kind == b"IEND":
                break
            if kind == b"IDAT":
                buf = data[pos + 8:pos + 8 + length]
                while buf and got < expected:
                    got += len(inflater.decompress(buf, 1 << 20))
                    buf = inflater.unconsumed_tail
                if inflater.eof:
                    break
            pos += 12 + length
    except (zlib.error, struct.error):
        return None
    return None if got >= expected else (got, expected)


def jpeg_scan_count(data: bytes) -> int:
    """Start-of-scan markers in a JPEG. Entropy-coded data stuffs every 0xFF as ``FF 00``,
    so ``FF DA`` occurs only as a marker (one per scan)."""
    return data.count(b"\xff\xda")


#: Ancillary PNG chunks that hold no pixels and that Pillow decompresses with a 1 MiB cap.
_PNG_METADATA = (b"iCCP", b"zTXt", b"iTXt", b"tEXt")


def strip_png_metadata(data: bytes) -> bytes:
    """The PNG without its colour profile and text chunks (the same pixels).

    Returns ``data`` itself when it has none, or when its chunk layout cannot be walked
    (the decoder then judges the file).
    """
    pos, keep, dropped = 8, [data[:8]], False
    try:
        while pos + 12 <= len(data):
            length, kind = struct.unpack(">I4s", data[pos:pos + 8])
            end = pos + 12 + length
            if kind in _PNG_METADATA:
                dropped = True
            else:
                keep.append(data[pos:end])
            if kind == b"IDAT" or kind == b"IEND":  # metadata after the pixels is kept
                keep.append(data[end:])
                break
            pos = end
        else:
            return data
    except struct.error:
        return data
    return b"".join(keep) if dropped else data
