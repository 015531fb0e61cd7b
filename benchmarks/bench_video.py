"""Video scoring speed on CPU: frames scored per second end to end, and decoding's share.

    python benchmarks/bench_video.py CHECKPOINT.npz [--seconds 4] [--repeats 3]
    python benchmarks/bench_video.py --memory [--minutes 10]

For 1280x720 and 1920x1080 it encodes a clip of moving noise-and-gradient frames (H.264,
25 fps, made here), then times (a) decoding alone: every frame decoded, one a second
converted to RGB, as ``musiq score`` does at ``--fps 1``, and (b) ``predict_video`` end to
end. It prints medians over ``--repeats`` and the ratio decode / end-to-end.
``--memory`` decodes a long 320x240 clip at 1 frame/s and prints the peak resident memory
after each minute of video (flat when frames stream).
"""
from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def make_clip(path: Path, width: int, height: int, seconds: float, rate: int = 25) -> None:
    import av
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=rate, options={"preset": "ultrafast"})
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        for i in range(int(seconds * rate)):
            a = (0.5 * np.roll(base, 8 * i, axis=1) + 0.5 * ramp).astype(np.uint8)
            c.mux(s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")))
        c.mux(s.encode())


def decode_only(path: Path) -> int:
    from musiq.decoding.video import VideoReader
    with VideoReader(path) as r:
        return sum(1 for _ in r.frames(1.0))


def bench(checkpoint: str, seconds: float, repeats: int) -> None:
    import torch

    import musiq
    from musiq.video_scoring import VideoSampling, predict_video
    scorer = musiq.load(checkpoint, device="cpu")
    print(f"torch threads {torch.get_num_threads()}, model {checkpoint}")
    with tempfile.TemporaryDirectory() as d:
        for w, h in [(1280, 720), (1920, 1080)]:
            path = Path(d) / f"{w}x{h}.mp4"
            make_clip(path, w, h, seconds)
            predict_video(scorer, path, VideoSampling(1.0, max_frames=1))  # warm up
            dec, e2e, n = [], [], 0
            for _ in range(repeats):
                t = time.perf_counter()
                n = decode_only(path)
                dec.append(time.perf_counter() - t)
                t = time.perf_counter()
                p = predict_video(scorer, path, VideoSampling(1.0))
                e2e.append(time.perf_counter() - t)
                assert p.error is None and p.frames == n, p.error
            d_med, e_med = statistics.median(dec), statistics.median(e2e)
            print(f"{w}x{h}: {n} frames scored of {int(seconds * 25)} decoded; end to end "
                  f"median {e_med:.2f} s = {n / e_med:.3f} scored frames/s; decoding alone "
                  f"{d_med:.3f} s = {100 * d_med / e_med:.1f} % of it")


def memory(minutes: float) -> None:
    from musiq.decoding.video import VideoReader
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "long.mp4"
        t = time.perf_counter()
        make_clip(path, 320, 240, 60 * minutes)
        print(f"{minutes:g} min 320x240 clip made in {time.perf_counter() - t:.0f} s, "
              f"{path.stat().st_size / 2**20:.1f} MiB")
        with VideoReader(path) as r:
            for f in r.frames(1.0):
                if f.index % (25 * 60) == 0:
                    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                    print(f"  at {f.time / 60:4.1f} min: peak RSS {rss:.0f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", nargs="?")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--memory", action="store_true")
    ap.add_argument("--minutes", type=float, default=10.0)
    a = ap.parse_args()
    if a.memory:
        memory(a.minutes)
    else:
        bench(a.checkpoint, a.seconds, a.repeats)


if __name__ == "__main__":
    main()
