"""GPU check: golden exactness on CUDA, and images/s at 1024x768 in fp32 and bf16.

Run by ``benchmarks/gpu_check.sh`` on a machine with a CUDA GPU (never by the tests):

    python benchmarks/gpu_check.py --data DIR --out DIR

``DIR`` holds ``golden_images/``, ``scores.json``, ``make_checkpoint.py`` (copies of
``../shared``) and ``img_1024x768.jpg``. Prints a summary and writes ``gpu_results.json``:

* golden: max |logit - original| per precision, and batched-vs-one-image difference;
* model: images/s of the forward pass alone on pre-made tokens, per precision and batch size
  (what the GPU can do);
* prepare: images/s of decode + preprocess in worker processes (what the CPUs can feed);
* end_to_end: images/s of ``Scorer.predict_many`` over JPEG files (both together);
* profile: the top CUDA kernels of one bf16 batch.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import musiq  # noqa: E402
from musiq.pipeline import PrepareOptions, iter_prepared  # noqa: E402


DEVICE = os.environ.get("MUSIQ_CHECK_DEVICE", "cuda")  # "cpu" only to smoke-test this script


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def golden_check(ckpt: Path, data: Path) -> dict:
    records = json.loads((data / "scores.json").read_text())["images"]
    scored = [r for r in records if "logits" in r["1class"]]
    out = {}
    for precision in ("fp32", "bf16", "fp16"):
        s = musiq.load(ckpt, device=DEVICE, precision=precision)
        diffs, score_diffs = [], []
        for r in scored:
            p = s.predict(data / "golden_images" / r["file"])
            diffs.append(float(np.abs(np.array(p.logits) - r["1class"]["logits"]).max()))
            score_diffs.append(abs(p.score - r["1class"]["score"]))
        batched = list(s.predict_many([data / "golden_images" / r["file"] for r in scored],
                                      batch_size=8))
        single = [s.predict(data / "golden_images" / r["file"]).score for r in scored]
        out[precision] = {
            "images": len(scored),
            "max_logit_diff_vs_original": max(diffs),
            "max_score_diff_vs_original": max(score_diffs),
            "max_batched_vs_single": max(abs(b.score - a) for b, a in zip(batched, single)),
        }
        print(f"golden {precision}: {out[precision]}", flush=True)
    return out


def model_speed(ckpt: Path, image: Path, seconds: float) -> dict:
    out = {}
    for precision in ("fp32", "bf16"):
        s = musiq.load(ckpt, device=DEVICE, precision=precision)
        tok = s.tokens(image)
        for bs in ((32, 128) if DEVICE == "cuda" else (2,)):
            toks = [tok] * bs
            s.max_batch_tokens = 10**9
            s.logits(toks)
            sync()
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                s.logits(toks)
                n += bs
            sync()
            rate = n / (time.perf_counter() - t0)
            out[f"{precision}_b{bs}"] = rate
            print(f"model {precision} batch {bs}: {rate:.0f} images/s", flush=True)
            torch.cuda.empty_cache()
    return out


def prepare_speed(files: list[Path], cfg, workers: int) -> float:
    opts = PrepareOptions(cfg, None, False)
    list(iter_prepared(files[: 2 * workers], opts, workers=workers))  # spawn warm-up
    t0 = time.perf_counter()
    n = sum(1 for _ in iter_prepared(files, opts, workers=workers, prefetch=4 * workers))
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--files", type=int, default=1024)
    ap.add_argument("--seconds", type=float, default=6.0)
    args = ap.parse_args()
    res: dict = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0) if DEVICE == "cuda" else "none",
                 "cpu_count": os.cpu_count()}
    print(res, flush=True)
    ckpt = Path("/tmp/musiq_ckpt1.npz")
    subprocess.run([sys.executable, str(args.data / "make_checkpoint.py"), str(ckpt),
                    "--classes", "1"], check=True)
    res["golden"] = golden_check(ckpt, args.data)
    image = args.data / "img_1024x768.jpg"
    res["model"] = model_speed(ckpt, image, args.seconds)

    tmp = Path("/tmp/musiq_files")
    tmp.mkdir(exist_ok=True)
    files = []
    for i in range(args.files):
        f = tmp / f"img_{i:05d}.jpg"
        shutil.copyfile(image, f)
        files.append(f)
    s = musiq.load(ckpt, device=DEVICE, precision="bf16")
    t0 = time.perf_counter()
    for _ in range(20):
        s.tokens(image)
    res["prepare_one_process_s"] = (time.perf_counter() - t0) / 20
    workers = max(1, (os.cpu_count() or 2) - 1)
    res["prepare_workers"] = workers
    res["prepare_images_per_s"] = prepare_speed(files, s.preprocess_config, workers)
    print(f"prepare: {res['prepare_one_process_s'] * 1e3:.1f} ms/image in one process; "
          f"{res['prepare_images_per_s']:.0f} images/s with {workers} workers", flush=True)

    e2e = {}
    for precision in ("bf16", "fp32"):
        s = musiq.load(ckpt, device=DEVICE, precision=precision)
        list(s.predict_many(files[:64], batch_size=64, workers=workers,
                            max_batch_tokens=10**9))
        sync()
        t0 = time.perf_counter()
        n = sum(1 for p in s.predict_many(files, batch_size=64, workers=workers,
                                           max_batch_tokens=10**9) if p.ok)
        e2e[precision] = n / (time.perf_counter() - t0)
        print(f"end to end {precision}: {e2e[precision]:.0f} images/s", flush=True)
    res["end_to_end"] = e2e

    s = musiq.load(ckpt, device=DEVICE, precision="bf16")
    toks = [s.tokens(image)] * (128 if DEVICE == "cuda" else 2)
    s.logits(toks)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA,
                                            torch.profiler.ProfilerActivity.CPU]) as prof:
        s.logits(toks)
        sync()
    table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=25)
    (args.out / "gpu_profile.txt").write_text(table)
    print(table, flush=True)
    (args.out / "gpu_results.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
