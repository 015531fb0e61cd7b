"""The onnxruntime backend through the Scorer API, against the golden logits."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import GOLDEN, golden_records

pytest.importorskip("onnxruntime")

SCORED = [r["file"] for r in golden_records() if "logits" in r["1class"]]


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx_cache")


@pytest.mark.parametrize("classes", [1, 10])
def test_backend_matches_golden(classes, ckpt_1class, ckpt_10class, onnx_cache, golden,
                                monkeypatch, tmp_path):
    import musiq
    monkeypatch.setenv("MUSIQ_ONNX_CACHE", str(onnx_cache))
    s = musiq.load(ckpt_1class if classes == 1 else ckpt_10class, backend="onnxruntime")
    assert s.runtime is not None and s.runtime.path.parent == onnx_cache
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    files = [GOLDEN / "images" / n for n in SCORED] + [bad]
    # predict_many batches images of different lengths: the padded path
    preds = list(s.predict_many(files, batch_size=4))
    assert [p.source for p in preds] == [str(f) for f in files]
    for p, name in zip(preds, SCORED):
        rec = golden[name][f"{classes}class"]
        assert p.ok, p.error
        assert np.abs(np.array(p.logits) - rec["logits"]).max() <= 1e-5, name
    assert not preds[-1].ok and "broken.jpg" in preds[-1].source  # fails alone, named
    alone = s.predict(files[0])
    assert abs(alone.score - preds[0].score) <= 1e-5


def test_backend_cache_reused(ckpt_1class, onnx_cache, monkeypatch):
    import musiq
    monkeypatch.setenv("MUSIQ_ONNX_CACHE", str(onnx_cache))
    a = musiq.load(ckpt_1class, backend="onnxruntime").runtime.path
    mtime = a.stat().st_mtime_ns
    b = musiq.load(ckpt_1class, backend="onnxruntime").runtime.path
    assert a == b and b.stat().st_mtime_ns == mtime
    assert not list(onnx_cache.glob("*.tmp"))


def test_backend_refuses_bf16(ckpt_1class, onnx_cache, monkeypatch):
    import musiq
    monkeypatch.setenv("MUSIQ_ONNX_CACHE", str(onnx_cache))
    with pytest.raises(musiq.MusiqError, match="fp32"):
        musiq.load(ckpt_1class, backend="onnxruntime", precision="bf16")
    with pytest.raises(musiq.MusiqError, match="backend must be one of"):
        musiq.load(ckpt_1class, backend="tensorrt")


def test_cli_score_backend(ckpt_1class, onnx_cache, golden):
    import os
    name = SCORED[0]
    env = {**os.environ, "MUSIQ_ONNX_CACHE": str(onnx_cache)}
    r = subprocess.run([sys.executable, "-m", "musiq.cli.main", "score", "--backend",
                        "onnxruntime", "--model", str(ckpt_1class), "--format", "json",
                        str(GOLDEN / "images" / name)],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert abs(out[0]["score"] - golden[name]["1class"]["score"]) <= 1e-5
    r = subprocess.run([sys.executable, "-m", "musiq.cli.main", "score", "--backend",
                        "onnxruntime", "--precision", "bf16", "--model", str(ckpt_1class),
                        str(GOLDEN / "images" / name)],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 2 and "fp32" in r.stderr and "Traceback" not in r.stderr
