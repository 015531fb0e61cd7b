"""Pixels to the device: NumPy vs torch preprocessing, and end to end from JPEG files.

    PYTHONPATH=src python benchmarks/bench_pixels.py --device cpu
    PYTHONPATH=src python benchmarks/bench_pixels.py --device cuda --workers 15 --images 4096

It writes a checkpoint with ``tests/checkpoints.py`` (random weights: speed does not
depend on their values) and copies of ``tests/golden/images/coffee_1024x768_q90.jpg`` to a temporary
folder (distinct files on disk, as a dataset), then prints one table:

* ``preprocess``: seconds per 1024x768 image to make its tokens, NumPy and torch backends
  (median of ``--repeat``), on ``--device``;
* ``e2e``: ``Scorer.predict_many`` from the JPEG files to scores (decode in ``--workers``
  processes), per backend and precision: images/s (median of ``--repeat`` runs), and where
  the time goes: decoding alone in the same processes (images/s), and the model alone on
  tokens already on the device (images/s);
* ``host bytes/image in flight``: what one image costs the host between decode and device
  (the uint8 pixels for torch, the float32 tokens for NumPy).

Figures are medians; the machine may be shared, so compare ratios within one run.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import musiq
from musiq import load_image, preprocess
from musiq.tokens.pipeline import iter_prepared
from musiq.tokens.preprocess_torch import tokenize


def _median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tests", type=Path, default=Path(__file__).resolve().parents[1] / "tests",
                    help="the checkout's tests/ folder (checkpoint writer and golden images)")
    ap.add_argument("--images", type=int, default=8, help="JPEG files per end-to-end run")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--precisions", default=None, help="comma list (default fp32 on CPU; "
                                                       "fp32,bf16 on CUDA)")
    ap.add_argument("--compile", action="store_true", help="compile the stem (bf16 rows)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    precisions = (args.precisions or ("fp32,bf16" if cuda else "fp32")).split(",")
    batch_size = args.batch_size or (128 if cuda else 8)
    tmp = Path(tempfile.mkdtemp(prefix="musiq_bench_"))
    rows = _Table()
    try:
        ckpt = tmp / "ckpt.npz"
        subprocess.run([sys.executable, str(args.tests / "checkpoints.py"),
                        str(ckpt), "--classes", "1"], check=True)
        src = args.tests / "golden" / "images" / "coffee_1024x768_q90.jpg"
        files = []
        for i in range(args.images):
            files.append(tmp / f"img_{i:05d}.jpg")
            shutil.copyfile(src, files[-1])
        rgb = load_image(src)
        print(f"# {torch.cuda.get_device_name(dev) if cuda else 'CPU'}, torch "
              f"{torch.__version__}, {torch.get_num_threads()} threads, image {rgb.shape}")
        print("| what | figure | note |\n| --- | --- | --- |", flush=True)

        t_np = _median_time(lambda: preprocess(rgb), args.repeat)
        t_torch = _median_time(lambda: tokenize([rgb], device=dev), args.repeat)
        rows.append(("preprocess numpy (host)", f"{t_np * 1e3:.1f} ms/image", ""))
        rows.append((f"preprocess torch ({dev.type})", f"{t_torch * 1e3:.1f} ms/image",
                     f"{t_np / t_torch:.2f}x numpy"))
        n_tok = len(preprocess(rgb))
        rows.append(("host bytes/image in flight, numpy", f"{n_tok * 3072 * 4 / 1e6:.2f} MB",
                     "float32 tokens"))
        rows.append(("host bytes/image in flight, torch", f"{rgb.nbytes / 1e6:.2f} MB",
                     "uint8 pixels"))

        pp = musiq.Preprocessor()
        t_dec = _median_time(lambda: sum(1 for _ in iter_prepared(
            files, pp, workers=args.workers, pixels=True)), 1)
        rows.append((f"decode only, {args.workers} processes", f"{len(files) / t_dec:.1f} images/s",
                     "JPEG -> uint8 pixels in shared memory"))

        for precision in precisions:
            opts = dict(device=str(dev), precision=precision,
                        compile=args.compile and precision != "fp32")
            for backend in ("numpy", "torch"):
                sc = musiq.load(ckpt, preprocess=backend, **opts)
                run = lambda: [p.score for p in sc.predict_many(  # noqa: E731
                    files, batch_size=batch_size, workers=args.workers)]
                run()  # warm-up (compile, allocator, pinned buffers)
                t = _median_time(run, args.repeat)
                rows.append((f"e2e {precision} {backend}", f"{len(files) / t:.2f} images/s",
                             f"batch {batch_size}, {args.workers} decode processes"))
            # The model alone on tokens already on the device.
            tt = tokenize([rgb] * min(batch_size, len(files)), device=dev)
            with torch.inference_mode():
                sc.engine.forward(tt)
                t = _median_time(lambda: sc.engine.forward(tt), args.repeat)
            rows.append((f"model alone {precision}", f"{len(tt.lengths) / t:.2f} images/s",
                         f"batch {len(tt.lengths)}, tokens on {dev.type}"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class _Table:
    """Rows of the result table, printed as they are measured (a long run shows progress)."""

    def append(self, row: tuple[str, str, str]) -> None:
        print(f"| {row[0]} | {row[1]} | {row[2]} |", flush=True)


if __name__ == "__main__":
    main()
