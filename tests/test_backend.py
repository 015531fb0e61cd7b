"""Runtimes through the Scorer API, against the golden logits: the default (``auto``:
OpenVINO on CPU) and its on-disk cache, bf16 with an fp32 head, the fallbacks, and the
opt-in onnxruntime backend."""
from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys

import numpy as np
import pytest

from conftest import GOLDEN, golden_records

SCORED = [r["file"] for r in golden_records() if "logits" in r["1class"]]


@pytest.fixture(autouse=True)
def default_runtime(monkeypatch):
    """This module tests the runtimes as users get them: no MUSIQ_BACKEND (conftest sets it)."""
    monkeypatch.delenv("MUSIQ_BACKEND", raising=False)


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    pytest.importorskip("onnxruntime")
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


# -- the default runtime: auto = OpenVINO on CPU (issue 20) ---------------------------------

def _golden_check(s, golden, classes, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    files = [GOLDEN / "images" / n for n in SCORED] + [bad]
    preds = list(s.predict_many(files, batch_size=4))
    assert [p.source for p in preds] == [str(f) for f in files]
    worst = 0.0
    for p, name in zip(preds, SCORED):
        assert p.ok, p.error
        worst = max(worst, np.abs(np.array(p.logits)
                                  - golden[name][f"{classes}class"]["logits"]).max())
    assert worst <= 1e-5
    assert not preds[-1].ok and "broken.jpg" in preds[-1].source
    return preds


@pytest.mark.parametrize("classes", [1, 10])
def test_default_cpu_runtime_is_openvino_and_exact(classes, ckpt_1class, ckpt_10class, golden,
                                                   tmp_path):
    import musiq
    s = musiq.load(ckpt_1class if classes == 1 else ckpt_10class, device="cpu")
    assert s.backend == "openvino" and s.runtime is not None
    assert s.runtime.path.is_file() and "musiq" in str(s.runtime.path)  # the user cache
    _golden_check(s, golden, classes, tmp_path)


def test_converted_stem_has_plain_group_norms_and_the_same_numbers(ckpt_1class):
    """The OpenVINO graph computes the stem's GroupNorms as plain ops (faster there); the
    model itself keeps its ``nn.GroupNorm``s, and the two stems agree to float32 rounding."""
    import torch
    from torch import nn

    import musiq
    from musiq.engine.export import sample_tokens
    from musiq.engine.openvino import _features_module
    model = musiq.create_model(ckpt_1class)
    converted = _features_module(model).inner.stem
    assert not any(isinstance(m, nn.GroupNorm) for m in converted.modules())
    assert sum(isinstance(m, nn.GroupNorm) for m in model.modules()) == 5
    patches = torch.from_numpy(sample_tokens(batch=1, tokens=40)[0, :, :3072].copy())
    with torch.no_grad():
        want, got = model.stem(patches), converted(patches)
    assert want.shape == got.shape == (40, model.variant.hidden)
    assert float((want - got).abs().max()) <= 1e-5 * max(1.0, float(want.abs().max()))


_NO_TORCH = """
import sys
import musiq
from musiq.cli.main import main
s = musiq.load(sys.argv[1], device="auto")
assert s.backend == "openvino", s.backend
print(s.score(sys.argv[2]))
assert "torch" not in sys.modules, "the API imported torch"
sys.argv = ["musiq", "score", sys.argv[2], "--model", sys.argv[1], "--format", "json"]
try:
    main()
finally:
    print("TORCH" if "torch" in sys.modules else "NO TORCH")
"""


def test_warm_cpu_run_never_imports_torch(ckpt_1class, golden):
    """With the conversion cached, ``musiq.load`` + scoring and ``musiq score`` on a CPU run
    in OpenVINO without importing torch (1-2 s of a fresh process); the score is exact."""
    import os
    import subprocess
    import sys

    import musiq
    image = GOLDEN / "images" / "coffee_600x400_q90.jpg"
    musiq.load(ckpt_1class, device="cpu", backend="openvino")  # converts and caches
    env = {**os.environ, "MUSIQ_BACKEND": "auto"}
    r = subprocess.run([sys.executable, "-c", _NO_TORCH, str(ckpt_1class), str(image)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[-1] == "NO TORCH", r.stdout
    want = golden[image.name]["1class"]["logits"][0]
    assert abs(float(lines[0]) - want) <= 1e-5
    assert "converted" not in r.stderr


def test_cache_warm_load_converts_nothing(ckpt_1class, capfd):
    import musiq
    a = musiq.load(ckpt_1class, device="cpu").runtime.path
    capfd.readouterr()
    mtime = a.stat().st_mtime_ns
    b = musiq.load(ckpt_1class, device="cpu").runtime.path
    assert a == b and b.stat().st_mtime_ns == mtime
    assert "converted" not in capfd.readouterr().err
    assert not [p for p in a.parent.iterdir() if "partial" in p.name]


def _payload_intact(path) -> bool:
    """Whether a runtime cache file's payload matches the SHA-256 in its header (every byte
    checked; a rebuilt file need not repeat the old bytes: OpenVINO's node names vary)."""
    from musiq.engine.runtime_cache import MAGIC
    data = path.read_bytes()
    head = len(MAGIC) + 8
    (n,) = struct.unpack("<Q", data[len(MAGIC):head])
    header = json.loads(data[head:head + n])
    return hashlib.sha256(data[head + n:]).hexdigest() == header["sha256"]


@pytest.mark.parametrize("which", ["compiled", "compiled and converted"])
def test_corrupt_cache_file_is_rebuilt_not_used(which, ckpt_1class, golden, capfd, tmp_path):
    import musiq
    runtime = musiq.load(ckpt_1class, device="cpu").runtime
    paths = [runtime.path] + ([runtime.ir_path] if "converted" in which else [])
    flipped = []
    for path in paths:
        data = bytearray(path.read_bytes())
        i = len(data) - 1000
        data[i] ^= 0xFF  # one byte flipped: the header still reads
        path.write_bytes(bytes(data))
        flipped.append((path, i, data[i]))
    capfd.readouterr()
    s = musiq.load(ckpt_1class, device="cpu")
    # Only a broken converted network is converted again; a broken compiled model is
    # compiled again from the converted one. Either way the files are whole again.
    assert ("converted" in capfd.readouterr().err) == ("converted" in which)
    assert s.runtime.path == runtime.path
    for path, _, _ in flipped:  # rewritten whole: the payload matches its digest again
        assert _payload_intact(path), path
    name = SCORED[0]
    lo = s.predict(GOLDEN / "images" / name).logits
    assert np.abs(np.array(lo) - golden[name]["1class"]["logits"]).max() <= 1e-5


def test_cache_file_stale_truncated_or_foreign_is_rejected(tmp_path):
    from musiq.engine.runtime_cache import CacheKey, cached, read_parts, write_parts
    key = CacheKey("ab" * 32, "0.1.0", "openvino", "2026.4", "fp32")
    path = tmp_path / key.filename()
    write_parts(path, key, [b"<xml/>", b"\x01\x02\x03" * 100])
    assert [bytes(p) for p in read_parts(path, key)] == [b"<xml/>", b"\x01\x02\x03" * 100]
    for other in (CacheKey("cd" * 32, "0.1.0", "openvino", "2026.4", "fp32"),
                  CacheKey("ab" * 32, "0.2.0", "openvino", "2026.4", "fp32"),
                  CacheKey("ab" * 32, "0.1.0", "openvino", "2025.1", "fp32"),
                  CacheKey("ab" * 32, "0.1.0", "openvino", "2026.4", "bf16")):
        assert other.filename() != key.filename()
        assert read_parts(path, other) is None  # stale: another key under this name
    whole = path.read_bytes()
    path.write_bytes(whole[:-10])
    assert read_parts(path, key) is None  # truncated
    path.write_bytes(b"not a cache file at all")
    assert read_parts(path, key) is None
    # a stale file under the key's name is rebuilt and replaced
    write_parts(path, CacheKey("cd" * 32, "0.1.0", "openvino", "2026.4", "fp32"), [b"old"])
    parts, where, built = cached(key, lambda: [b"new", b"w"], tmp_path)
    assert built and where == path and [bytes(p) for p in parts] == [b"new", b"w"]
    parts, _, built = cached(key, lambda: pytest.fail("rebuilt a good file"), tmp_path)
    assert not built and [bytes(p) for p in parts] == [b"new", b"w"]


def test_auto_falls_back_to_torch_with_one_line(ckpt_1class, monkeypatch, capfd):
    import musiq
    from musiq import runtime_openvino
    monkeypatch.setattr(runtime_openvino, "available",
                        lambda: "OpenVINO is not installed (ImportError: test)")
    capfd.readouterr()
    s = musiq.load(ckpt_1class, device="cpu")
    err = capfd.readouterr().err.strip().splitlines()
    assert s.backend == "torch" and s.runtime is None
    assert len(err) == 1 and "not installed" in err[0] and "running torch" in err[0]
    with pytest.raises(musiq.MusiqError, match="backend must be one of"):
        musiq.load(ckpt_1class, backend="tensorrt")
    with pytest.raises(musiq.MusiqError, match="fp32 or bf16"):
        musiq.load(ckpt_1class, device="cpu", backend="openvino", precision="fp16")
    assert musiq.load(ckpt_1class, device="cpu", backend="torch").backend == "torch"


def test_model_changed_in_memory_never_runs_a_cached_conversion(ckpt_1class, capfd):
    """A Scorer made from a model object (fine-tuning, Ray workers) may hold weights that
    differ from its source file: auto runs torch, silently; openvino refuses."""
    import musiq
    net = musiq.create_model(ckpt_1class)
    capfd.readouterr()
    assert musiq.Scorer(net, device="cpu").backend == "torch"
    assert capfd.readouterr().err == ""
    with pytest.raises(musiq.MusiqError, match="loaded from a file"):
        musiq.Scorer(musiq.create_model(ckpt_1class), device="cpu", backend="openvino")


def test_bf16_without_cpu_support_runs_fp32(ckpt_1class, monkeypatch, capfd, golden):
    import musiq
    from musiq import backend
    monkeypatch.setattr(backend, "cpu_has_bf16", lambda: False)
    capfd.readouterr()
    s = musiq.load(ckpt_1class, device="cpu", precision="bf16")
    assert "no bf16 instructions: running fp32" in capfd.readouterr().err
    assert s.precision == "fp32" and s.backend == "openvino"
    name = SCORED[0]
    lo = s.predict(GOLDEN / "images" / name).logits
    assert np.abs(np.array(lo) - golden[name]["1class"]["logits"]).max() <= 1e-5


def test_score_tensor_stays_on_torch(ckpt_1class):
    import torch

    import musiq
    s = musiq.load(ckpt_1class, device="cpu")
    x = torch.rand(1, 3, 64, 48, requires_grad=True)
    y = s.score_tensor(x)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.fixture(scope="module")
def mos_checkpoint(ckpt_1class, tmp_path_factory):
    """The 1-class test checkpoint with its head scaled so that scores span ~45-95, as the
    official 0-100 MOS models' do (the random head gives 0.5-1.6)."""
    import musiq
    params, _ = musiq.load_checkpoint(ckpt_1class)
    params["head/kernel"] = params["head/kernel"] * 40.0
    params["head/bias"] = params["head/bias"] * 40.0 + 25.0
    return musiq.save_checkpoint(tmp_path_factory.mktemp("mos") / "mos.npz", params)


MOS_IMAGES = [n for n in SCORED if "coffee_1000x2" not in n]


@pytest.mark.parametrize("backend", ["torch", "openvino"])
def test_bf16_scores_are_not_quantised(backend, mos_checkpoint):
    """Before issue 20 the torch bf16 path ran the head in bf16: scores above 64 moved in
    0.5 steps, 32-64 in 0.25 steps, and images tied."""
    import musiq
    from musiq.engine.runtimes import cpu_has_bf16
    if backend == "openvino" and not cpu_has_bf16():
        pytest.skip("this CPU has no bf16: the openvino bf16 path is not taken")
    ref = musiq.load(mos_checkpoint, device="cpu", backend="torch")
    s = musiq.load(mos_checkpoint, device="cpu", backend=backend, precision="bf16")
    assert s.precision == "bf16"
    files = [GOLDEN / "images" / n for n in MOS_IMAGES]
    scores = [p.score for p in s.predict_many(files)]
    exact = [p.score for p in ref.predict_many(files)]
    assert min(exact) > 32 and max(exact) - min(exact) > 10  # the scale the test is about
    on_grid = sum(float(v * 4).is_integer() for v in scores)
    assert on_grid <= 2, scores
    # No ties beyond those the exact scores have: the progressive and baseline copies of one
    # photo (exact scores 8e-6 apart) may tie, as identical inputs should.
    assert len(set(scores)) >= len({round(e, 3) for e in exact})
    assert max(abs(a - b) for a, b in zip(scores, exact)) < 3.0  # bf16, not garbage


def test_long_images_run_on_torch(ckpt_1class, golden):
    """Above ``max_tokens`` the runtime's n^2 attention memory would grow past torch's flash
    kernel: such images run on torch, with the same scores."""
    import musiq
    s = musiq.load(ckpt_1class, device="cpu")
    s.runtime.max_tokens = 10
    s.runtime.logits = lambda tokens: pytest.fail("a long image reached the runtime")
    name = SCORED[0]
    lo = s.predict(GOLDEN / "images" / name).logits
    assert np.abs(np.array(lo) - golden[name]["1class"]["logits"]).max() <= 1e-5


def test_cli_score_default_converts_once(ckpt_10class, golden, tmp_path):
    """``musiq score`` with no flag runs the fast runtime on CPU; the first use prints the
    conversion time in one line, a warm cache prints nothing; scores equal the original."""
    import os
    name = SCORED[0]
    env = {**os.environ, "MUSIQ_RUNTIME_CACHE": str(tmp_path / "cache")}
    errs = []
    for _ in range(2):
        r = subprocess.run([sys.executable, "-m", "musiq.cli.main", "score", "--device", "cpu",
                            "--model", str(ckpt_10class), "--format", "json",
                            str(GOLDEN / "images" / name)],
                           capture_output=True, text=True, timeout=900, env=env)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert abs(out[0]["score"] - golden[name]["10class"]["score"]) <= 1e-5
        errs.append([ln for ln in r.stderr.splitlines() if "converted" in ln])
    assert len(errs[0]) == 1 and "OpenVINO" in errs[0][0] and errs[1] == []
    # One converted network and its compiled form (what a warm load reads).
    kept = sorted(p.name.rsplit("-", 1)[0] for p in (tmp_path / "cache").iterdir())
    assert kept == ["openvino", "openvino-compiled"]
