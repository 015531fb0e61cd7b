"""The padded forward and the ONNX export, against the packed forward and the golden logits."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import GOLDEN, golden_records
from musiq import PackedBatch, load_image, preprocess

SCORED = [r["file"] for r in golden_records() if "logits" in r["1class"]]


DIGESTS = json.loads((GOLDEN / "tokens.json").read_text())


def golden_tokens(name: str) -> np.ndarray:
    """The original's (T, 3075) tokens of a golden image: ours, checked to be the same bits
    (their SHA-256 is the original's, tests/golden/tokens.json)."""
    tokens = np.ascontiguousarray(
        preprocess(load_image(GOLDEN / "images" / name)).to_original_layout(), np.float32)
    assert hashlib.sha256(tokens.tobytes()).hexdigest() == \
        DIGESTS[name.rsplit(".", 1)[0]]["sha256"]
    return tokens


def pad_batch(arrays: list[np.ndarray]) -> np.ndarray:
    """Stack (T_i, 3075) arrays into (B, max T, 3075), padding rows all zero."""
    out = np.zeros((len(arrays), max(len(a) for a in arrays), 3075), np.float32)
    for i, a in enumerate(arrays):
        out[i, :len(a)] = a
    return out


SMALL = ["chelsea_20x30_q90.jpg", "chelsea_451x300_q75.jpg", "astronaut_333x517_q85.jpg"]


@pytest.mark.parametrize("name", SMALL)
def test_padded_equals_packed(name, scorer_10class):
    tok = preprocess(load_image(GOLDEN / "images" / name))
    model = scorer_10class.model
    with torch.inference_mode():
        packed = model(PackedBatch.from_tokens([tok])).numpy()
        padded = model.forward_padded(torch.from_numpy(tok.to_original_layout())[None]).numpy()
    assert np.abs(padded - packed).max() <= 1e-5


def test_padded_batch_and_garbage_padding(scorer_10class):
    """Images of different lengths in one padded batch; padding rows holding anything (NaN,
    out-of-range positions) change nothing."""
    arrays = [golden_tokens(n) for n in SMALL]
    model = scorer_10class.model
    x = pad_batch(arrays)
    with torch.inference_mode():
        alone = np.concatenate([model.forward_padded(torch.from_numpy(a)[None]).numpy()
                                for a in arrays])
        together = model.forward_padded(torch.from_numpy(x)).numpy()
        pad = x[..., -1] == 0
        assert pad.sum() > 100
        rng = np.random.default_rng(1)
        x[pad, :3072] = rng.normal(0, 50, (int(pad.sum()), 3072))
        x[pad, 3072] = 1e6
        x[pad, 3073] = -7
        x[0, np.flatnonzero(pad[0])[:3], 5] = np.nan
        garbage = model.forward_padded(torch.from_numpy(x)).numpy()
    assert np.abs(together - alone).max() <= 1e-5
    assert np.isfinite(garbage).all()
    assert np.abs(garbage - together).max() <= 1e-5
    assert np.abs(alone[0] - alone[1]).max() > 1e-3  # the images do differ


@pytest.fixture(scope="module")
def onnx_files(ckpt_1class, ckpt_10class, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    import musiq
    from musiq.engine.export import export_onnx
    out = {}
    root = tmp_path_factory.mktemp("onnx")
    for classes, ckpt in ((1, ckpt_1class), (10, ckpt_10class)):
        report = export_onnx(musiq.load(ckpt).model, root / f"musiq_{classes}.onnx")
        assert report.num_classes == classes
        assert report.max_abs_diff is not None and report.max_abs_diff <= 1e-5
        out[classes] = report.path
    return out


@pytest.mark.parametrize("classes", [1, 10])
def test_onnx_matches_golden_logits(classes, onnx_files, golden):
    from musiq.engine.export import OnnxRuntimeModel
    session = OnnxRuntimeModel(onnx_files[classes])
    worst = 0.0
    for name in SCORED:
        got = session.logits(golden_tokens(name)[None])[0]
        expected = np.array(golden[name][f"{classes}class"]["logits"], np.float32)
        assert got.shape == (classes,)
        worst = max(worst, float(np.abs(got - expected).max()))
    assert worst <= 1e-5, worst


def test_onnx_padded_batch(onnx_files, golden):
    from musiq.engine.export import OnnxRuntimeModel
    session = OnnxRuntimeModel(onnx_files[10])
    x = pad_batch([golden_tokens(n) for n in SMALL])
    got = session.logits(x)
    assert got.shape == (3, 10)
    for row, name in zip(got, SMALL):
        assert np.abs(row - golden[name]["10class"]["logits"]).max() <= 1e-5


def test_onnx_file_names_and_dynamic_axes(onnx_files):
    import onnx
    m = onnx.load(str(onnx_files[1]), load_external_data=False)
    (inp,), (out,) = m.graph.input, m.graph.output
    assert inp.name == "tokens" and out.name == "logits"
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims[2] == 3075 and isinstance(dims[0], str) and isinstance(dims[1], str)


def musiq_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "musiq.cli.main", *args],
                          capture_output=True, text=True, timeout=600)


def test_cli_tokens_equal_original(tmp_path):
    name = "chelsea_451x300_q75.jpg"
    out = tmp_path / "x.npy"
    r = musiq_cli("tokens", str(GOLDEN / "images" / name), "-o", str(out))
    assert r.returncode == 0, r.stderr
    got = np.load(out)
    assert got.dtype == np.float32
    assert np.abs(got - golden_tokens(name)).max() <= 1e-6


def test_cli_tokens_bad_image(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    r = musiq_cli("tokens", str(bad), "-o", str(tmp_path / "x.npy"))
    assert r.returncode == 1
    assert "bad.jpg" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.npy").exists()


def test_cli_export_runs_the_file(ckpt_1class, tmp_path, golden):
    pytest.importorskip("onnxruntime")
    from musiq.engine.export import OnnxRuntimeModel
    out = tmp_path / "m.onnx"
    r = musiq_cli("export", "--model", str(ckpt_1class), "--format", "onnx", "--output",
                  str(out))
    assert r.returncode == 0, r.stderr
    assert "largest logit difference" in r.stdout
    diff = float(r.stdout.rsplit("difference", 1)[1].split()[0])
    assert diff <= 1e-5
    name = "chelsea_20x30_q90.jpg"
    got = OnnxRuntimeModel(out).logits(golden_tokens(name)[None])[0, 0]
    assert abs(got - golden[name]["1class"]["logits"][0]) <= 1e-5


def test_cli_export_errors(ckpt_1class, tmp_path):
    r = musiq_cli("export", "--model", str(ckpt_1class), "-o", str(tmp_path / "no" / "m.onnx"))
    assert r.returncode == 2
    assert "does not exist" in r.stderr and "Traceback" not in r.stderr
    r = musiq_cli("export", "--model", str(tmp_path / "missing.npz"), "-o",
                  str(tmp_path / "m.onnx"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
