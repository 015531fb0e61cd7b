"""One measurement in its own process (so peak RSS is its own): prints one JSON line.

    python bench_worker.py ours-batched|ours-single|ours-ort|pyiqa --files F... --ckpt C [--precision P]
        [--backend auto|torch|openvino]

``ours-*`` runs with this checkout's ``musiq``; ``pyiqa`` must run under a Python that has
pyiqa (``benchmarks/setup_pyiqa.sh``). Times cover decode + preprocess + model (end to end)
after one warm-up image; the model load is timed apart (``load_seconds``).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path


def peak_rss_gb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the
    parent through fork and exec, so a child would report its parent's peak."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_ours(variant: str, files: list[str], ckpt: str, precision: str, batch: int,
             warmup: bool, backend: str = "auto") -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import musiq
    t_load = time.perf_counter()
    if variant == "ours-ort":  # the onnxruntime backend (exported file cached beforehand)
        s = musiq.load(ckpt, device="cpu", backend="onnxruntime")
    else:
        s = musiq.load(ckpt, device="cpu", precision=precision, backend=backend)
    load_s = time.perf_counter() - t_load
    if warmup:
        s.predict(files[0])  # first-call allocations
    t0 = time.perf_counter()
    if variant in ("ours-batched", "ours-ort"):
        preds = list(s.predict_many(files, batch_size=batch))
    else:
        preds = [s.predict(f) for f in files]
    dt = time.perf_counter() - t0
    assert all(p.ok for p in preds), [p.error for p in preds if not p.ok]
    return {"seconds": dt, "images": len(files), "score0": preds[0].score,
            "load_seconds": load_s, "backend": s.backend, "ran_precision": s.precision}


def _stub_torchvision_ops() -> None:
    # The registry's torchvision wheel is a CUDA build whose compiled ops fail to load on CPU
    # torch; torchvision then needs these two schemas to exist. MUSIQ uses no torchvision op.
    import torch
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    globals()["_keep_lib"] = lib


def run_pyiqa(files: list[str], warmup: bool) -> dict:
    import warnings
    warnings.filterwarnings("ignore")
    _stub_torchvision_ops()
    import pyiqa
    import torch
    metric = pyiqa.create_metric("musiq", pretrained=False, device="cpu")
    with torch.inference_mode():
        if warmup:
            metric(files[0])
        t0 = time.perf_counter()
        scores = [float(metric(f)) for f in files]
    return {"seconds": time.perf_counter() - t0, "images": len(files), "score0": scores[0]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("variant", choices=("ours-batched", "ours-single", "ours-ort", "pyiqa"))
    ap.add_argument("--files", nargs="+", required=True)
    ap.add_argument("--ckpt")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--no-warmup", action="store_true", help="for huge images")
    ap.add_argument("--backend", default="auto", help="ours-*: auto (default), torch, openvino")
    a = ap.parse_args()
    load0 = os.getloadavg()[0]
    if a.variant == "pyiqa":
        out = run_pyiqa(a.files, not a.no_warmup)
    else:
        out = run_ours(a.variant, a.files, a.ckpt, a.precision, a.batch_size, not a.no_warmup,
                       a.backend)
    out.update(variant=a.variant, precision=a.precision, peak_rss_gb=peak_rss_gb(),
               load_before=load0, load_after=os.getloadavg()[0])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
