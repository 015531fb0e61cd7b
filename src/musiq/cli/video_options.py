"""``musiq score`` options for videos (``--fps``, ``--every-frame``, ``--max-frames``,
``--pool``, ``--per-frame``) and their part in an output's provenance."""
from __future__ import annotations

import argparse

from ..errors import MusiqError
from ..video_scoring import POOLS, VideoSampling


def add_video_options(p: argparse.ArgumentParser, per_frame: bool = True) -> None:
    g = p.add_argument_group("video (MP4/MOV, MKV/WebM, AVI; needs the video extra)")
    g.add_argument("--fps", type=float, default=1.0, metavar="F",
                   help="frames scored per second of video time, by timestamp (default 1)")
    g.add_argument("--every-frame", action="store_true", help="score every frame")
    g.add_argument("--max-frames", type=int, default=None, metavar="N",
                   help="refuse a video that would give more than N frames at this rate "
                        "(from its header, before decoding; else when reached)")
    g.add_argument("--pool", choices=POOLS, default="mean",
                   help="a video's score from its frames' scores: mean (default), median, "
                        "min or p10 (10th percentile)")
    if not per_frame:
        return
    g.add_argument("--per-frame", action="store_true",
                   help="CSV/Parquet/table: one row per frame (path, frame, time, score ...) "
                        "instead of one per video; JSON always lists frame_scores")


def sampling_from_args(args: argparse.Namespace) -> VideoSampling:
    """The sampling the flags ask for (raises :class:`MusiqError` for bad values)."""
    if args.fps is not None and args.fps <= 0:
        raise MusiqError(f"--fps must be positive, not {args.fps:g}")
    if args.max_frames is not None and args.max_frames < 1:
        raise MusiqError(f"--max-frames must be positive, not {args.max_frames}")
    return VideoSampling(None if args.every_frame else args.fps, args.max_frames, args.pool)


def video_provenance(sampling: VideoSampling, per_frame: bool) -> dict:
    """The record of how videos were sampled (``provenance["video"]``)."""
    return {"fps": sampling.fps, "every_frame": sampling.fps is None,
            "max_frames": sampling.max_frames, "pool": sampling.pool, "per_frame": per_frame}


def check_video_resume(output: str, recorded: dict | None, current: dict) -> None:
    """Refuse to resume an output whose videos were sampled or pooled otherwise (a record
    without ``video``, from before videos, is accepted)."""
    old = (recorded or {}).get("video")
    if old is None:
        return
    keys = ("fps", "every_frame", "pool")
    diff = [f"{k}: file has {old.get(k)!r}, this run has {current.get(k)!r}"
            for k in keys if old.get(k) != current.get(k)]
    if diff:
        raise MusiqError(f"--resume: {output} was written with other video settings "
                         f"({'; '.join(diff)}); the file is left untouched")
