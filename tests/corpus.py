"""A corpus of hostile and unusual image files, generated on the fly (nothing large is
stored): every JPEG/PNG/WebP/TIFF/BMP/GIF flavour we claim to decode, and every kind of bad
file we claim to refuse. Used by tests/test_inputs.py and as fuzzing seeds.

Each :class:`Case` holds the bytes, the file name they are saved under (often a misleading
suffix, as found in the wild) and either ``expect`` (a function of the decoded array that
asserts what it must be) or ``error`` (a regex the :class:`ImageError` reason must match).
"""
from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import simplejpeg
from PIL import Image

RNG = np.random.default_rng(20260601)


@dataclass
class Case:
    name: str
    data: bytes
    expect: Callable[[np.ndarray], None] | None = None
    error: str | None = None


def smooth_rgb(h: int, w: int) -> np.ndarray:
    """A smooth colourful test image (JPEG-friendly), uint8 HxWx3."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127 + 120 * np.sin(x / 7.0) * np.cos(y / 11.0)
    g = 127 + 120 * np.cos((x + y) / 13.0)
    b = 255 * (x / max(w - 1, 1)) * (1 - y / max(h - 1, 1))
    return np.clip(np.stack([r, g, b], axis=2), 0, 255).astype(np.uint8)


def pil_bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    f = io.BytesIO()
    img.save(f, fmt, **kw)
    return f.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes,
            extra: bytes = b"") -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit RGB); ``rows`` include filter bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra
            + png_chunk(b"IDAT", zlib.compress(rows)) + png_chunk(b"IEND", b""))


def png16(a: np.ndarray) -> bytes:
    """16-bit PNG from uint16 HxW (grey), HxWx2 (grey+alpha), HxWx3 (RGB) or HxWx4 (RGBA)."""
    a = a if a.ndim == 3 else a[..., None]
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[a.shape[2]]
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in a)
    return raw_png(a.shape[1], a.shape[0], 16, colour_type, rows)


def interlaced_png(rgb: np.ndarray, keep: float = 1.0) -> bytes:
    """An Adam7-interlaced 8-bit RGB PNG (Pillow cannot write one); ``keep`` < 1 cuts the
    zlib stream's input short (a complete stream of too little data)."""
    h, w = rgb.shape[:2]
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
              (1, 0, 2, 2), (0, 1, 1, 2))
    raw = b"".join(b"\0" + row.tobytes() for xs, ys, dx, dy in passes
                   for row in rgb[ys::dy, xs::dx] if rgb[ys::dy, xs::dx].size)
    raw = raw[:int(len(raw) * keep)]
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))


def header_only_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming any size, with a tiny IDAT: a decompression bomb's shape."""
    return raw_png(width, height, 8, 2, b"\0" * 64)


def header_only_tiff(width: int, height: int) -> bytes:
    """A small little-endian TIFF whose width/height tags are rewritten to claim any size."""
    data = bytearray(pil_bytes(Image.new("RGB", (1, 1)), "TIFF"))
    ifd = struct.unpack("<I", data[4:8])[0]
    for e in range(struct.unpack("<H", data[ifd:ifd + 2])[0]):
        at = ifd + 2 + 12 * e
        tag = struct.unpack("<H", data[at:at + 2])[0]
        if tag in (256, 257):
            data[at + 2:at + 12] = struct.pack("<HII", 4, 1, width if tag == 256 else height)
    return bytes(data)


def jpeg_with_size(width: int, height: int) -> bytes:
    """A real small JPEG whose SOF0 claims another size."""
    data = bytearray(pil_bytes(Image.fromarray(smooth_rgb(16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def strip_adobe(jpeg: bytes) -> bytes:
    """Remove the APP14 'Adobe' segment (it tells TF's CMYK formula the data is inverted)."""
    i = jpeg.index(b"\xff\xee")
    n = struct.unpack(">H", jpeg[i + 2:i + 4])[0]
    return jpeg[:i] + jpeg[i + 2 + n:]


def exif_jpeg(rgb: np.ndarray, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return pil_bytes(Image.fromarray(rgb), "JPEG", quality=92, exif=exif.tobytes())


def mpo_jpeg(rgb: np.ndarray) -> bytes:
    """A multi-picture JPEG (MPO, as phones write): two JPEGs, Pillow opens it as 'MPO'."""
    second = Image.fromarray(255 - rgb)
    return pil_bytes(Image.fromarray(rgb), "MPO", save_all=True, append_images=[second])


def _equal(expected: np.ndarray) -> Callable[[np.ndarray], None]:
    def check(a: np.ndarray) -> None:
        assert a.shape == expected.shape and a.dtype == np.uint8
        assert np.array_equal(a, expected)
    return check


def _grey_of(expected: np.ndarray) -> Callable[[np.ndarray], None]:
    return _equal(np.repeat(expected[..., None], 3, axis=2))


def _jpeg_reference(data: bytes) -> Callable[[np.ndarray], None]:
    """TF-exact reference decode, plus a sanity bound against Pillow's ISLOW decode."""
    ref = simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=True, fastupsample=False)
    islow = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.int16)

    def check(a: np.ndarray) -> None:
        assert np.array_equal(a, ref)
        diff = np.abs(a.astype(np.int16) - islow)
        assert diff.mean() < 2.0 and diff.max() <= 40  # IFAST vs ISLOW: small, never large
    return check


def _shape(h: int, w: int) -> Callable[[np.ndarray], None]:
    def check(a: np.ndarray) -> None:
        assert a.shape == (h, w, 3) and a.dtype == np.uint8
    return check


def good_cases() -> list[Case]:
    """Inputs that must decode, with what they must decode to."""
    rgb = smooth_rgb(48, 64)
    cases: list[Case] = []
    for sub in ("444", "422", "420", "440", "411"):
        data = simplejpeg.encode_jpeg(rgb, quality=90, colorsubsampling=sub)
        cases.append(Case(f"jpeg_{sub}.jpg", data, _jpeg_reference(data)))
    prog = pil_bytes(Image.fromarray(rgb), "JPEG", quality=85, progressive=True)
    cases.append(Case("jpeg_progressive.jpg", prog, _jpeg_reference(prog)))
    odd = pil_bytes(Image.fromarray(smooth_rgb(17, 33)), "JPEG", quality=75)
    cases.append(Case("jpeg_odd_size_17x33.jpeg", odd, _jpeg_reference(odd)))
    grey = rgb[..., 1].copy()
    gj = pil_bytes(Image.fromarray(grey), "JPEG", quality=90)
    gref = simplejpeg.decode_jpeg(gj, colorspace="GRAY", fastdct=True, fastupsample=False)
    cases.append(Case("jpeg_grey.jpg", gj, _grey_of(gref[..., 0])))
    # CMYK: Pillow writes Adobe (inverted) CMYK; TF: R = K*C // 255 on the stored values.
    cmyk = Image.new("CMYK", (40, 24), (30, 120, 200, 50))
    cj = pil_bytes(cmyk, "JPEG", quality=95)
    stored = simplejpeg.decode_jpeg(cj, colorspace="CMYK", fastdct=True, fastupsample=False)
    c, k = stored[..., :3].astype(np.int32), stored[..., 3:].astype(np.int32)
    tf_rgb = (k * c // 255).astype(np.uint8)
    ink = np.array([30, 120, 200])  # what the colour should look like: (255-C)(255-K)/255
    looks = np.round((255 - ink) * (255 - 50) / 255)

    def cmyk_check(a: np.ndarray) -> None:
        assert np.array_equal(a, tf_rgb)
        assert np.abs(a.reshape(-1, 3).astype(int) - looks).max() <= 3

    cases.append(Case("jpeg_cmyk_adobe.jpg", cj, cmyk_check))
    ycck_src = RNG.integers(0, 256, (24, 40, 4), dtype=np.uint8)
    ycck = simplejpeg.encode_jpeg(ycck_src, quality=95, colorspace="CMYK")  # stored as YCCK
    assert simplejpeg.decode_jpeg_header(ycck)[2] == "YCCK"
    stored = simplejpeg.decode_jpeg(ycck, colorspace="CMYK", fastdct=True, fastupsample=False)
    cases.append(Case("jpeg_ycck.jpg", ycck, _equal(
        (stored[..., 3:].astype(np.int32) * stored[..., :3] // 255).astype(np.uint8))))
    plain = strip_adobe(cj)
    stored = simplejpeg.decode_jpeg(plain, colorspace="CMYK", fastdct=True, fastupsample=False)
    c, k = stored[..., :3].astype(np.int32), stored[..., 3:].astype(np.int32)
    cases.append(Case("jpeg_cmyk_no_adobe.jpg", plain,
                      _equal(((255 - k) * (255 - c) // 255).astype(np.uint8))))
    # Trailing garbage and a few junk bytes before EOI: TF only warns; so do we.
    rgb_jpeg = pil_bytes(Image.fromarray(rgb), "JPEG", quality=90)
    junk = rgb_jpeg[:-2] + b"\x00\x13\x37" + rgb_jpeg[-2:] + b"trailing junk"
    cases.append(Case("jpeg_extraneous_bytes.jpg", junk, _shape(48, 64)))
    cases.append(Case("jpeg_exif_rotated.jpg", exif_jpeg(rgb, 6), _shape(48, 64)))
    cases.append(Case("jpeg_mpo.jpg", mpo_jpeg(rgb), _jpeg_reference(mpo_jpeg(rgb))))
    cases.append(Case("jpeg_named.png", prog, _jpeg_reference(prog)))  # content decides

    cases.append(Case("png_rgb.png", pil_bytes(Image.fromarray(rgb), "PNG"), _equal(rgb)))
    a16 = RNG.integers(0, 65536, (20, 30, 3), dtype=np.uint16)
    cases.append(Case("png_rgb16.png", png16(a16), _equal((a16 >> 8).astype(np.uint8))))
    g16 = RNG.integers(0, 65536, (20, 30), dtype=np.uint16)
    cases.append(Case("png_grey16.png", png16(g16), _grey_of((g16 >> 8).astype(np.uint8))))
    la16 = RNG.integers(0, 65536, (20, 30, 2), dtype=np.uint16)
    cases.append(Case("png_grey_alpha16.png", png16(la16),
                      _grey_of((la16[..., 0] >> 8).astype(np.uint8))))
    rgba16 = RNG.integers(0, 65536, (20, 30, 4), dtype=np.uint16)
    cases.append(Case("png_rgba16.png", png16(rgba16),
                      _equal((rgba16[..., :3] >> 8).astype(np.uint8))))
    black_end = rgb.copy()
    black_end[-3:] = 0  # complete, though its last rows are as black as missing ones
    cases.append(Case("png_interlaced.png", interlaced_png(black_end), _equal(black_end)))
    cases.append(Case("png_black_last_row.png", pil_bytes(Image.fromarray(black_end), "PNG"),
                      _equal(black_end)))
    cases.append(Case("png_grey.png", pil_bytes(Image.fromarray(grey), "PNG"), _grey_of(grey)))
    la = Image.fromarray(np.stack([grey, 255 - grey], axis=2), "LA")
    cases.append(Case("png_grey_alpha.png", pil_bytes(la, "PNG"), _grey_of(grey)))
    alpha = np.zeros((48, 64, 1), np.uint8)  # fully transparent: the colours still count
    rgba = np.concatenate([rgb, alpha], axis=2)
    cases.append(Case("png_rgba_transparent.png", pil_bytes(Image.fromarray(rgba, "RGBA"), "PNG"),
                      _equal(rgb)))
    pal_img = Image.fromarray(rgb).quantize(16)
    pal_rgb = np.asarray(pal_img.convert("RGB"))
    cases.append(Case("png_palette.png", pil_bytes(pal_img, "PNG"), _equal(pal_rgb)))
    cases.append(Case("png_palette_trns.png",
                      pil_bytes(pal_img, "PNG", transparency=3), _equal(pal_rgb)))
    bits = (RNG.random((21, 35)) > 0.5)
    one = Image.fromarray(bits).convert("1")
    cases.append(Case("png_1bit.png", pil_bytes(one, "PNG"),
                      _grey_of(np.where(bits, 255, 0).astype(np.uint8))))
    nib = np.arange(16, dtype=np.uint8).reshape(2, 8)
    rows = b"".join(b"\0" + bytes((r[i] << 4) | r[i + 1] for i in range(0, 8, 2)) for r in nib)
    cases.append(Case("png_grey4bit.png", raw_png(8, 2, 4, 0, rows), _grey_of(nib * 17)))

    cases.append(Case("webp_lossless.webp", pil_bytes(Image.fromarray(rgb), "WEBP",
                                                      lossless=True), _equal(rgb)))
    cases.append(Case("webp_lossy.webp", pil_bytes(Image.fromarray(rgb), "WEBP", quality=80),
                      _shape(48, 64)))
    cases.append(Case("webp_rgba.webp", pil_bytes(Image.fromarray(rgba, "RGBA"), "WEBP",
                                                  lossless=True, exact=True), _equal(rgb)))
    cases.append(Case("tiff_rgb_lzw.tif", pil_bytes(Image.fromarray(rgb), "TIFF",
                                                    compression="tiff_lzw"), _equal(rgb)))
    cm = RNG.integers(0, 256, (10, 12, 4), dtype=np.uint8)
    cm_rgb = ((255 - cm[..., 3:].astype(np.int32)) * (255 - cm[..., :3].astype(np.int32))
              // 255).astype(np.uint8)
    cases.append(Case("tiff_cmyk.tiff", pil_bytes(Image.fromarray(cm, "CMYK"), "TIFF"),
                      _equal(cm_rgb)))
    cases.append(Case("tiff_grey16.tif", pil_bytes(Image.fromarray(g16), "TIFF"),
                      _grey_of((g16 >> 8).astype(np.uint8))))
    cases.append(Case("tiff_1bit.tif", pil_bytes(one, "TIFF"),
                      _grey_of(np.where(bits, 255, 0).astype(np.uint8))))
    cases.append(Case("bmp_rgb.bmp", pil_bytes(Image.fromarray(rgb), "BMP"), _equal(rgb)))
    cases.append(Case("bmp_palette.bmp", pil_bytes(pal_img, "BMP"), _equal(pal_rgb)))
    frames = [pal_img, Image.fromarray(255 - rgb).quantize(16)]
    gif = pil_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    cases.append(Case("gif_animated.gif", gif, _equal(pal_rgb)))

    # Extreme shapes: each side that rounds to 0 becomes 1 at the resized scales.
    cases.append(Case("thin_1x1.png", pil_bytes(Image.fromarray(rgb[:1, :1]), "PNG"),
                      _equal(rgb[:1, :1])))
    thin = np.tile(rgb[:, :1], (2084, 1, 1))[:100_000]  # 100000 x 1
    cases.append(Case("thin_1x100000.png", pil_bytes(Image.fromarray(thin), "PNG"),
                      _equal(thin)))
    wide = np.tile(rgb[:2], (1, 300, 1))  # 2 x 19200
    cases.append(Case("thin_19200x2.bmp", pil_bytes(Image.fromarray(wide), "BMP"),
                      _equal(wide)))
    return cases


def bad_cases() -> list[Case]:
    """Inputs that must be refused, with the reason."""
    rgb = smooth_rgb(48, 64)
    jpg = pil_bytes(Image.fromarray(rgb), "JPEG", quality=90)
    prog = pil_bytes(Image.fromarray(rgb), "JPEG", quality=90, progressive=True)
    png = pil_bytes(Image.fromarray(rgb), "PNG")
    heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(RNG.integers(0, 256, 500, np.uint8))
    avif = b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf" + bytes(200)
    bad_crc = bytearray(png)
    bad_crc[40] ^= 0xFF  # inside IDAT
    return [
        Case("empty.jpg", b"", error=r"^empty file \(0 bytes\)$"),
        Case("notes.jpg", b"shopping list: eggs, milk\n", error=r"^not an image: not a "
             r"supported format \(supported: JPEG, PNG, GIF, WebP, TIFF, BMP"),
        Case("random.png", bytes(RNG.integers(0, 256, 4096, np.uint8)), error="not an image"),
        Case("iphone.jpg", heic, error=r"^a HEIF/HEIC file, which is not a supported format"),
        Case("photo.avif.jpg", avif, error=r"^a AVIF file, which is not a supported format"),
        Case("scan.png", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", error="a PDF file"),
        Case("icon.png", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
             error="a SVG/XML file"),
        Case("truncated_half.jpg", jpg[:len(jpg) // 2], error=r"^truncated JPEG: the data ends"),
        Case("truncated_no_eoi.jpg", jpg[:-2], error=r"^truncated JPEG"),
        Case("truncated_progressive.jpg", prog[:len(prog) * 2 // 3], error=r"^truncated JPEG"),
        Case("truncated_header.jpg", jpg[:300], error=r"^corrupt or truncated JPEG header"),
        Case("jpeg_magic_only.jpg", b"\xff\xd8\xff", error=r"^corrupt or truncated JPEG header"),
        Case("truncated.png", png[:len(png) // 2], error=r"^corrupt or truncated PNG data"),
        # A complete zlib stream holding too few rows: Pillow itself notices only sometimes.
        Case("png_short_stream.png", raw_png(10, 10, 8, 2, (b"\0" + bytes(range(30))) * 5),
             error=r"^truncated PNG: the image data ends after 155 of 310 bytes"),
        Case("png_short_stream_thin.png", header_only_png(1, 3_000_000),
             error=r"^truncated PNG: the image data ends after 64 of 12,000,000 bytes"),
        Case("png_interlaced_short_stream.png", interlaced_png(rgb, 0.9),
             error=r"^(corrupt or )?truncated PNG"),
        Case("png_signature_only.png", png[:8], error=r"^corrupt or truncated PNG header"),
        Case("png_bad_crc.png", bytes(bad_crc), error=r"^corrupt or truncated PNG"),
        Case("truncated.gif", pil_bytes(Image.fromarray(rgb).quantize(8), "GIF")[:200],
             error=r"^corrupt or truncated GIF"),
        Case("truncated.webp", pil_bytes(Image.fromarray(rgb), "WEBP")[:100],
             error=r"^corrupt or truncated WEBP"),
        Case("truncated.tif", pil_bytes(Image.fromarray(rgb), "TIFF")[:3000],
             error=r"^corrupt or truncated TIFF"),
        Case("truncated.bmp", pil_bytes(Image.fromarray(rgb), "BMP")[:1000],
             error=r"^corrupt or truncated BMP"),
        Case("bomb_png_20000x20000.png", header_only_png(20000, 20000),
             error=r"^image is 20000x20000 = 400,000,000 pixels, above the limit of "
                   r"50,000,000"),
        Case("bomb_png_1x10000000.png", header_only_png(1, 10_000_000),
             error=r"^image is 1x10000000: too thin - its native scale needs 312,500 32x32 "
                   r"patches, above the limit of 97,656"),
        Case("bomb_jpeg_65000x65000.jpg", jpeg_with_size(65000, 65000),
             error=r"^image is 65000x65000 = 4,225,000,000 pixels, above the limit"),
        Case("bomb_tiff_20000x20000.tif", header_only_tiff(20000, 20000),
             error=r"^image is above the limit of 50,000,000 pixels \(Image size \(400000000"),
        Case("bomb_tiff_12000x10000.tif", header_only_tiff(12000, 10000),
             error=r"^image is 12000x10000 = 120,000,000 pixels, above the limit"),
        Case("zero_width.png", header_only_png(0, 10), error=r"corrupt or truncated PNG header|"
             r"invalid image dimensions"),
    ]


def video_cases() -> list[Case]:
    """Hostile and damaged videos (made with PyAV, tests/videos.py), each with the reason
    (regex) its row's ``error`` must give; ``expect`` is unused. A case named ``*partial*``
    still scores the frames it can decode."""
    import videos as v
    mkv = v.lossless_mkv(v.random_frames(5, seed=3))
    avi = v.mpeg4_avi(50, 25)
    mp4 = v.h264_mp4(50, 25)
    movi = avi.index(b"movi")
    return [
        Case("text.mp4", b"just some text, not a video\n", error="not a video"),
        Case("empty.mkv", b"", error="empty file"),
        Case("jpeg_named.mov", simplejpeg.encode_jpeg(smooth_rgb(16, 16)),
             error=r"not a video \(JPEG"),
        Case("audio_only.m4a", v.audio_only_m4a(), error=r"no video stream.*audio only"),
        Case("no_moov.mp4", mp4[:len(mp4) // 2], error=r"no video stream|cannot open"),
        Case("header_only.mp4", mp4[:40], error="cannot open|no video stream"),
        Case("zero_frames.avi", avi[:movi + 4], error="no frame could be decoded"),
        Case("cut_partial.mkv", mkv[:len(mkv) * 6 // 10], error=r"stream ended at .*truncated"),
        Case("corrupt_packets_partial.avi", v.flipped(avi, movi + 200, 150),
             error="corrupt packet"),
        Case("garbage_after_magic.mkv", b"\x1a\x45\xdf\xa3" + bytes(RNG.integers(
            0, 256, 4000, dtype=np.uint8)), error="cannot open|no video stream"),
    ]
