"""How much bf16/fp16 move the scores on the golden images (CPU unless --device).

    .venv/bin/python benchmarks/precision_effect.py [--device cuda]

For each checkpoint of tests/golden (1 and 10 classes) and each precision, prints the
largest |score - original| and |logit - original| over the images the original scored.
"""
from __future__ import annotations

import argparse
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
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    records = json.loads((TESTS / "golden" / "scores.json").read_text())["images"]
    tmp = Path(tempfile.mkdtemp())
    print("| checkpoint | precision | images | max abs score change | max abs logit change |")
    print("| --- | --- | ---: | ---: | ---: |")
    for classes in (1, 10):
        ckpt = tmp / f"ckpt{classes}.npz"
        subprocess.run([sys.executable, str(TESTS / "checkpoints.py"), str(ckpt),
                        "--classes", str(classes)], check=True)
        key = f"{classes}class"
        scored = [r for r in records if "logits" in r[key]]
        paths = [TESTS / "golden" / "images" / r["file"] for r in scored]
        for precision in ("fp32", "bf16", "fp16"):
            s = musiq.load(ckpt, device=a.device, precision=precision)
            preds = list(s.predict_many(paths, batch_size=8))
            ds = max(abs(p.score - r[key]["score"]) for p, r in zip(preds, scored))
            dl = max(float(np.abs(np.array(p.logits) - r[key]["logits"]).max())
                     for p, r in zip(preds, scored))
            print(f"| {classes} class{'es' if classes > 1 else ''} | {precision} | "
                  f"{len(scored)} | {ds:.2e} | {dl:.2e} |", flush=True)


if __name__ == "__main__":
    main()
