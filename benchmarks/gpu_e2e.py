"""End-to-end GPU check of the merged code: exactness on the golden images and throughput.

Run on a CUDA machine from the repository root (``PYTHONPATH=src`` if musiq is not installed):

    python benchmarks/gpu_e2e.py OUT.txt

It uses the repository's golden data (tests/golden) and reference weights
(tests/checkpoints.py), and reports: max |logit - original| in fp32 on CUDA for every scorable golden image (1 and 10
classes), batched-vs-single difference, model-only images/s at 1024x768 for fp32, bf16 and
bf16 with the compiled stem, and end-to-end images/s through ``predict_many`` with workers.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import musiq


def main() -> None:
    root = Path(__file__).resolve().parents[1] / "tests"
    out_path = Path(sys.argv[1])
    lines: list[str] = []

    def say(msg: str) -> None:
        print(msg, flush=True)
        lines.append(msg)
        out_path.write_text("\n".join(lines) + "\n")

    say(f"# {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
        f"{os.cpu_count()} CPU cores")
    records = json.loads((root / "golden" / "scores.json").read_text())["images"]
    images = root / "golden" / "images"
    ckpts = {}
    for c in ("1", "10"):
        p = Path(f"/tmp/ckpt_{c}class.npz")
        subprocess.run([sys.executable, str(root / "checkpoints.py"), str(p),
                        "--classes", c], check=True)
        ckpts[c] = p
    scorable = [r for r in records if "logits" in r["1class"]]
    for c in ("1", "10"):
        s = musiq.load(ckpts[c], device="cuda")
        worst = max(float(np.abs(np.array(s.predict(images / r["file"]).logits)
                                 - r[f"{c}class"]["logits"]).max()) for r in scorable)
        files = [images / r["file"] for r in scorable]
        single = np.array([s.predict(f).logits for f in files])
        batched = np.array([p.logits for p in s.predict_many(files, batch_size=32)])
        say(f"fp32 cuda {c}-class: max |logit - original| over {len(scorable)} images "
            f"{worst:.2e}; batched vs single {np.abs(single - batched).max():.2e}")
    big = images / "coffee_1024x768_q90.jpg"
    for precision, compile_ in (("fp32", False), ("bf16", False), ("bf16", True)):
        s = musiq.load(ckpts["1"], device="cuda", precision=precision, compile=compile_)
        tok = s.tokens(big)
        batch = [tok] * 128
        s.logits(batch)  # warm-up (and compile)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(4):
            s.logits(batch)
        torch.cuda.synchronize()
        rate = 4 * len(batch) / (time.perf_counter() - t)
        say(f"model only 1024x768 {precision}{' +compile' if compile_ else ''} batch 128: "
            f"{rate:.0f} img/s")
        if compile_:
            files = [big] * 768
            t = time.perf_counter()
            n = sum(1 for p in s.predict_many(files, batch_size=128, workers=14) if p.ok)
            say(f"end to end (decode+preprocess in 14 workers) {precision} +compile: "
                f"{n / (time.perf_counter() - t):.0f} img/s over {n} images")


if __name__ == "__main__":
    main()
