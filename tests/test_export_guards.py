"""``musiq export`` never passes with non-finite numbers and never leaves a cut file at the
output (issue 18 item 12)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import musiq
from musiq import export as export_mod
from musiq.engine.export import export_onnx
from musiq.network.factory import create_model

from conftest import ROOT

pytest.importorskip("onnxruntime")


def test_nan_weights_are_refused_and_the_old_file_kept(ckpt_1class, tmp_path):
    with np.load(ckpt_1class) as z:
        arrays = {k: z[k].copy() for k in z.files}
    key = sorted(k for k in arrays if "encoderblock_0" in k)[0]
    arrays[key].flat[:4] = np.nan
    bad = tmp_path / "nan.npz"
    np.savez(bad, **arrays)
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous file")
    r = subprocess.run([sys.executable, "-m", "musiq.cli.main", "export", "--model", str(bad),
                        "-o", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "non-finite weights" in r.stderr and "Traceback" not in r.stderr
    assert out.read_bytes() == b"previous file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "nan.npz"]


def test_non_finite_logits_fail_the_check(ckpt_1class, tmp_path):
    model = create_model(str(ckpt_1class))
    with torch.no_grad():
        model.head.weight.fill_(3e38)  # finite weights, logits overflow to inf
    out = tmp_path / "m.onnx"
    with pytest.raises(musiq.MusiqError, match="non-finite logits"):
        export_onnx(model, out)
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_export_leaves_no_cut_file(ckpt_1class, tmp_path, monkeypatch):
    model = create_model(str(ckpt_1class))
    out = tmp_path / "m.onnx"

    def killed(module, args, f, **kw):  # half the file written, then the process is stopped
        with open(f, "wb") as fh:
            fh.write(b"\x08\x07" * 1000)
        raise KeyboardInterrupt

    monkeypatch.setattr(export_mod.torch.onnx, "export", killed)
    with pytest.raises(KeyboardInterrupt):
        export_onnx(model, out)
    assert list(tmp_path.iterdir()) == []
