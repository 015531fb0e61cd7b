"""Decode videos to sampled RGB frames, streamed (the ``video`` extra: PyAV).

Videos are recognised by content (:func:`sniff_video`: MP4/MOV ``ftyp``, QuickTime atoms,
Matroska/WebM EBML, AVI RIFF), never by name. :class:`VideoReader` opens a file, refuses it
from the header (no video stream, dimensions above the pixel limit, more frames than
``max_frames`` at the chosen rate) and then yields :class:`Frame` s one at a time, so memory
stays flat however long the clip.

Colour: each frame is converted by libswscale (PyAV's ``reformat`` to ``rgb24``, no
resizing) with the matrix and range its stream tags it with (BT.601, BT.709, BT.2020 ...,
limited or full range). Untagged frames get swscale's defaults: BT.601 matrix, limited
(16-235) range for YUV (full range for the ``yuvj*`` formats). Chroma is upsampled
bilinearly; transfer function and primaries are not converted (HDR frames keep their code
values). RGB streams (``png``, ``ffv1`` ``rgb24``/``gbrp``) come out exactly as stored.

Sampling: ``fps`` frames per second of video time by presentation timestamp (default 1):
for each grid time ``k / fps`` the first frame at or after it is taken (a frame is taken at
most once), so a 25 fps clip at ``fps=1`` gives the frames at 0, 1, 2 ... s.
``every_frame`` takes every decoded frame. Times are seconds from the first frame.
"""
from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass
from typing import Iterator, NamedTuple

import numpy as np

from .decode import DEFAULT_MAX_PIXELS
from ..errors import ImageError, MusiqError
from .sniff import sniff

__all__ = ["VIDEO_SUFFIXES", "Frame", "VideoInfo", "VideoReader", "is_video", "sniff_video",
           "require_av"]

#: Suffixes a folder scan takes as videos (content still decides what a file is).
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"}
_IMAGE_BRANDS = (b"avif", b"avis", b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1",
                 b"heim", b"heis")
#: QuickTime files without ``ftyp`` start with one of these atoms.
_QT_ATOMS = (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")
#: FFmpeg's demuxer for each container :func:`sniff_video` names.
_DEMUXERS = {"MP4/MOV": "mov", "QuickTime": "mov", "Matroska/WebM": "matroska", "AVI": "avi"}
#: Slack when comparing sample times with the grid (timestamps are rounded to time bases).
_EPS = 1e-6


def sniff_video(head: bytes) -> str | None:
    """Container of a video from its first bytes (``MP4/MOV``, ``QuickTime``,
    ``Matroska/WebM``, ``AVI``); None for anything else (images included)."""
    if head[4:8] == b"ftyp":
        return None if head[8:12] in _IMAGE_BRANDS else "MP4/MOV"
    if head[4:8] in _QT_ATOMS:
        return "QuickTime"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "Matroska/WebM"
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
        return "AVI"
    return None


def _head(path: str | os.PathLike, n: int = 32) -> bytes:
    """The first ``n`` bytes of a regular file (b"" for anything else: never blocks)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return b""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        return os.read(fd, n)
    except OSError:
        return b""
    finally:
        os.close(fd)


def is_video(path: str | os.PathLike) -> bool:
    """True when the file's content is a video container, or (whatever its content) its
    name ends in a video suffix: such a file is then judged as a video, and a text file
    named ``.mp4`` fails as "not a video" rather than as an image."""
    if os.path.splitext(str(path))[1].lower() in VIDEO_SUFFIXES:
        return True
    return sniff_video(_head(path)) is not None


def require_av():
    """The ``av`` module (PyAV), or a clear :class:`MusiqError` naming the extra."""
    try:
        import av
    except ImportError:
        from ..extras import needs
        raise MusiqError(needs("video (PyAV)", "video")) from None
    return av


class Frame(NamedTuple):
    """One sampled frame: ``index`` in decoding order (0-based, every decoded frame counts),
    ``time`` in seconds from the first frame, ``rgb`` ``(H, W, 3)`` uint8."""

    index: int
    time: float
    rgb: np.ndarray


@dataclass(frozen=True)
class VideoInfo:
    """What the header says: ``container``, ``codec``, ``width`` x ``height`` pixels,
    ``rate`` (average frames/s, None when unknown), ``duration`` (seconds, None when
    unknown), ``frames`` (count from the header, None when unknown), ``colorspace`` and
    ``color_range`` (the stream's tags, ``unspecified`` when absent)."""

    container: str
    codec: str
    width: int
    height: int
    rate: float | None
    duration: float | None
    frames: int | None
    colorspace: str
    color_range: str


def expected_frames(info: VideoInfo, fps: float | None) -> int | None:
    """Frames the sampling will take, from the header (None when it cannot tell):
    every frame (``fps`` None) or one per ``1 / fps`` seconds, at most the stream's rate."""
    if fps is None and info.frames:
        return info.frames
    if info.duration is None:
        return None
    rate = info.rate if fps is None else min(fps, info.rate or fps)
    return None if rate is None else math.floor(info.duration * rate + _EPS)


#: FFmpeg's AVColorSpace and AVColorRange values, by name (the tags a stream carries).
_COLORSPACES = {0: "rgb", 1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
                8: "ycgco", 9: "bt2020nc", 10: "bt2020c"}
_RANGES = {1: "limited", 2: "full"}


def _name(value: object, names: dict[int, str]) -> str:
    try:
        return names.get(int(value), "unspecified")  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return "unspecified"


class VideoReader:
    """An opened video. Raises :class:`ImageError` naming the file when it is not a video,
    cannot be opened, has no video stream or is above ``max_pixels`` per frame (from the
    header, before any frame is decoded). Use as a context manager, or :meth:`close`.

    After :meth:`frames` ends, :attr:`problem` says why decoding stopped early (corrupt or
    truncated data), or is None when the stream ended normally.
    """

    def __init__(self, path: str | os.PathLike, *,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
        av = require_av()
        self.source = str(path)
        self.max_pixels = max_pixels
        self.problem: str | None = None
        self.bad_packets = 0
        self._bad_reason: str | None = None
        self._check_file(path)
        head = _head(path)
        kind = sniff_video(head)
        if kind is None:
            what = sniff(head) or "unknown content"
            raise ImageError(self.source, f"not a video ({what}; MP4/MOV, Matroska/WebM and "
                                          "AVI are read)")
        try:
            # Only the demuxer of the sniffed container sees the data (FFmpeg would
            # otherwise probe it with every demuxer it has).
            self.container = av.open(self.source, format=_DEMUXERS[kind],
                                     metadata_errors="ignore")
        except av.FFmpegError as e:
            raise ImageError(self.source, f"cannot open {kind} file: {_ffmpeg_reason(e)} "
                                          "(truncated or corrupt?)") from None
        try:
            self.stream = self._video_stream(kind)
            self.info = self._info(kind)
            self._check_pixels(self.info.width, self.info.height)
        except BaseException:
            self.container.close()
            raise

    def _check_file(self, path: str | os.PathLike) -> None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise ImageError(self.source, "no such file") from None
        except OSError as e:
            raise ImageError(self.source, f"cannot read file ({e.strerror or e})") from None
        if stat.S_ISDIR(st.st_mode):
            raise ImageError(self.source, "is a directory, not a video file")
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(self.source, "is not a regular file (only regular files are read)")
        if st.st_size == 0:
            raise ImageError(self.source, "empty file")

    def _video_stream(self, kind: str):
        streams = self.container.streams
        if not streams.video:
            what = ("audio only" if streams.audio else
                    "no streams found: truncated, or an unfinished recording?"
                    if not streams else "other streams only")
            raise ImageError(self.source, f"no video stream in this {kind} file ({what})")
        stream = streams.video[0]
        stream.thread_type = "AUTO"
        return stream

    def _info(self, kind: str) -> VideoInfo:
        s, cc = self.stream, self.stream.codec_context
        rate = float(s.average_rate) if s.average_rate else (
            float(s.guessed_rate) if s.guessed_rate else None)
        duration = None
        if s.duration is not None and s.time_base:
            duration = float(s.duration * s.time_base)
        elif self.container.duration is not None:
            duration = self.container.duration / 1e6  # AV_TIME_BASE: microseconds
        return VideoInfo(kind, cc.name, cc.width, cc.height, rate or None,
                         duration if duration and duration > 0 else None,
                         s.frames or None, _name(getattr(cc, "colorspace", None), _COLORSPACES),
                         _name(getattr(cc, "color_range", None), _RANGES))

    def _check_pixels(self, width: int, height: int) -> None:
        if width <= 0 or height <= 0:
            raise ImageError(self.source, f"invalid video dimensions {width}x{height}")
        if self.max_pixels is not None and width * height > self.max_pixels:
            raise ImageError(self.source, f"video frames are {width}x{height} = "
                                          f"{width * height:,} pixels, above the limit of "
                                          f"{self.max_pixels:,} (raise max_pixels / "
                                          "--max-pixels to allow it)")

    def check_frame_budget(self, fps: float | None, max_frames: int | None) -> None:
        """Refuse, from the header, a clip that would give more than ``max_frames`` frames
        at ``fps`` (None: every frame)."""
        n = expected_frames(self.info, fps)
        if max_frames is not None and n is not None and n > max_frames:
            rate = "every frame" if fps is None else f"{fps:g} frame(s)/s"
            raise ImageError(self.source, f"would sample about {n:,} frames ({rate} of "
                                          f"{self.info.duration or 0:.1f} s), above "
                                          f"--max-frames {max_frames:,}")

    def frames(self, fps: float | None = 1.0, max_frames: int | None = None) -> Iterator[Frame]:
        """Sampled frames in stream order (see the module's text); ``fps`` None takes every
        frame. Raises :class:`ImageError` when a frame is above the pixel limit or when more
        than ``max_frames`` would be taken; corrupt or cut data ends the stream and sets
        :attr:`problem`."""
        if fps is not None and not (fps > 0 and math.isfinite(fps)):
            raise MusiqError(f"fps must be a positive number, not {fps}")
        self.check_frame_budget(fps, max_frames)
        taken, index, start, next_t, last = 0, -1, None, 0.0, None
        for frame in self._decoded():
            index += 1
            t = frame.time if frame.time is not None else index / (self.info.rate or 1.0)
            start = t if start is None else start
            t = max(t - start, 0.0)
            last = t
            if fps is not None and t + _EPS < next_t:
                continue
            if max_frames is not None and taken >= max_frames:
                raise ImageError(self.source, f"more than --max-frames {max_frames:,} "
                                              f"frames to sample (at {t:.2f} s)")
            self._check_pixels(frame.width, frame.height)
            if fps is not None:
                next_t = (math.floor(t * fps + _EPS) + 1) / fps
            taken += 1
            yield Frame(index, t, frame.to_ndarray(format="rgb24"))
        if self.problem is None and index < 0:
            promised = f" (its header promises {self.info.frames})" if self.info.frames else ""
            self.problem = f"no frame could be decoded{promised}"
        self._check_complete(index + 1, last)

    def _decoded(self):
        """Decoded frames, packet by packet: a packet that fails to decode is skipped and
        counted (:attr:`bad_packets`); an error of the container itself ends the stream.
        Either sets :attr:`problem`."""
        av = require_av()
        packets = self.container.demux(self.stream)
        n = 0
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.FFmpegError as e:
                self.problem = f"reading stopped after {n} frame(s): {_ffmpeg_reason(e)}"
                break
            try:
                frames = packet.decode()  # the last, empty packet flushes the decoder
            except av.FFmpegError as e:
                self.bad_packets += 1
                self._bad_reason = self._bad_reason or _ffmpeg_reason(e)
                continue
            for frame in frames:
                n += 1
                yield frame
        if self.bad_packets and self.problem is None:
            self.problem = (f"{self.bad_packets} corrupt packet(s) skipped "
                            f"({self._bad_reason})")

    def _check_complete(self, decoded: int, last: float | None) -> None:
        """Set :attr:`problem` when the stream ended well before its header said."""
        info = self.info
        if self.problem is not None or last is None:
            return
        frame_time = 1.0 / info.rate if info.rate else 0.0
        if info.duration is not None and last + 2 * frame_time + 0.25 < info.duration:
            self.problem = (f"stream ended at {last:.2f} s of {info.duration:.2f} s "
                            f"(truncated or corrupt); {decoded} frame(s) decoded")
        elif info.frames and decoded < info.frames - 1 and info.duration is None:
            self.problem = (f"{decoded} of {info.frames} frames decoded "
                            "(truncated or corrupt)")

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ffmpeg_reason(e: Exception) -> str:
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return text if len(text) <= 200 else text[:200] + "..."
