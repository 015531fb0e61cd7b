"""``explain``: attention rollout without s x s matrices (issue 18 item 13), outputs checked
before any work and progress on a terminal (issue 19 items 7 and 12)."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import GOLDEN, ROOT
import musiq.explain as explain_mod
from musiq.explain import explain

PHOTO = GOLDEN / "images" / "chelsea_451x300_q75.jpg"


def full_product_rollout(scorer, tokens) -> np.ndarray:
    """The reference: the full s x s rollout matrices multiplied through (Abnar & Zuidema),
    CLS row over every token."""
    n = len(tokens) + 1
    state = {"r": torch.eye(n, dtype=torch.float64)}

    def hook(module, args):
        x = args[0].float()
        b, s, d = x.shape
        qkv = torch.nn.functional.linear(x, module.qkv.weight.float(), module.qkv.bias.float())
        h = module.heads
        q, k, _ = qkv.view(b, s, 3, h, d // h).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // h), dim=-1)
        a = a[0].mean(0).double() + torch.eye(s, dtype=torch.float64)
        a = a / a.sum(-1, keepdim=True)
        state["r"] = a @ state["r"]

    handles = [b.attention.register_forward_pre_hook(hook) for b in scorer.model.blocks]
    try:
        scorer.logits([tokens])
    finally:
        for h in handles:
            h.remove()
    return state["r"][0, 1:].numpy()


@pytest.mark.parametrize("block", [explain_mod.ROLLOUT_BLOCK, 6 * 40])
def test_cls_row_propagation_equals_the_full_product(scorer_1class, monkeypatch, block):
    monkeypatch.setattr(explain_mod, "ROLLOUT_BLOCK", block)  # 240: a few rows per slice
    scorer = scorer_1class
    rgb = scorer.preprocessor.pixels(PHOTO)
    tokens = scorer.preprocessor.tokens_of_pixels(rgb, "p")
    ref = full_product_rollout(scorer, tokens)
    native = tokens.scales[-1]
    ref_native = ref[tokens.scale_ids == native.scale_id].reshape(native.grid_h, native.grid_w)
    got = np.array(explain_mod.rollout(scorer, tokens, 1))
    assert got.shape == ref_native.shape
    # identical math; only the float32 rounding of q @ k^T over row slices differs (~1e-8)
    np.testing.assert_allclose(got, ref_native, rtol=1e-6, atol=1e-12)
    assert 0 < got.sum() <= 1 + 1e-9
    cells = np.array(explain_mod.rollout(scorer, tokens, 3))  # 3 x 3 patch cells
    pad = np.zeros((-(-got.shape[0] // 3) * 3, -(-got.shape[1] // 3) * 3))
    pad[:got.shape[0], :got.shape[1]] = got
    np.testing.assert_allclose(cells, pad.reshape(cells.shape[0], 3, cells.shape[1], 3)
                               .sum(axis=(1, 3)), rtol=1e-12)


def test_rollout_memory_is_linear_in_tokens(ckpt_1class, tmp_path):
    # 1920 x 1024: about 2,200 tokens. The full product held several s x s matrices
    # (heads x s x s float32 attention, s x s float64 products: over 250 MB); the CLS row
    # needs the blocks' inputs (14 x s x 384 float32, 47 MB) and one 16 MiB slice.
    img = tmp_path / "wide.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (1024, 1920, 3), np.uint8)).save(img)
    code = textwrap.dedent(f"""
        import resource, torch
        torch.set_num_threads(2)
        import musiq
        from musiq.explain import rollout
        scorer = musiq.load({str(ckpt_1class)!r}, device="cpu")
        rgb = scorer.preprocessor.pixels({str(img)!r})
        tokens = scorer.preprocessor.tokens_of_pixels(rgb, "w")
        scorer.logits([tokens])
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        grid = rollout(scorer, tokens, 4)
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024
        print(len(tokens), grown)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=900, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    n, grown_mb = map(int, r.stdout.split())
    assert n > 2000
    assert grown_mb < 150, grown_mb


def test_missing_output_folder_is_refused_before_any_pass(ckpt_1class, tmp_path):
    missing = tmp_path / "missing"
    r = subprocess.run([sys.executable, "-m", "musiq.cli.main", "explain", str(PHOTO),
                        "--model", str(ckpt_1class), "-o", str(missing / "h.png")],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 2
    assert f"--output {missing / 'h.png'}: folder {missing} does not exist" in r.stderr
    assert "partial" not in r.stderr and not missing.exists()


def test_occlusion_progress_on_a_terminal(ckpt_1class, tmp_path):
    import pty
    crop = tmp_path / "crop.png"
    rgb = np.asarray(Image.open(PHOTO).convert("RGB"))
    Image.fromarray(rgb[100:170, 150:250]).save(crop)  # 4 x 3 patches: 12 passes
    import fcntl
    import struct
    import termios
    main, sub = pty.openpty()
    fcntl.ioctl(sub, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # tqdm's width
    try:
        p = subprocess.run([sys.executable, "-m", "musiq.cli.main", "explain", str(crop),
                            "--model", str(ckpt_1class), "--cell", "1", "-f", "json"],
                           stdout=subprocess.PIPE, stderr=sub, cwd=ROOT, timeout=600)
        os.close(sub)
        sub = None
        err = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:
                break
            if not chunk:
                break
            err += chunk
    finally:
        if sub is not None:
            os.close(sub)
        os.close(main)
    assert p.returncode == 0, err.decode(errors="replace")
    text = err.decode(errors="replace")
    assert "occlusion" in text and "12/12" in text
