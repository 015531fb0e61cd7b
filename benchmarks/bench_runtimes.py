"""CPU runtimes side by side (issue 20): what `musiq score` runs by default, and why.

    PYTHONPATH=src python benchmarks/bench_runtimes.py [--rounds 5] [--huge]
        [--pyiqa-python VENV/bin/python]

1. **Model alone, one process, interleaved**: ``Scorer.logits`` on the tokens of one 1024x768
   JPEG for torch fp32 eager, torch bf16, onnxruntime fp32, OpenVINO fp32 and bf16: medians,
   ratio to torch fp32, largest logit change against torch fp32.
2. **End to end** (JPEG decode + preprocessing + model, 16 different 1024x768 JPEGs, each
   variant in its own process, variants interleaved in rounds): plain default
   (``musiq.load(ckpt)``, as ``musiq score``), default ``--precision bf16``, and torch fp32
   eager (``--backend torch``); same-run ratios; with ``--pyiqa-python`` pyiqa too, else the
   ratio to pyiqa is *derived* from the torch/pyiqa ratio recorded in docs/performance.md.
3. **Model load**: cold (empty runtime cache: conversion) and warm (cached), in fresh processes.
4. **Import time** of the CLI module, torch and openvino, in fresh processes.
5. **Where the time goes** (``--profile``): the network's FLOPs on that image, OpenVINO's own
   per-operation times in fp32 and bf16 split into matrix work (dense layers, convolutions,
   attention) and the rest, the rate the matrix work reaches, and the fastest end to end those
   rates allow (matrix work alone plus decode and tokens): the ceiling for any runtime here.
6. ``--huge``: peak RSS of the default path on one 6000x4000 JPEG (minutes).

Quote medians and same-run ratios: the machines this runs on are shared.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
from bench_cpu import make_image, worker  # noqa: E402

#: docs/performance.md run D: torch fp32 batched 1.58 images/s, pyiqa 0.892 (same run).
TORCH_VS_PYIQA = 1.77


def side_by_side(ckpt: Path, image: Path, rounds: int) -> None:
    import musiq
    from musiq.engine.runtimes import cpu_has_bf16
    variants = [("torch", "fp32"), ("torch", "bf16")]
    try:
        import onnxruntime  # noqa: F401
        variants.append(("onnxruntime", "fp32"))
    except ImportError:
        pass
    variants.append(("openvino", "fp32"))
    if cpu_has_bf16():
        variants.append(("openvino", "bf16"))
    scorers = {v: musiq.load(ckpt, device="cpu", backend=v[0], precision=v[1])
               for v in variants}
    tok = [scorers[variants[0]].tokens(image)]
    ref = scorers[("torch", "fp32")].logits(tok)
    times: dict = {v: [] for v in variants}
    for v, s in scorers.items():
        s.logits(tok)  # warm-up
    for _ in range(rounds):
        for v, s in scorers.items():
            t0 = time.perf_counter()
            s.logits(tok)
            times[v].append(time.perf_counter() - t0)
    base = statistics.median(times[("torch", "fp32")])
    print(f"\n### Model alone, 1024x768 ({len(tok[0])} tokens), {rounds} interleaved rounds, "
          f"load {os.getloadavg()[0]:.1f}\n")
    print("| runtime | precision | median s | vs torch fp32 | max \\|logit - torch fp32\\| |")
    print("| --- | --- | ---: | ---: | ---: |")
    for v, s in scorers.items():
        m = statistics.median(times[v])
        diff = float(np.abs(s.logits(tok) - ref).max())
        print(f"| {v[0]} | {s.precision} | {m:.3f} | {base / m:.2f}x | {diff:.1e} |")


#: OpenVINO CPU node types that do the network's matrix work; attention is a fused
#: ``Subgraph`` node in each block's ``attention`` scope (named after its SDPA in bf16, after
#: the transpose it starts from in fp32).
_MATRIX_NODES = ("FullyConnected", "Convolution")


def _is_matrix_work(node_type: str, node_name: str) -> bool:
    return (node_type in _MATRIX_NODES or "scaled_dot_product_attention" in node_name
            or (node_type == "Subgraph" and ".attention/" in node_name))


def profile(ckpt: Path, image: Path, rounds: int = 5) -> None:
    """FLOPs, OpenVINO's per-operation split and the ceiling they imply (see the docstring)."""
    import collections

    import openvino as ov
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import musiq
    from musiq.tokens.padded import pad_tokens
    from musiq.engine.openvino import convert
    s = musiq.load(ckpt, device="cpu", backend="torch")
    tok = [s.tokens(image)]  # warm: first-call imports and allocations
    t0 = time.perf_counter()
    for _ in range(rounds):
        tok = [s.tokens(image)]
    prep = (time.perf_counter() - t0) / rounds
    model = s.engine.model
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        s.logits(tok)
    a = model.variant
    seq = len(tok[0]) + 1  # the CLS token
    # q.k and weights.v (multiply-adds x 2); the last block attends from its first rows only
    from musiq.network.model import CLS_ROWS
    attention = (a.layers - 1) * 4 * seq * seq * a.hidden + 4 * CLS_ROWS * seq * a.hidden
    flops = fc.get_total_flops() + attention
    print(f"\n### Where the time goes: 1024x768, {len(tok[0])} tokens, load "
          f"{os.getloadavg()[0]:.1f}\n")
    print(f"network: {flops / 1e9:.1f} GFLOP (dense layers and convolutions "
          f"{fc.get_total_flops() / 1e9:.1f}, attention {attention / 1e9:.1f}); decode + "
          f"tokens {prep * 1000:.0f} ms\n")
    print("| OpenVINO | total ms | matrix work ms | its GFLOP/s | other ms | ceiling images/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    xml, weights = convert(model)
    core = ov.Core()
    ir = core.read_model(model=bytes(xml), weights=ov.Tensor(np.frombuffer(weights, np.uint8)))
    x = pad_tokens(tok)
    for hint in ("f32", "bf16"):
        config = {"INFERENCE_PRECISION_HINT": hint, "PERF_COUNT": True}
        request = core.compile_model(ir, "CPU", config).create_infer_request()
        request.infer([x])
        best: collections.Counter | None = None  # the fastest round: the rates it reached
        for _ in range(rounds):
            request.infer([x])
            split: collections.Counter = collections.Counter()
            for op in request.profiling_info:
                matrix = _is_matrix_work(op.node_type, op.node_name)
                split["matrix" if matrix else "other"] += op.real_time.total_seconds()
            if best is None or sum(split.values()) < sum(best.values()):
                best = split
        split = best
        total = split["matrix"] + split["other"]
        print(f"| {hint} | {total * 1000:.0f} | {split['matrix'] * 1000:.0f} | "
              f"{flops / split['matrix'] / 1e9:.0f} | {split['other'] * 1000:.0f} | "
              f"{1 / (split['matrix'] + prep):.2f} |")
    print(f"\nthe fastest of {rounds} rounds; ceiling: matrix work plus decode and tokens, as "
          "if every other operation took no time.")


def end_to_end(ckpt: Path, files: list[str], rounds: int, pyiqa: str | None) -> None:
    py = sys.executable
    variants = [("torch fp32 eager (--backend torch)", "fp32", "torch"),
                ("default (musiq score)", "fp32", "auto"),
                ("default --precision bf16", "bf16", "auto")]
    runs: dict = {}
    for _ in range(rounds):
        for label, prec, backend in variants:
            r = _ours(py, files, ckpt, prec, backend)
            if r:
                runs.setdefault(label, []).append(r)
        if pyiqa:
            r = worker(pyiqa, "pyiqa", files, str(ckpt))
            if r:
                runs.setdefault("pyiqa", []).append(r)
    ips = {k: statistics.median(r["images"] / r["seconds"] for r in v) for k, v in runs.items()}
    base = ips.get("torch fp32 eager (--backend torch)")
    print(f"\n### End to end, {len(files)} JPEGs of 1024x768, {rounds} rounds, medians\n")
    print("| variant | runs on | images/s | vs torch fp32 | vs pyiqa | load s (warm) |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for k, v in ips.items():
        r0 = runs[k][0]
        if "pyiqa" in ips:
            vs = f"{v / ips['pyiqa']:.2f}x"
        else:
            vs = f"{v / base * TORCH_VS_PYIQA:.2f}x (derived)" if base else "—"
        on = f"{r0.get('backend', 'pyiqa')} {r0.get('ran_precision', 'fp32')}"
        load = statistics.median(r.get("load_seconds", float("nan")) for r in runs[k])
        print(f"| {k} | {on} | {v:.3f} | {v / base:.2f}x | {vs} | {load:.2f} |")
    if "pyiqa" not in ips:
        print(f"\n(derived) = ratio to torch fp32 in this run x {TORCH_VS_PYIQA} (torch fp32 "
              "vs pyiqa, same run, docs/performance.md run D); pyiqa not run here.")


def _ours(py: str, files: list[str], ckpt: Path, prec: str, backend: str,
          warmup: bool = True) -> dict | None:
    import json
    cmd = [py, str(HERE / "bench_worker.py"), "ours-batched", "--files", *files, "--ckpt",
           str(ckpt), "--precision", prec, "--backend", backend]
    if not warmup:
        cmd.append("--no-warmup")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        print(f"  {backend} {prec} failed: {r.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def loads_and_imports(ckpt: Path) -> None:
    code = ("import time, sys; t = time.perf_counter(); import musiq; "
            f"musiq.load({str(ckpt)!r}, device='cpu'); print(time.perf_counter() - t)")
    with tempfile.TemporaryDirectory() as cold:
        env = {**os.environ, "MUSIQ_RUNTIME_CACHE": cold}
        out = []
        for _ in range(2):  # cold, then warm
            r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               env=env, timeout=1800)
            out.append(float(r.stdout.strip().splitlines()[-1]))
    print(f"\n### Model load in a fresh process (import musiq + musiq.load), "
          f"load {os.getloadavg()[0]:.1f}\n")
    print(f"cold (converts, then caches): {out[0]:.1f} s; warm (cached): {out[1]:.2f} s")
    print("\n| import (fresh process, median of 3) | s |\n| --- | ---: |")
    for mod in ("musiq.cli.main", "torch", "openvino", "numpy"):
        ts = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", f"import {mod}"], check=True)
            ts.append(time.perf_counter() - t0)
        print(f"| {mod} | {statistics.median(ts):.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--e2e-rounds", type=int, default=3)
    ap.add_argument("--pyiqa-python", help="python of a venv with pyiqa")
    ap.add_argument("--huge", action="store_true", help="also 6000x4000 peak RSS (minutes)")
    ap.add_argument("--profile", action="store_true",
                    help="also FLOPs and OpenVINO's per-operation split (the ceiling)")
    ap.add_argument("--skip", nargs="*", default=[], choices=("model", "e2e", "load"))
    ap.add_argument("--workdir", type=Path,
                    help="reuse this folder's checkpoint, images and runtime cache")
    a = ap.parse_args()
    tmp = a.workdir or Path(tempfile.mkdtemp(prefix="musiq-bench-rt-"))
    tmp.mkdir(parents=True, exist_ok=True)
    print(f"work folder {tmp}", flush=True)
    os.environ["MUSIQ_RUNTIME_CACHE"] = str(tmp / "cache")
    ckpt = tmp / "ckpt.npz"
    if not ckpt.is_file():
        subprocess.run([sys.executable, str(HERE.parent / "tests" / "checkpoints.py"),
                        str(ckpt), "--classes", "1"], check=True)
    files = []
    for i in range(16):
        files.append(str(tmp / f"img{i:02d}.jpg"))
        if not Path(files[-1]).is_file():
            make_image(Path(files[-1]), 1024, 768, seed=i)
    print(f"cores {os.cpu_count()}, load {os.getloadavg()[0]:.1f}", flush=True)
    if "model" not in a.skip:  # also fills the runtime cache for the timed loads below
        side_by_side(ckpt, Path(files[0]), a.rounds)
    if a.profile:
        profile(ckpt, Path(files[0]))
    if "e2e" not in a.skip:
        end_to_end(ckpt, files, a.e2e_rounds, a.pyiqa_python)
    if "load" not in a.skip:
        loads_and_imports(ckpt)
    if a.huge:
        big = tmp / "big.jpg"
        make_image(big, 6000, 4000)
        r = _ours(sys.executable, [str(big)], ckpt, "fp32", "auto", warmup=False)
        if r:
            print(f"\n6000x4000, default path: {r['seconds']:.0f} s, peak RSS "
                  f"{r['peak_rss_gb']:.2f} GB")


if __name__ == "__main__":
    main()
