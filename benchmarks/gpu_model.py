"""The model on a CUDA GPU, tokens already on the device: exactness and images/s.

Run on a CUDA machine from the repository root (``PYTHONPATH=src:tests`` if musiq is not
installed there):

    python benchmarks/gpu_model.py [OUT.txt]

Prints, with the golden weights (tests/checkpoints.py) on three synthetic images:
max |logit - CPU fp32| with TF32 convolutions allowed (cuDNN's default) and forbidden (musiq's
fp32), under bf16/fp16 autocast; then images/s of the forward pass at 1024x768 for fp32 and
bf16, eager and with the stem compiled, and a CUDA profile of one bf16 batch. Results of the
run on the lent H200: benchmarks/results/gpu_h200_2026-11-26.txt.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

import musiq
from musiq.network.model import PackedBatch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from checkpoints import random_params  # noqa: E402  (the golden weights)


def synthetic(h: int, w: int, seed: int) -> np.ndarray:
    """Blocky noise with fine grain: JPEG-like content of a given size."""
    r = np.random.default_rng(seed)
    a = r.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3)).astype(np.float32)
    a = np.repeat(np.repeat(a, 8, 0), 8, 1)[:h, :w] + r.integers(-20, 21, (h, w, 3))
    return np.clip(a, 0, 255).astype(np.uint8)


def rate(net: musiq.Musiq, batch: PackedBatch, dtype: torch.dtype | None,
         seconds: float = 4.0) -> float:
    with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
        net(batch)
        net(batch)
        torch.cuda.synchronize()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            net(batch)
            n += len(batch.lengths)
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


@torch.inference_mode()
def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    lines: list[str] = []

    def say(msg: str) -> None:
        print(msg, flush=True)
        lines.append(msg)
        if out:
            out.write_text("\n".join(lines) + "\n")

    say(f"# {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    net = musiq.create_model(arch=musiq.Architecture(1, 3)).load_official(random_params(1))
    pp = musiq.Preprocessor()
    tokens = [pp.tokens_of_pixels(synthetic(h, w, i))
              for i, (h, w) in enumerate([(768, 1024), (333, 517), (600, 450)])]
    ref = net(PackedBatch.from_tokens(tokens))[:, 0]
    net.cuda()
    net.stem_chunk = 8192
    batch = PackedBatch.from_tokens(tokens).to("cuda")
    for tf32 in (True, False):
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        got = net(batch)[:, 0].cpu()
        say(f"fp32, TF32 {'allowed' if tf32 else 'off'}: max |logit - cpu| "
            f"{(got - ref).abs().max().item():.2e}")
    for dtype in (torch.bfloat16, torch.float16):
        with torch.autocast("cuda", dtype=dtype):
            got = net(batch)[:, 0].float().cpu()
        say(f"{dtype} autocast: max |logit - cpu| {(got - ref).abs().max().item():.2e}")
    big = PackedBatch.from_tokens([tokens[0]] * 128).to("cuda")
    for dtype in (None, torch.bfloat16):
        say(f"eager {dtype or 'fp32'} batch 128, 1024x768: {rate(net, big, dtype):.0f} img/s")
    with torch.autocast("cuda", dtype=torch.bfloat16), torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        net(big)
        torch.cuda.synchronize()
    say(prof.key_averages().table(sort_by="cuda_time_total", row_limit=14))
    net.stem = torch.compile(net.stem, dynamic=True)
    t0 = time.perf_counter()
    got = net(batch)[:, 0].cpu()
    say(f"compile {time.perf_counter() - t0:.1f} s; compiled fp32 max |logit - cpu| "
        f"{(got - ref).abs().max().item():.2e}")
    for dtype in (None, torch.bfloat16):
        say(f"compiled stem {dtype or 'fp32'} batch 128: {rate(net, big, dtype):.0f} img/s")


if __name__ == "__main__":
    main()
