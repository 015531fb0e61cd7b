"""The torch preprocessing backend: golden tokens and logits, mixed-size batches, the pixel
pipeline through shared memory, differentiable scores, and the CLI's --preprocess."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import musiq
from conftest import GOLDEN, golden_records
from musiq import load_image, preprocess
from musiq.tokens.pipeline import iter_prepared
from musiq.tokens.preprocess import MULTI_SCALE, SINGLE_SCALE, PreprocessConfig
from musiq.tokens.preprocess_torch import num_tokens, tokenize, tokenize_one
from musiq.tokens.preprocessor import Preprocessor

DIGESTS = json.loads((GOLDEN / "tokens.json").read_text())
TOKENS = [r["file"] for r in golden_records() if r["file"].rsplit(".", 1)[0] in DIGESTS]
SCORED = [r["file"] for r in golden_records() if "logits" in r["1class"]]


@pytest.mark.parametrize("name", TOKENS)
def test_torch_tokens_equal_original(name):
    """Bit-identical: the SHA-256 of the original's (T, 3075) float32 tokens."""
    want = DIGESTS[name.rsplit(".", 1)[0]]
    got = tokenize_one(load_image(GOLDEN / "images" / name), device="cpu").to_original_layout()
    got = np.ascontiguousarray(got, np.float32)
    assert list(got.shape) == want["shape"]
    assert hashlib.sha256(got.tobytes()).hexdigest() == want["sha256"]


@pytest.fixture(scope="module")
def torch_1class(ckpt_1class):
    return musiq.load(ckpt_1class, device="cpu", preprocess="torch")


@pytest.mark.parametrize("name", SCORED)
def test_torch_backend_logits_equal_original(name, golden, torch_1class):
    assert torch_1class.preprocess == "torch"
    rec = golden[name]["1class"]
    pred = torch_1class.predict(GOLDEN / "images" / name)
    assert np.abs(np.array(pred.logits) - rec["logits"]).max() <= 1e-5
    assert abs(pred.score - rec["score"]) <= 1e-5


def _random_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


@settings(max_examples=12, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 90), st.integers(1, 90)), min_size=2, max_size=4),
       st.sampled_from([MULTI_SCALE, SINGLE_SCALE,
                        PreprocessConfig(longer_side_lengths=(32, 64),
                                         max_seq_len_from_original_res=3)]),
       st.integers(0, 2 ** 31))
def test_mixed_size_batch_equals_one_image(sizes, config, seed):
    rng = np.random.default_rng(seed)
    images = [_random_image(rng, h, w) for h, w in sizes]
    packed = tokenize(images, config)
    assert packed.lengths == [num_tokens(h, w, config) for h, w in sizes]
    for i, rgb in enumerate(images):
        ref = preprocess(rgb, config)
        got = packed.image(i)
        assert np.array_equal(got.patches, ref.patches)
        assert np.array_equal(got.positions, ref.positions)
        assert np.array_equal(got.scale_ids, ref.scale_ids)
        assert got.scales == ref.scales


def test_torch_backend_refuses_non_images():
    with pytest.raises(musiq.ImageError, match="uint8"):
        tokenize_one(np.zeros((4, 4, 3), np.float32), source="x.png")
    with pytest.raises(musiq.ImageError, match="no pixels"):
        tokenize([torch.zeros((0, 4, 3), dtype=torch.uint8)], sources=["empty.png"])


def test_options_validate_preprocess():
    with pytest.raises(musiq.MusiqError, match="preprocess"):
        musiq.ScorerOptions(preprocess="jax")
    with pytest.raises(ValueError, match="backend"):
        Preprocessor(backend="jax")


def test_auto_is_numpy_on_cpu(scorer_1class):
    assert scorer_1class.preprocess == "numpy"


# -- differentiable scores -------------------------------------------------------------------

@pytest.fixture(scope="module")
def single_scorer(ckpt_10class_single):
    return musiq.load(ckpt_10class_single, device="cpu")


def test_score_tensor_equals_score(single_scorer, torch_1class):
    rng = np.random.default_rng(0)
    images = [_random_image(rng, 40, 56), _random_image(rng, 33, 20)]
    for scorer in (single_scorer, torch_1class):
        x = [torch.from_numpy(im).permute(2, 0, 1).float() / 255 for im in images]
        got = scorer.score_tensor(x)
        assert got.shape == (2,)
        for g, im in zip(got.tolist(), images):
            assert abs(g - scorer.score(im)) <= 1e-4
        batch = torch.stack([x[0], x[0]])
        assert torch.allclose(scorer.score_tensor(batch), got[:1].expand(2), atol=1e-5)


def test_score_tensor_gradient_matches_finite_difference(ckpt_10class_single):
    scorer = musiq.load(ckpt_10class_single, device="cpu")
    scorer.model.double()
    rng = np.random.default_rng(1)
    x = torch.from_numpy(_random_image(rng, 40, 40)).permute(2, 0, 1).double() / 255
    x.requires_grad_(True)
    s = scorer.score_tensor(x[None])[0]
    (grad,) = torch.autograd.grad(s, x)
    assert grad.abs().max() > 0
    v = torch.from_numpy(rng.standard_normal(x.shape))
    eps = 1e-7  # float64; larger steps cross ReLU/max-pool kinks of the random weights
    # (With gradients on: the model's inference-time weight cache is float32.)
    f = lambda t: scorer.score_tensor(t[None])[0].item()  # noqa: E731
    fd = (f(x.detach() + eps * v) - f(x.detach() - eps * v)) / (2 * eps)
    analytic = float((grad * v).sum())
    assert abs(fd - analytic) <= 1e-6 * max(1.0, abs(analytic))


def test_score_tensor_with_frozen_model_after_inference(ckpt_1class_single):
    scorer = musiq.load(ckpt_1class_single, device="cpu")
    rgb = _random_image(np.random.default_rng(2), 24, 24)
    scorer.score(rgb)  # fills the weight cache under inference_mode
    for p in scorer.model.parameters():
        p.requires_grad_(False)
    x = (torch.from_numpy(rgb).permute(2, 0, 1).float() / 255).requires_grad_(True)
    for _ in range(3):  # a few steps of gradient ascent on the image
        s = scorer.score_tensor(x[None])[0]
        (g,) = torch.autograd.grad(s, x)
        with torch.no_grad():
            x += 1e-3 * g.sign()
            x.clamp_(0, 1)
    assert g.abs().sum() > 0


# -- pixels through shared memory ------------------------------------------------------------

def _shm_entries() -> set[str]:
    return {n for n in os.listdir("/dev/shm") if n.startswith("musiq_")}


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm")
def test_pixels_through_shared_memory_with_bad_image_and_worker_crash(tmp_path):
    from crashing import CrashingPreprocessor
    names = ["chelsea_20x30_q90.jpg", "coffee_30x20_q90.jpg", "astronaut_333x517_q85.jpg"]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0garbage")
    crash = tmp_path / "crash.jpg"
    crash.write_bytes((GOLDEN / "images" / names[0]).read_bytes())
    inputs = [GOLDEN / "images" / names[0], bad, GOLDEN / "images" / names[1], crash,
              GOLDEN / "images" / names[2]]
    before = _shm_entries()
    pp = CrashingPreprocessor()
    out = list(iter_prepared(inputs, pp, workers=2, pixels=True))
    assert [o.index for o in out] == list(range(5))
    assert out[1].error and out[1].pixels is None
    assert "worker process died" in out[3].error
    for i in (0, 2, 4):
        assert out[i].error is None
        assert np.array_equal(out[i].pixels, load_image(inputs[i]))
        assert out[i].num_tokens == num_tokens(*out[i].pixels.shape[:2])
    assert _shm_entries() - before == set()


def test_scorer_torch_backend_with_workers_equals_numpy(ckpt_1class_single, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0garbage")
    images = [GOLDEN / "images" / "chelsea_20x30_q90.jpg", bad,
              GOLDEN / "images" / "chelsea_451x300_q75.jpg",
              GOLDEN / "images" / "coffee_30x20_q90.jpg"]
    before = _shm_entries() if os.path.isdir("/dev/shm") else set()
    a = musiq.load(ckpt_1class_single, device="cpu", preprocess="numpy")
    b = musiq.load(ckpt_1class_single, device="cpu", preprocess="torch")
    pa = list(a.predict_many(images, batch_size=2))
    pb = list(b.predict_many(images, batch_size=2, workers=2))
    assert [p.error is None for p in pb] == [True, False, True, True]
    assert pb[1].source == str(bad) and pb[1].error
    for x, y in zip(pa, pb):
        assert x.error == y.error
        if x.score is not None:
            assert abs(x.score - y.score) <= 1e-5
    if os.path.isdir("/dev/shm"):
        assert _shm_entries() - before == set()


# -- the CLI ---------------------------------------------------------------------------------

def _cli(*args):
    env = dict(os.environ)
    env.pop("MUSIQ_CHECKPOINT_DIR", None)
    return subprocess.run([sys.executable, "-m", "musiq.cli.main", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


def test_cli_preprocess_torch(ckpt_1class_single, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0garbage")
    images = [GOLDEN / "images" / "chelsea_20x30_q90.jpg", bad,
              GOLDEN / "images" / "coffee_30x20_q90.jpg"]
    results = {}
    for backend in ("numpy", "torch"):
        r = _cli("score", "-m", ckpt_1class_single, "--device", "cpu", "--preprocess", backend,
                 "--format", "json", "-q", *images)
        assert "Traceback" not in r.stderr
        results[backend] = json.loads(r.stdout)
    rows = {b: (v["results"] if isinstance(v, dict) else v) for b, v in results.items()}
    assert len(rows["torch"]) == 3
    for x, y in zip(rows["numpy"], rows["torch"]):
        assert x["path"] == y["path"]
        assert (x["error"] is None) == (y["error"] is None)
        if x["score"] is not None:
            assert abs(x["score"] - y["score"]) <= 1e-5
    assert rows["torch"][1]["error"]
    r = _cli("score", "-m", ckpt_1class_single, "--preprocess", "jax", images[0])
    assert r.returncode != 0 and "Traceback" not in r.stderr and "preprocess" in r.stderr
