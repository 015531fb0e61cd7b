"""Score videos: sampled frames through the image path, pooled over time.

A video's frames (:mod:`musiq.decoding.video`) are scored by :meth:`Scorer.predict_many
<musiq.scorer.Scorer.predict_many>` as arrays, so they share its batched forward passes
(frames of one clip have one size, hence one token count) and score exactly as the same
frames given as images. The video's row (:class:`~musiq.results.rows.Prediction`) holds the
pooled ``score``, ``frames``, ``spread`` (standard deviation of the frame scores, ddof 0)
and ``frame_scores``. Pools (:data:`POOLS`): ``mean`` (default), ``median``, ``min`` (the
worst frame) and ``p10`` (10th percentile, linear interpolation: the bad moments without
one outlier frame).
"""
from __future__ import annotations

import itertools
import os
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence, Union

import numpy as np

from .decoding.decode import ImageInput, source_name
from .errors import ImageError, MusiqError
from .results.rows import Prediction
from .decoding.video import Frame, VideoReader, is_video

if TYPE_CHECKING:
    from .scorer import Scorer

__all__ = ["POOLS", "VideoSampling", "pool_scores", "predict_video", "score_video",
           "predict_files"]

POOLS = ("mean", "median", "min", "p10")
#: A video given as a path, or its frames: arrays, ``(time, array)`` pairs or :class:`Frame`.
VideoInput = Union[str, os.PathLike, Iterable[Union[np.ndarray, tuple, Frame]]]


@dataclass(frozen=True)
class VideoSampling:
    """How frames are taken and pooled: ``fps`` frames per second of video time (None:
    every frame), ``max_frames`` at most (None: no bound; a clip whose header promises
    more is refused before decoding), ``pool`` one of :data:`POOLS`."""

    fps: float | None = 1.0
    max_frames: int | None = None
    pool: str = "mean"

    def __post_init__(self) -> None:
        if self.fps is not None and not (self.fps > 0 and np.isfinite(self.fps)):
            raise MusiqError(f"fps must be a positive number, not {self.fps}")
        if self.max_frames is not None and self.max_frames < 1:
            raise MusiqError(f"max_frames must be positive, not {self.max_frames}")
        if self.pool not in POOLS:
            raise MusiqError(f"pool must be one of {', '.join(POOLS)}, not {self.pool!r}")


def pool_scores(scores: Sequence[float], pool: str = "mean") -> float:
    """One score from frame scores: ``mean``, ``median``, ``min`` or ``p10``."""
    a = np.asarray(scores, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no frame scores to pool")
    if pool == "mean":
        return float(a.mean())
    if pool == "median":
        return float(np.median(a))
    if pool == "min":
        return float(a.min())
    if pool == "p10":
        return float(np.percentile(a, 10))
    raise MusiqError(f"pool must be one of {', '.join(POOLS)}, not {pool!r}")


def _frames_of(items: Iterable, max_frames: int | None = None) -> Iterator[Frame]:
    """Frames from arrays (time None), ``(time, array)`` pairs or :class:`Frame` s; every
    one is taken (``fps`` is for files), at most ``max_frames``."""
    for i, item in enumerate(items):
        if max_frames is not None and i >= max_frames:
            raise ImageError("<frames>", f"more than max_frames {max_frames:,} frames given")
        if isinstance(item, Frame):
            yield item
        elif isinstance(item, tuple) and len(item) == 2:
            yield Frame(i, None if item[0] is None else float(item[0]), item[1])
        else:
            yield Frame(i, None, item)  # type: ignore[arg-type]


def _frame_row(frame: Frame, p: Prediction) -> dict:
    row = {"frame": frame.index, "time": None if frame.time is None else round(frame.time, 6),
           "score": p.score}
    for key in ("distribution", "std", "top5"):
        if getattr(p, key) is not None:
            row[key] = getattr(p, key)
    return row


def _score_frames(scorer: "Scorer", frames: Iterable[Frame], batch_size: int,
                  max_batch_tokens: int | None) -> tuple[list[dict], str | None]:
    """Frame rows in stream order, and the first frame's error (scoring stops there)."""
    pending: deque[Frame] = deque()

    def arrays() -> Iterator[np.ndarray]:
        for f in frames:
            pending.append(Frame(f.index, f.time, None))  # the pixels are not kept
            yield f.rgb

    rows: list[dict] = []
    for p in scorer.predict_many(arrays(), batch_size=batch_size,
                                 max_batch_tokens=max_batch_tokens):
        frame = pending.popleft()
        if p.error is not None:
            return rows, f"frame {frame.index}: {p.error}"
        rows.append(_frame_row(frame, p))
    return rows, None


def predict_video(scorer: "Scorer", video: VideoInput, sampling: VideoSampling = VideoSampling(),
                  *, batch_size: int = 8, max_batch_tokens: int | None = None) -> Prediction:
    """The pooled prediction of one video; never raises for a bad video: ``error`` says
    why (with ``score`` still set from the frames decoded when the file is truncated or has
    corrupt packets). ``video``: a path, or frames (arrays, ``(time, array)`` pairs)."""
    path_like = isinstance(video, (str, os.PathLike))
    source = source_name(video) if path_like else "<frames>"
    problem = None
    try:
        if path_like:
            with VideoReader(video, max_pixels=scorer.max_pixels) as reader:
                rows, error = _score_frames(scorer, reader.frames(sampling.fps,
                                                                  sampling.max_frames),
                                            batch_size, max_batch_tokens)
                problem = reader.problem
        else:
            rows, error = _score_frames(scorer, _frames_of(video, sampling.max_frames),
                                        batch_size, max_batch_tokens)
    except ImageError as e:
        return Prediction(source=source, error=e.reason)
    except MusiqError as e:  # PyAV missing: this file fails, the images go on
        return Prediction(source=source, error=str(e))
    except MemoryError:
        return Prediction(source=source, error="out of memory while decoding the video")
    if error is not None:
        return Prediction(source=source, error=error)
    return _pooled(source, rows, problem, sampling.pool)


def _pooled(source: str, rows: list[dict], problem: str | None, pool: str) -> Prediction:
    if not rows:
        return Prediction(source=source, error=problem or "no frames (the video is empty)",
                          frames=0, frame_scores=[])
    scores = [r["score"] for r in rows]
    error = None if problem is None else (
        f"{problem}; the score is of the {len(rows)} frame(s) sampled before that")
    return Prediction(source=source, score=pool_scores(scores, pool), error=error,
                      frames=len(rows), spread=float(np.std(np.asarray(scores, np.float64))),
                      frame_scores=rows)


def score_video(scorer: "Scorer", video: VideoInput, *, fps: float | None = 1.0,
                every_frame: bool = False, max_frames: int | None = None, pool: str = "mean",
                batch_size: int = 8) -> Prediction:
    """:func:`predict_video` with keywords; raises :class:`ImageError` when no frame could be
    scored (a partial result, truncated say, is returned with ``error`` set)."""
    sampling = VideoSampling(None if every_frame else fps, max_frames, pool)
    p = predict_video(scorer, video, sampling, batch_size=batch_size)
    if p.score is None:
        raise ImageError(p.source, p.error or "no frame scored")
    return p


def predict_files(scorer: "Scorer", files: Iterable[ImageInput],
                  sampling: VideoSampling = VideoSampling(), *, batch_size: int = 8,
                  workers: int | None = None, max_batch_tokens: int | None = None
                  ) -> Iterator[Prediction]:
    """Predictions of images and videos mixed, in input order: runs of images go through
    :meth:`Scorer.predict_many` (``workers``, ``max_batch_tokens``: None for the plan's);
    each video (by content or suffix: :func:`is_video`) through :func:`predict_video`."""
    def kind(f: ImageInput) -> bool:
        return isinstance(f, (str, os.PathLike)) and is_video(f)

    for videos, group in itertools.groupby(files, key=kind):
        if videos:
            for f in group:
                yield predict_video(scorer, f, sampling, batch_size=batch_size,  # type: ignore
                                    max_batch_tokens=max_batch_tokens)
        else:
            yield from scorer.predict_many(group, batch_size=batch_size, workers=workers,
                                           max_batch_tokens=max_batch_tokens)
