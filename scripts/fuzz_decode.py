#!/usr/bin/env python3
"""Long fuzz run of the decoder: mutated real images and random bytes, in a worker process
so that a hang or a crash of a C decoder is caught and recorded instead of ending the run.

    .venv/bin/python scripts/fuzz_decode.py --seconds 1800 [--timeout 10] [--seed 1]
                                            [--out fuzz-findings]

Each input must give a decoded image or an ImageError within ``--timeout`` seconds (an
input that exceeds it is retried once on a fresh worker before it counts as a hang: shared
machines stall processes). Anything else (another exception, a worker death, a timeout) is a finding: its bytes are
written to ``--out`` with the reason, and the run goes on. The summary gives the figures
recorded in docs/inputs.md. Same mutation operators as the CI test (tests/fuzzing.py).
"""
from __future__ import annotations

import argparse
import collections
import multiprocessing as mp
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fuzzing import OPS, check_one, mutate, seeds  # noqa: E402

#: Seconds a new worker may take to import numpy, Pillow, torch ... (not an input's time).
STARTUP_TIMEOUT = 300.0
MAGICS = [b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"RIFF\0\0\0\0WEBPVP8 ",
          b"II*\0", b"MM\0*", b"BM"]


def worker(conn) -> None:
    conn.send(("ready", 0.0))  # imports done: only decoding counts against the timeout
    while True:
        data = conn.recv_bytes()
        t0 = time.perf_counter()
        try:
            outcome = check_one(data)
        except BaseException:  # a finding: anything but ImageError
            outcome = "FAIL " + traceback.format_exc(limit=6)
        conn.send((outcome, time.perf_counter() - t0))


def make_input(rng: np.random.Generator, pool: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    if rng.random() < 0.1:
        magic = MAGICS[rng.integers(len(MAGICS))]
        return "random", magic + rng.integers(0, 256, rng.integers(0, 4096), np.uint8).tobytes()
    name, data = pool[rng.integers(len(pool))]
    ops = [(OPS[rng.integers(len(OPS))], float(rng.random()), int(rng.integers(0, 2**32)))
           for _ in range(int(rng.integers(1, 9)))]
    return name, mutate(data, ops)


class Worker:
    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker, args=(child,), daemon=True)
        self.proc.start()
        if not self.conn.poll(STARTUP_TIMEOUT):
            raise RuntimeError("fuzz worker did not start")
        self.conn.recv()

    def run(self, data: bytes, timeout: float) -> tuple[str, float]:
        self.conn.send_bytes(data)
        if not self.conn.poll(timeout):
            return "HANG", timeout
        try:
            return self.conn.recv()
        except EOFError:
            return f"CRASH (worker exit code {self.proc.exitcode})", 0.0

    def stop(self) -> None:
        self.proc.kill()
        self.proc.join()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--max-inputs", type=int, default=0, help="stop after N inputs (0: none)")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per input")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="fuzz-findings")
    args = ap.parse_args()
    pool = seeds()
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    outcomes: collections.Counter[str] = collections.Counter()
    times: list[float] = []
    findings = 0
    w = Worker()
    start = time.monotonic()
    n = 0
    try:
        while time.monotonic() - start < args.seconds and (not args.max_inputs
                                                           or n < args.max_inputs):
            seed_name, data = make_input(rng, pool)
            outcome, took = w.run(data, args.timeout)
            if outcome == "HANG":
                # A shared machine can stall a process for seconds: confirm on a fresh worker.
                w.stop()
                w = Worker()
                outcome, took = w.run(data, args.timeout)
                if not outcome.startswith(("FAIL", "HANG", "CRASH")):
                    outcomes["slow once, fine when retried"] += 1
            n += 1
            times.append(took)
            if outcome.startswith(("FAIL", "HANG", "CRASH")):
                findings += 1
                out.mkdir(parents=True, exist_ok=True)
                stem = out / f"finding_{findings:04d}_{seed_name}"
                stem.with_suffix(".bin").write_bytes(data)
                stem.with_suffix(".txt").write_text(outcome + "\n")
                print(f"[{n}] {outcome.splitlines()[0]} from {seed_name} -> {stem}.bin",
                      flush=True)
                outcomes[outcome.splitlines()[0][:40]] += 1
                if not outcome.startswith("FAIL"):
                    w.stop()
                    w = Worker()
            else:
                outcomes[outcome] += 1
            if n % 5000 == 0:
                print(f"... {n} inputs, {findings} findings, "
                      f"{time.monotonic() - start:.0f} s", flush=True)
    finally:
        w.stop()
    t = np.array(times) if times else np.zeros(1)
    print(f"\ninputs tried: {n} in {time.monotonic() - start:.0f} s from {len(pool)} seeds "
          f"(seed {args.seed})")
    print(f"findings (crash, hang, other exception): {findings}")
    print(f"seconds per input: median {np.median(t):.4f}, p99 {np.quantile(t, 0.99):.3f}, "
          f"max {t.max():.3f}")
    print("outcomes:")
    for k, v in outcomes.most_common(25):
        print(f"  {v:8d}  {k}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
