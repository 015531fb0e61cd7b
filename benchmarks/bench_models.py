"""Several models in one pass (issue 21): whole `musiq score` processes, one pass with N
models against N single-model runs over the same JPEGs, in the same run.

    .venv/bin/python benchmarks/bench_models.py [--images 16] [--size 1024x768] [--rounds 3]
        [--device cpu|cuda] [--counts 1,2,4]

For each N in ``--counts`` it times, per round and interleaved, ``musiq score DIR --model
a,b,... -o out.csv`` (one process, one decode per image) and the N processes ``musiq score DIR
--model a -o a.csv`` one after the other, and prints images/s of each (images x models
scored per second of wall time, so the two are comparable) and their ratio; medians over
the rounds, with the load average, because the machine is shared. The models are reference
checkpoints with the official structure (tests/checkpoints.py): three 1-output (MOS) models
with different seeds and one 10-bin (AVA) model, so that N=4 mixes the kinds as ``--model
all`` does. Scores are checked equal (<= 1e-6) between the two ways.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from bench_cpu import make_image  # noqa: E402

#: (name, classes, seed): the stand-ins for koniq, spaq, paq2piq and ava.
MODELS = [("koniq", 1, 0), ("ava", 10, 1), ("spaq", 1, 2), ("paq2piq", 1, 3)]


def musiq_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("musiq")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "musiq"]


def run(args: list[str], device: str) -> float:
    t0 = time.perf_counter()
    r = subprocess.run([*musiq_cmd(), "score", *args, "--device", device, "-q"],
                       capture_output=True, text=True)
    took = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"musiq score {' '.join(args)} failed:\n{r.stderr}")
    return took


def read_scores(path: Path, columns: list[str]) -> dict[tuple[str, str], float]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {(r["path"], c): float(r[c]) for r in rows for c in columns}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--size", default="1024x768")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--counts", default="1,2,4")
    a = ap.parse_args()
    w, h = map(int, a.size.split("x"))
    counts = [int(c) for c in a.counts.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="bench_models"))
    images = tmp / "images"
    images.mkdir()
    for i in range(a.images):
        make_image(images / f"img{i:03d}.jpg", w, h, seed=i)
    ckpts = {}
    for name, classes, seed in MODELS[:max(counts)]:
        ckpts[name] = tmp / f"{name}.npz"
        subprocess.run([sys.executable, str(ROOT / "tests" / "checkpoints.py"),
                        str(ckpts[name]), "--classes", str(classes), "--seed", str(seed)],
                       check=True)
    print(f"# {a.images} JPEGs of {a.size}, device {a.device}, {os.cpu_count()} cores, "
          f"{a.rounds} rounds (whole processes, interleaved)", flush=True)
    print("| models | one pass, images/s | separate runs, images/s | one pass / separate | "
          "load |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for n in counts:
        names = [m[0] for m in MODELS[:n]]
        one, sep, loads = [], [], []
        for r in range(a.rounds):
            out = tmp / f"all_{n}_{r}.csv"
            one.append(run([str(images), "--model", ",".join(str(ckpts[m]) for m in names),
                            "-o", str(out)], a.device))
            t = 0.0
            for m in names:
                t += run([str(images), "--model", str(ckpts[m]), "-o",
                          str(tmp / f"{m}_{n}_{r}.csv")], a.device)
            sep.append(t)
            loads.append(os.getloadavg()[0])
            if n > 1:
                together = read_scores(out, names)
                for m in names:
                    alone = read_scores(tmp / f"{m}_{n}_{r}.csv", ["score"])
                    for (path, _), v in alone.items():
                        assert abs(together[(path, m)] - v) <= 1e-6, (m, path)
        work = a.images * n
        t1, t2 = statistics.median(one), statistics.median(sep)
        print(f"| {n} | {work / t1:.2f} | {work / t2:.2f} | {t2 / t1:.2f}x | "
              f"{statistics.median(loads):.1f} |", flush=True)


if __name__ == "__main__":
    main()
