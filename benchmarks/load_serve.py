"""Bounded load test of ``musiq serve`` on 127.0.0.1: throughput, latency, batches, overload.

    .venv/bin/python benchmarks/load_serve.py                       # 500 requests at 16
    .venv/bin/python benchmarks/load_serve.py --requests 100 --json-out out.json

Starts its own servers (random-weight checkpoint from tests/checkpoints.py
unless --model is given; timings do not depend on weight values) and sends small JPEGs:
0. one client: --serial-requests one after the other (latency without queueing);
1. batching: --requests at --concurrency against the default settings;
2. baseline: --baseline-requests with --max-batch-size 1 (0 skips it);
3. overload: --overload-concurrency clients for --overload-seconds (at most
   --overload-requests) against --max-queue --overload-queue, each pausing 50 ms after a 503:
   counts 503s, checks each has Retry-After, samples the server's RSS and checks it still
   answers /healthz afterwards.
Each phase is bounded by its request count and --phase-timeout seconds.

``--engine ray --replicas N`` runs every phase against ``musiq serve --engine ray`` on one
local Ray (started here on 127.0.0.1, stopped by its process ids); RSS is then the driver's,
and batch sizes come from whichever replica answers ``/metrics``.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import serving  # noqa: E402
from serving import ServerProcess  # noqa: E402

SIZES = [(64, 48), (48, 64), (80, 60), (64, 64)]


def small_jpegs() -> list[bytes]:
    """A few small photos-like JPEGs (smooth gradients plus noise), fixed seed."""
    rng = np.random.default_rng(6)
    out = []
    for w, h in SIZES:
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)], -1)
        img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


class RssSampler(threading.Thread):
    """Samples a process's resident memory (VmRSS) every ``period`` seconds."""

    def __init__(self, pid: int, period: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.samples: list[int] = []
        self._halt = threading.Event()

    def read(self) -> int:
        text = Path(f"/proc/{self.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) * 1024

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.samples.append(self.read())
            except (OSError, AttributeError):
                return
            self._halt.wait(self.period)

    def stop(self) -> dict:
        self._halt.set()
        self.join()
        mib = [s / 2**20 for s in self.samples] or [0.0]
        at = [mib[min(len(mib) - 1, int(f * (len(mib) - 1)))] for f in (0, .25, .5, .75, 1)]
        return {"rss_start_mib": round(mib[0], 1), "rss_peak_mib": round(max(mib), 1),
                "rss_end_mib": round(mib[-1], 1),
                # At 0, 25, 50, 75 and 100 % of the phase: flat, or still growing?
                "rss_timeline_mib": [round(x, 1) for x in at]}


def batch_counts(url: str) -> Counter:
    text = httpx.get(url + "/metrics", timeout=30).text
    return Counter({int(size): int(float(n)) for size, n in
                    re.findall(r'musiq_batches_total\{[^}]*size="(\d+)"\} (\S+)', text)})


def drive(url: str, bodies: list[bytes], total: int, concurrency: int, deadline_s: float,
          backoff_s: float = 0.0) -> dict:
    """``total`` raw-body POSTs from ``concurrency`` threads (or fewer when ``deadline_s``
    passes first); statuses and latencies. A client pauses ``backoff_s`` after a 503."""
    lock = threading.Lock()
    next_index = [0]
    latencies: list[float] = []
    statuses: Counter = Counter()
    retry_after_missing = [0]
    scores: dict[int, list[float]] = {}
    stop_at = time.monotonic() + deadline_s

    def worker() -> None:
        with httpx.Client(timeout=120) as client:
            while time.monotonic() < stop_at:
                with lock:
                    i = next_index[0]
                    if i >= total:
                        return
                    next_index[0] += 1
                body_index = i % len(bodies)
                t0 = time.perf_counter()
                try:
                    r = client.post(url + "/v1/score", content=bodies[body_index])
                    status = r.status_code
                except httpx.HTTPError as e:
                    status = type(e).__name__
                    r = None
                dt = time.perf_counter() - t0
                with lock:
                    statuses[status] += 1
                    if status == 200:
                        latencies.append(dt)
                        scores.setdefault(body_index, []).append(
                            r.json()["results"][0]["score"])
                    elif status == 503 and "retry-after" not in r.headers:
                        retry_after_missing[0] += 1
                if status == 503 and backoff_s:
                    time.sleep(backoff_s)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = sorted(latencies)
    pct = (lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 1) if lat
           else None)
    return {"requests": sum(statuses.values()), "concurrency": concurrency,
            "wall_s": round(wall, 2), "ok": statuses.get(200, 0),
            "throughput_img_s": round(statuses.get(200, 0) / wall, 2),
            "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "mean_ms": round(statistics.fmean(lat) * 1000, 1) if lat else None,
            "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)},
            "retry_after_missing": retry_after_missing[0],
            # Same image, same score whatever batch it rode in, up to float32 rounding.
            "max_score_spread": max((max(v) - min(v) for v in scores.values()), default=0.0)}


def phase(name: str, model: Path, server_args: list[str], bodies: list[bytes], total: int,
          concurrency: int, deadline_s: float, backoff_s: float = 0.0) -> dict:
    print(f"[{name}] starting server {' '.join(server_args)}", file=sys.stderr)
    srv = ServerProcess("--model", str(model), *server_args)
    try:
        sampler = RssSampler(srv.proc.pid)
        sampler.start()
        before = batch_counts(srv.url)
        result = drive(srv.url, bodies, total, concurrency, deadline_s, backoff_s)
        after = batch_counts(srv.url)
        result.update(sampler.stop())
        sizes = after - before
        result["batches"] = {str(k): sizes[k] for k in sorted(sizes)}
        n = sum(sizes.values())
        result["mean_batch_size"] = round(sum(k * v for k, v in sizes.items()) / n, 2) if n else 0
        health = httpx.get(srv.url + "/healthz", timeout=30)
        result["healthy_after"] = health.status_code == 200
        result["server_args"] = server_args
    finally:
        rc = srv.stop()
    result["server_exit"] = rc
    print(f"[{name}] {json.dumps(result)}", file=sys.stderr)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, help=".npz checkpoint (default: a random-weight "
                                               "one in the official layout)")
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-batch-size", type=int, default=8)
    ap.add_argument("--serial-requests", type=int, default=20,
                    help="requests from one client first, for latency without queueing")
    ap.add_argument("--baseline-requests", type=int, default=200)
    ap.add_argument("--overload-requests", type=int, default=30000)
    ap.add_argument("--overload-seconds", type=float, default=60,
                    help="the overload phase stops after this long or its request count")
    ap.add_argument("--overload-concurrency", type=int, default=64)
    ap.add_argument("--overload-queue", type=int, default=8)
    ap.add_argument("--phase-timeout", type=float, default=600, metavar="S")
    ap.add_argument("--json-out", type=Path)
    ap.add_argument("--engine", choices=("local", "ray"), default="local")
    ap.add_argument("--replicas", type=int, default=1, help="with --engine ray")
    args = ap.parse_args()
    if args.engine == "ray":
        from raycluster import ENV, RayCluster
        serving.READY_TIMEOUT_S = 600.0
        cluster = RayCluster(num_cpus=2)
        os.environ.update(ENV)
        try:
            return run(args, ["--engine", "ray", "--ray-address", cluster.address,
                              "--replicas", str(args.replicas), "--replica-cpus",
                              str(2 / args.replicas)])
        finally:
            cluster.stop()
    return run(args, [])


def run(args: argparse.Namespace, engine: list[str]) -> int:

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            model = Path(tmp) / "musiq_1class.npz"
            subprocess.run([sys.executable, str(ROOT / "tests" / "checkpoints.py"), str(model),
                            "--classes", "1"], check=True, stdout=subprocess.DEVNULL)
        bodies = small_jpegs()
        quiet = ["--no-access-log", "--log-level", "warning", *engine]
        report = {"images": [f"{w}x{h} JPEG" for w, h in SIZES], "engine": args.engine,
                  "replicas": args.replicas if engine else 1}
        if args.serial_requests:
            report["one_client"] = phase(
                "one-client", model, quiet, bodies, args.serial_requests, 1, args.phase_timeout)
        report["batching"] = phase(
            "batching", model, quiet + ["--max-batch-size", str(args.max_batch_size)], bodies,
            args.requests, args.concurrency, args.phase_timeout)
        if args.baseline_requests:
            report["no_batching"] = phase(
                "no-batching", model, quiet + ["--max-batch-size", "1"], bodies,
                args.baseline_requests, args.concurrency, args.phase_timeout)
        if args.overload_requests:
            report["overload"] = phase(
                "overload", model, quiet + ["--max-queue", str(args.overload_queue),
                                            "--max-files", "1",
                                            "--max-batch-size", str(args.max_batch_size)],
                bodies, args.overload_requests, args.overload_concurrency,
                args.overload_seconds, backoff_s=0.05)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
