"""CPU benchmark: images/s and peak RSS of our batched path, our one-image path and pyiqa's
MUSIQ, on the same JPEG files, plus achieved GFLOP/s against a matmul roofline measured in
the same run. Prints a Markdown table (and writes JSON with --json-out).

    .venv/bin/python benchmarks/bench_cpu.py --pyiqa-python /work/bench-venv/bin/python

Each measurement runs in its own process (bench_worker.py) so its peak RSS is its own; the
variants of one size run back to back in rounds, and the load average is recorded, because
the machines this runs on are shared. Quote medians and ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

# (width, height, images per measurement, rounds, run pyiqa)
SIZES = {
    "512x384": (512, 384, 16, 2, True),
    "1024x768": (1024, 768, 8, 2, True),
    "1920x1080": (1920, 1080, 3, 1, True),
    "4000x3000": (4000, 3000, 1, 1, True),
    "6000x4000": (6000, 4000, 1, 1, False),  # pyiqa: minutes and > 8 GB; skipped
}
# Multiply-accumulates per valid patch in the stem (convs + embedding) and per token per
# encoder layer (q/k/v, out, MLP); attention adds 2 * n^2 * 384 per layer.
STEM_MACS = (16 * 16 * 64 * 147 + 8 * 8 * 256 * 64 + 8 * 8 * 64 * 64 + 8 * 8 * 64 * 576
             + 8 * 8 * 256 * 64 + 16384 * 384)
LAYER_MACS = 384 * 1152 + 384 * 384 + 2 * 384 * 1152


def model_gflop(valid_tokens: int) -> float:
    """FLOPs (2 per multiply-accumulate) of one image with this many valid tokens."""
    n = valid_tokens + 1
    return 2 * (valid_tokens * STEM_MACS + 14 * (n * LAYER_MACS + 2 * n * n * 384)) / 1e9


def matmul_gflops(size: int = 2048, repeats: int = 7) -> float:
    import torch
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * size ** 3 / statistics.median(times) / 1e9


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
        return True
    except ImportError:
        return False


def make_image(path: Path, w: int, h: int, seed: int = 0) -> None:
    """A photo-like JPEG: smooth colour fields plus grain (q90)."""
    import simplejpeg
    from PIL import Image
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(h // 16, 2), max(w // 16, 2), 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC)).astype(np.int16)
    img = np.clip(img + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
    path.write_bytes(simplejpeg.encode_jpeg(img, quality=90))


def worker(python: str, variant: str, files: list[str], ckpt: str, precision: str = "fp32",
           warmup: bool = True, timeout: float = 3600) -> dict | None:
    cmd = [python, str(HERE / "bench_worker.py"), variant, "--files", *files, "--ckpt", ckpt,
           "--precision", precision]
    if not warmup:
        cmd.append("--no-warmup")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        print(f"  {variant} failed: {r.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pyiqa-python", help="python of a venv with pyiqa (omit to skip pyiqa)")
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--no-ort", action="store_true", help="skip the onnxruntime backend")
    ap.add_argument("--rounds", type=int, help="override the rounds per size")
    ap.add_argument("--json-out", type=Path)
    ap.add_argument("--render", type=Path, help="print the table of a --json-out file")
    a = ap.parse_args()
    if a.render:
        saved = json.loads(a.render.read_text())
        return report(saved["rows"], saved["roofline_gflops"], None)

    import musiq
    tmp = Path(tempfile.mkdtemp(prefix="musiq-bench-"))
    ckpt = tmp / "ckpt.npz"
    subprocess.run([sys.executable, str(ROOT / "tests" / "checkpoints.py"),
                    str(ckpt), "--classes", "1"], check=True)
    ort = not a.no_ort and _has_onnxruntime()
    if ort:  # export once (cached), so that the timed loads are the cached path
        os.environ["MUSIQ_ONNX_CACHE"] = str(tmp / "onnx")
        musiq.load(ckpt, device="cpu", backend="onnxruntime")
    roof = [matmul_gflops()]
    print(f"matmul roofline (fp32, 2048^3, {os.cpu_count()} cores): {roof[0]:.0f} GFLOP/s; "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    py = sys.executable
    rows = []
    for name in a.sizes:
        w, h, n, rounds, with_pyiqa = SIZES[name]
        rounds = a.rounds or rounds
        path = tmp / f"img_{name}.jpg"
        make_image(path, w, h)
        tokens = len(musiq.tokens.preprocess(musiq.load_image(path)))
        gflop = model_gflop(tokens)
        files = [str(path)] * n
        huge = w * h > 5_000_000
        runs: dict[str, list[dict]] = {}
        variants = [("ours-batched", "fp32", py)]
        if not huge:  # one image per pass anyway; fp32 only, to keep the run short
            variants.append(("ours-single", "fp32", py))
        if not a.no_bf16 and not huge:
            variants.append(("ours-batched", "bf16", py))
        if ort and not huge:
            variants.append(("ours-ort", "fp32", py))
        if a.pyiqa_python and with_pyiqa:
            variants.append(("pyiqa", "fp32", a.pyiqa_python))
        for _ in range(rounds):
            for variant, prec, python in variants:
                r = worker(python, variant, files, str(ckpt), prec, warmup=not huge)
                if r:
                    runs.setdefault(f"{variant} {prec}", []).append(r)
                    print(f"  {name} {variant} {prec}: {r['images'] / r['seconds']:.3f} img/s,"
                          f" {r['peak_rss_gb']:.2f} GB, load {r['load_before']:.1f}", flush=True)
        roof.append(matmul_gflops())
        print(f"  matmul now {roof[-1]:.0f} GFLOP/s", flush=True)
        for key, rs in runs.items():
            ips = statistics.median(r["images"] / r["seconds"] for r in rs)
            rows.append({"size": name, "tokens": tokens, "gflop": gflop, "variant": key,
                         "images_per_s": ips, "s_per_image": 1 / ips,
                         "gflops": gflop * ips, "peak_rss_gb": max(r["peak_rss_gb"] for r in rs),
                         "load": statistics.median(r["load_before"] for r in rs),
                         "load_seconds": statistics.median(r.get("load_seconds", float("nan"))
                                                           for r in rs),
                         # the rooflines measured just before and after this size
                         "roofline_gflops": (roof[-2] + roof[-1]) / 2})
        report(rows, roof, a.json_out)


def report(rows: list[dict], roof: list[float], json_out: Path | None) -> None:
    """Print the table so far (and write it as JSON): runs can be long on a shared machine."""
    roofline = statistics.median(roof)
    print(f"\nmatmul roofline this run: median {roofline:.0f} GFLOP/s "
          f"(min {min(roof):.0f}, max {max(roof):.0f}); cores {os.cpu_count()}")
    print("\n| image | valid tokens | GFLOP | variant | s/image | images/s | vs pyiqa | "
          "GFLOP/s | roofline GFLOP/s | % roofline | peak RSS | model load s | load avg |")
    print("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
          "| ---: |")
    for r in rows:
        base = next((x for x in rows if x["size"] == r["size"] and x["variant"].startswith(
            "pyiqa")), None)
        vs = f"{r['images_per_s'] / base['images_per_s']:.2f}x" if base else "—"
        r["vs_pyiqa"] = r["images_per_s"] / base["images_per_s"] if base else None
        r["roofline_fraction"] = r["gflops"] / r.get("roofline_gflops", roofline)
        print(f"| {r['size']} | {r['tokens']} | {r['gflop']:.1f} | {r['variant']} | "
              f"{r['s_per_image']:.2f} | {r['images_per_s']:.3f} | {vs} | {r['gflops']:.0f} | "
              f"{r.get('roofline_gflops', roofline):.0f} | "
              f"{100 * r['roofline_fraction']:.0f} % | {r['peak_rss_gb']:.2f} GB | "
              f"{r.get('load_seconds', float('nan')):.2f} | "
              f"{r['load']:.1f} |")
    print("\npyiqa's GFLOP/s use our FLOP count (it also computes padding tokens: more work); "
          "roofline GFLOP/s: the mean of the matmuls measured just before and after that size.")
    if json_out:
        json_out.write_text(json.dumps({"roofline_gflops": roof, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
