"""bf16's effect on scores in MOS units (0-100), per runtime, on the golden images.

    PYTHONPATH=src python benchmarks/bf16_mos_effect.py

The test checkpoints have random weights (1-class scores 0.5-1.6); here the head is scaled
and shifted so that the fp32 scores of the golden images span 10-90, as the official KonIQ /
SPAQ / PaQ-2-PiQ models' 0-100 MOS do. Prints, per runtime and precision, the largest and
median |score - torch fp32 score|, distinct scores, and how many lie on the 0.25 grid (the
old bf16 head rounded scores to it).
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
TESTS = ROOT / "tests"


def main() -> None:
    import musiq
    from musiq.engine.runtimes import cpu_has_bf16
    records = json.loads((TESTS / "golden" / "scores.json").read_text())["images"]
    paths = [TESTS / "golden" / "images" / r["file"] for r in records
             if "logits" in r["1class"]]
    tmp = Path(tempfile.mkdtemp())
    ckpt = tmp / "ckpt1.npz"
    subprocess.run([sys.executable, str(TESTS / "checkpoints.py"), str(ckpt), "--classes",
                    "1"], check=True)
    raw = np.array([p.score for p in musiq.load(ckpt, device="cpu", backend="torch")
                    .predict_many(paths)])
    a = 80.0 / (raw.max() - raw.min())
    params, _ = musiq.load_checkpoint(ckpt)
    params["head/kernel"] = params["head/kernel"] * a
    params["head/bias"] = params["head/bias"] * a + (10.0 - a * raw.min())
    mos = musiq.save_checkpoint(tmp / "mos.npz", params)
    ref = np.array([p.score for p in musiq.load(mos, device="cpu", backend="torch")
                    .predict_many(paths)])
    print(f"{len(paths)} golden images; fp32 scores {ref.min():.1f}-{ref.max():.1f} "
          f"(0-100 scale); CPU bf16 instructions: {cpu_has_bf16()}\n")
    print("| runtime | precision | max \\|score - fp32\\| | median | distinct scores | "
          "on the 0.25 grid |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for backend, precision in (("torch", "bf16"), ("openvino", "fp32"), ("openvino", "bf16")):
        s = musiq.load(mos, device="cpu", backend=backend, precision=precision)
        got = np.array([p.score for p in s.predict_many(paths)])
        d = np.abs(got - ref)
        grid = int(sum(float(v * 4).is_integer() for v in got))
        print(f"| {s.backend} | {s.precision} | {d.max():.3f} | {np.median(d):.3f} | "
              f"{len(set(got.tolist()))} of {len(got)} | {grid} |", flush=True)


if __name__ == "__main__":
    main()
