"""Images/s of the local engine vs the Ray Data engine (1 and 2 model actors), same run.

    .venv/bin/python benchmarks/bench_ray.py [--images 64] [--rounds 3] [--model CKPT]

Generates N JPEGs of 1024x768 (smooth synthetic photos, q90) and a structure-exact checkpoint
(random weights: speed does not depend on them), then alternates the engines for each
round and prints the median images/s and the Ray/local ratio. Ray runs on a local Ray with
2 CPUs started once (its start-up is not timed; actor start-up and weight transfer are).
The machine may be shared: quote the same-run ratio and the load average printed.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import simplejpeg

ROOT = Path(__file__).resolve().parents[1]


def make_images(d: Path, n: int) -> list[str]:
    y, x = np.mgrid[0:768, 0:1024].astype(np.float64)
    out = []
    for i in range(n):
        r = 127 + 120 * np.sin(x / (7.0 + i % 5)) * np.cos(y / 11.0)
        g = 127 + 120 * np.cos((x + y + 13 * i) / 13.0)
        b = 255 * (x / 1023) * (1 - y / 767)
        rgb = np.clip(np.stack([r, g, b], 2), 0, 255).astype(np.uint8)
        p = d / f"img_{i:03d}.jpg"
        p.write_bytes(simplejpeg.encode_jpeg(rgb, quality=90))
        out.append(str(p))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--model", default=None)
    a = ap.parse_args()
    import ray
    import torch

    import musiq
    from musiq.distributed import score_dataset
    tmp = Path(tempfile.mkdtemp(prefix="bench_ray"))
    files = make_images(tmp, a.images)
    ckpt = a.model
    if ckpt is None:
        ckpt = str(tmp / "ckpt.npz")
        subprocess.run([sys.executable, str(ROOT / "tests" / "checkpoints.py"),
                        ckpt, "--classes", "1"], check=True)
    scorer = musiq.load(ckpt, device="cpu")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    threads = torch.get_num_threads()

    def local() -> int:
        return sum(p.error is None for p in scorer.predict_many(files, batch_size=8))

    def on_ray(actors: int):
        def run() -> int:
            # The actors together reserve 1 of the 2 Ray CPUs: the read tasks need the other
            # (actors holding every CPU starve the reads). Threads: the cores they share.
            ds = score_dataset(files, scorer, concurrency=actors, num_cpus=1 / actors,
                               threads=max(1, threads // actors), batch_size=16)
            return sum(r["error"] is None for r in ds.iter_rows())
        return run

    engines = {"local": local, "ray, 1 actor": on_ray(1), "ray, 2 actors": on_ray(2)}
    rates: dict[str, list[float]] = {k: [] for k in engines}
    for rnd in range(a.rounds):
        for name, fn in engines.items():
            t = time.perf_counter()
            ok = fn()
            dt = time.perf_counter() - t
            assert ok == len(files), f"{name}: {ok} of {len(files)} scored"
            rates[name].append(len(files) / dt)
            print(f"round {rnd + 1} {name:14s} {len(files) / dt:6.2f} images/s "
                  f"(load {os.getloadavg()[0]:.2f})", flush=True)
    base = statistics.median(rates["local"])
    print(f"\n{a.images} JPEGs 1024x768, {os.cpu_count()} CPUs, torch {threads} threads, "
          f"median of {a.rounds} rounds")
    for name, r in rates.items():
        m = statistics.median(r)
        print(f"{name:14s} {m:6.2f} images/s  {m / base:5.2f} x local")
    ray.shutdown()


if __name__ == "__main__":
    main()
