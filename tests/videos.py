"""Tiny video files made on the fly with PyAV (nothing stored): lossless clips of known
frames, lossy H.264/MPEG-4 clips, and damaged ones (tests/test_video.py, tests/corpus.py)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

W, H = 64, 48


def random_frames(n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` distinct random ``(H, W, 3)`` uint8 frames."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(n)]


def ramp_frames(n: int) -> list[np.ndarray]:
    """``n`` flat frames, each a grey level brighter than the last (compress to little)."""
    return [np.full((H, W, 3), (i * 3) % 256, np.uint8) for i in range(n)]


def encode(frames: list[np.ndarray], codec: str, rate: int, fmt: str,
           pix_fmt: str | None = None) -> bytes:
    """The frames encoded with ``codec`` at ``rate`` frames/s in container ``fmt``."""
    import av
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as c:
        s = c.add_stream(codec, rate=rate)
        s.height, s.width = frames[0].shape[:2]
        if pix_fmt:
            s.pix_fmt = pix_fmt
        for a in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")))
        c.mux(s.encode())
    return buf.getvalue()


def lossless_mkv(frames: list[np.ndarray], rate: int = 2) -> bytes:
    """FFV1 in Matroska, planar RGB: decodes to exactly ``frames``."""
    return encode(frames, "ffv1", rate, "matroska", "bgr0")


def png_mov(frames: list[np.ndarray], rate: int = 2) -> bytes:
    """PNG frames (rgb24) in a QuickTime file: decodes to exactly ``frames``."""
    return encode(frames, "png", rate, "mov", "rgb24")


def yuv444_mkv(yuv: tuple[int, int, int], colorspace: int | None = None,
               color_range: int | None = None) -> bytes:
    """One flat frame of Y, Cb, Cr = ``yuv`` (lossless FFV1 yuv444p in Matroska), tagged
    with FFmpeg's AVColorSpace ``colorspace`` and AVColorRange ``color_range`` (None:
    untagged)."""
    import av
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as c:
        s = c.add_stream("ffv1", rate=2)
        s.width, s.height, s.pix_fmt = W, H, "yuv444p"
        frame = av.VideoFrame(W, H, "yuv444p")
        for plane, value in zip(frame.planes, yuv):
            plane.update(np.full(plane.buffer_size, value, np.uint8).tobytes())
        for target in (s.codec_context, frame):
            if colorspace is not None:
                target.colorspace = colorspace
            if color_range is not None:
                target.color_range = color_range
        c.mux(s.encode(frame))
        c.mux(s.encode())
    return buf.getvalue()


def h264_mp4(n: int = 75, rate: int = 25) -> bytes:
    """H.264 (libx264, yuv420p) in MP4: ``n`` frames at ``rate`` frames/s."""
    return encode(ramp_frames(n), "libx264", rate, "mp4", "yuv420p")


def mpeg4_avi(n: int = 75, rate: int = 25) -> bytes:
    """MPEG-4 part 2 in AVI."""
    return encode(ramp_frames(n), "mpeg4", rate, "avi", "yuv420p")


def audio_only_m4a() -> bytes:
    """An MP4 with one AAC stream and no video."""
    import av
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                           layout="mono")
        frame.sample_rate = 16000
        for _ in range(4):
            c.mux(s.encode(frame))
        c.mux(s.encode())
    return buf.getvalue()


def no_frames_mkv() -> bytes:
    """A Matroska file with its header and video track but no frame: a clip cut before its
    first cluster."""
    data = lossless_mkv(random_frames(2))
    return data[:data.index(b"\x1f\x43\xb6\x75")]


def flipped(data: bytes, start: int, count: int, seed: int = 1) -> bytes:
    """``data`` with ``count`` bytes inverted at random positions from ``start`` on."""
    b = bytearray(data)
    rng = np.random.default_rng(seed)
    for i in rng.integers(start, len(b) - 64, count):
        b[i] ^= 0xFF
    return bytes(b)


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path
