"""Memory over a folder of mixed sizes: the RSS curve of ``predict_many`` over N JPEGs of N
different sizes, without and with musiq's memory bounds (:mod:`musiq.engine.memory`).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_memory.py --images 400

Each variant runs in its own process (so its RSS is its own; the variants side by side, so
that a shared machine loads both alike) over the same generated files
(random sizes, seeded; every image a new shape, as a real photo folder is). The model is a
structure-exact checkpoint with deterministic random weights (tests/checkpoints.py): memory
does not depend on the weights' values. Prints RSS after every ``--every`` images, the growth
per 100 new shapes over the second half, and the same-run ratio of peaks.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VARIANTS = ("unbounded", "bounded")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_images(folder: Path, n: int, lo: int, hi: int, seed: int) -> list[str]:
    """``n`` JPEGs of random width and height in ``[lo, hi]`` (noise over a gradient)."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        w, h = (int(v) for v in rng.integers(lo, hi + 1, size=2))
        grad = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
        img = np.clip(grad + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
        p = folder / f"{i:05d}_{w}x{h}.jpg"
        Image.fromarray(img).save(p, quality=85)
        paths.append(str(p))
    return paths


def worker(args: argparse.Namespace) -> None:
    """One variant: score the files in order, print a JSON line of the RSS curve."""
    sys.path.insert(0, str(ROOT / "src"))
    if args.variant.startswith("bounded:"):  # another threshold, in bytes
        os.environ["MUSIQ_MMAP_THRESHOLD"] = args.variant.split(":", 1)[1]
    import torch
    torch.set_num_threads(args.threads)
    import musiq
    from musiq import memory
    if args.variant == "unbounded":
        memory.unbound()  # the state before musiq.engine.memory: no trimming, default caches
    scorer = musiq.load(args.model, device="cpu")
    files = json.loads(Path(args.files).read_text())
    curve, start = [(0, rss_mb())], time.perf_counter()
    for i, p in enumerate(scorer.predict_many(files, batch_size=args.batch_size), 1):
        assert p.error is None, p.error
        if i % args.every == 0:
            curve.append((i, rss_mb()))
    print(json.dumps({"variant": args.variant, "curve": curve, "peak_mb": peak_mb(),
                      "seconds": time.perf_counter() - start}))


def growth_per_100(curve: list[tuple[int, float]]) -> float:
    """MB per 100 images over the second half of the curve (least squares)."""
    half = [(i, r) for i, r in curve if i >= curve[-1][0] / 2]
    x, y = np.array(half, dtype=float).T
    return float(np.polyfit(x, y, 1)[0] * 100) if len(half) > 1 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--min-side", type=int, default=64)
    ap.add_argument("--max-side", type=int, default=512)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="unbounded, bounded, bounded:BYTES (another mmap threshold)")
    ap.add_argument("--worker", dest="variant", help=argparse.SUPPRESS)
    ap.add_argument("--files", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        return worker(args)
    with tempfile.TemporaryDirectory(prefix="musiq_mem_") as tmp:
        d = Path(tmp)
        files = make_images(d, args.images, args.min_side, args.max_side, args.seed)
        (d / "files.json").write_text(json.dumps(files))
        model = d / "model.npz"
        env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT / 'src' / '..'}"}
        subprocess.run([sys.executable, str(ROOT / "tests" / "checkpoints.py"), str(model),
                        "--classes", "1"], check=True, env=env)
        # The variants run side by side: on a shared machine both see the same load.
        procs = [subprocess.Popen(
            [sys.executable, __file__, "--worker", v, "--files", str(d / "files.json"),
             "--model", str(model), "--every", str(args.every),
             "--batch-size", str(args.batch_size), "--threads", str(args.threads)],
            stdout=subprocess.PIPE, text=True, env=env) for v in args.variants.split(",")]
        results = []
        for p in procs:
            out, _ = p.communicate()
            if p.returncode:
                raise SystemExit(f"a variant failed (exit {p.returncode})")
            results.append(json.loads(out.strip().splitlines()[-1]))
    print(f"{args.images} JPEGs, sides {args.min_side}-{args.max_side} px (every one a new "
          f"shape), batch {args.batch_size}, {args.threads} threads")
    print("images " + " ".join(f"{r['variant']:>10}" for r in results) + "   (RSS, MB)")
    for row in zip(*(r["curve"] for r in results)):
        print(f"{row[0][0]:6d} " + " ".join(f"{r:10.0f}" for _, r in row))
    for r in results:
        print(f"{r['variant']}: peak {r['peak_mb']:.0f} MB, growth "
              f"{growth_per_100(r['curve']):+.1f} MB per 100 new shapes (second half), "
              f"{r['seconds']:.0f} s")
    for r in results[1:]:
        print(f"{r['variant']}/{results[0]['variant']}: peak "
              f"{r['peak_mb'] / results[0]['peak_mb']:.2f}x, time "
              f"{r['seconds'] / results[0]['seconds']:.2f}x")


if __name__ == "__main__":
    main()
