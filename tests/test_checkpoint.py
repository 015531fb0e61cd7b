"""Checkpoint loading: variants detected from shapes, every failure a clear error."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

import musiq
from conftest import GOLDEN, write_checkpoint
from musiq.network.checkpoint import PREFIX, load_checkpoint, parameter_shapes, read_headers

IMAGE = GOLDEN / "images" / "coffee_30x20_q90.jpg"


def _arrays(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_manifest_matches_expected_shapes(ckpt_1class):
    """Our expected structure is exactly the official manifest."""
    lines = [ln.split() for ln in (GOLDEN / "manifest.txt").read_text().splitlines()
             if ln and not ln.startswith("#")]
    manifest = {k[len(PREFIX):]: eval("".join(rest[:-1])) for k, *rest in lines}
    assert manifest == parameter_shapes(1, 3)
    headers = read_headers(ckpt_1class)
    assert {k: h.shape for k, h in headers.items()} == manifest


@pytest.mark.parametrize("args,classes,scales,kind", [
    (("--classes", "1"), 1, 3, "mos"),
    (("--classes", "10"), 10, 3, "distribution"),
    (("--classes", "1000"), 1000, 3, "imagenet"),
    (("--classes", "1", "--single-scale"), 1, 1, "mos"),
    (("--classes", "10", "--single-scale"), 10, 1, "distribution"),
])
def test_variant_detected(tmp_path, args, classes, scales, kind):
    path = write_checkpoint(tmp_path / "c.npz", *args)
    _, variant = load_checkpoint(path)
    assert (variant.num_classes, variant.num_scales, variant.kind) == (classes, scales, kind)
    scorer = musiq.load(path)
    pred = scorer.predict(IMAGE)
    assert len(pred.logits) == classes
    if kind == "distribution":
        assert len(pred.distribution) == 10 and abs(sum(pred.distribution) - 1) < 1e-9
        assert 1.0 <= pred.score <= 10.0 and pred.std > 0
    if kind == "imagenet":
        assert len(pred.top5) == 5
        probs = [t["probability"] for t in pred.top5]
        assert probs == sorted(probs, reverse=True) and pred.score == probs[0]
        assert pred.top5[0]["class"] == int(np.argmax(pred.logits))
    if scales == 1:
        tokens = scorer.tokens(IMAGE)
        assert set(tokens.scale_ids.tolist()) == {0} and len(tokens.scales) == 1


def test_optimizer_state_is_ignored(tmp_path, ckpt_1class):
    """A realistic file (bf16 |V2 optimizer state beside the parameters) loads the same."""
    full = write_checkpoint(tmp_path / "full.npz", "--classes", "1", "--optimizer-state")
    a, _ = load_checkpoint(full)
    b, _ = load_checkpoint(ckpt_1class)
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_scores_change_with_weights(tmp_path, scorer_1class):
    other = musiq.load(write_checkpoint(tmp_path / "s.npz", "--classes", "1", "--seed", "7"))
    assert abs(other.score(IMAGE) - scorer_1class.score(IMAGE)) > 1e-3
    params, variant = load_checkpoint(tmp_path / "s.npz")
    params["head/bias"] = params["head/bias"] + 1.0
    net = musiq.Musiq(variant).load_official(params)
    shifted = musiq.Scorer(net, variant)
    assert shifted.score(IMAGE) == pytest.approx(other.score(IMAGE) + 1.0, abs=1e-5)


def test_official_names_round_trip(tmp_path, ckpt_10class, scorer_10class):
    params, _ = load_checkpoint(ckpt_10class)
    back = scorer_10class.model.official_params()
    assert back.keys() == params.keys()
    assert all(np.array_equal(back[k], params[k]) for k in params)
    out = musiq.save_checkpoint(tmp_path / "again.npz", back)
    assert musiq.load(out).score(IMAGE) == scorer_10class.score(IMAGE)


def test_wrong_shape_names_key(tmp_path, ckpt_1class):
    arrays = _arrays(ckpt_1class)
    key = PREFIX + "Transformer/encoderblock_3/MlpBlock_3/Dense_0/kernel"
    arrays[key] = np.zeros((384, 1000), np.float32)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(musiq.CheckpointError, match=r"bad\.npz.*encoderblock_3/MlpBlock_3/"
                       r"Dense_0/kernel.*\(384, 1000\).*expected \(384, 1152\)"):
        musiq.load(tmp_path / "bad.npz")


def test_missing_key_names_key(tmp_path, ckpt_1class):
    arrays = _arrays(ckpt_1class)
    del arrays[PREFIX + "block1/unit1/gn2/bias"]
    np.savez(tmp_path / "missing.npz", **arrays)
    with pytest.raises(musiq.CheckpointError,
                       match=r"missing\.npz: missing key opt/target/block1/unit1/gn2/bias"):
        musiq.load(tmp_path / "missing.npz")


def test_truncated_file(tmp_path, ckpt_1class):
    data = ckpt_1class.read_bytes()
    (tmp_path / "half.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(musiq.CheckpointError, match=r"half\.npz.*truncated"):
        musiq.load(tmp_path / "half.npz")


def test_pickled_object_refused(tmp_path, ckpt_1class):
    arrays = _arrays(ckpt_1class)
    arrays[PREFIX + "head/bias"] = np.array([{"evil": 1}], dtype=object)
    np.savez(tmp_path / "pickle.npz", **arrays)
    with pytest.raises(musiq.CheckpointError, match=r"pickle\.npz.*head/bias.*pickle"):
        musiq.load(tmp_path / "pickle.npz")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(musiq.CheckpointError, match=r"text\.npz"):
        musiq.load(tmp_path / "text.npz")
    np.savez(tmp_path / "other.npz", weights=np.zeros(3, np.float32))
    with pytest.raises(musiq.CheckpointError, match=r"other\.npz.*not a MUSIQ checkpoint"):
        musiq.load(tmp_path / "other.npz")


def test_giant_header_is_refused_without_reading(tmp_path, ckpt_1class):
    """A header claiming a huge shape is rejected from the header alone."""
    arrays = _arrays(ckpt_1class)
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 384)})
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as zf:
        for k, v in arrays.items():
            name = k + ".npy"
            if k == PREFIX + "embedding/kernel":
                zf.writestr(name, buf.getvalue())
            else:
                b = io.BytesIO()
                np.save(b, v)
                zf.writestr(name, b.getvalue())
    with pytest.raises(musiq.CheckpointError, match=r"embedding/kernel.*\(1000000000000, 384\)"):
        musiq.load(tmp_path / "huge.npz")


def test_name_must_match_file(tmp_path, ckpt_10class, monkeypatch):
    (tmp_path / "koniq_ckpt.npz").write_bytes(ckpt_10class.read_bytes())
    with pytest.raises(musiq.MusiqError, match="not a 'koniq' checkpoint"):
        musiq.load("koniq", checkpoint_dir=tmp_path)
    # As a path it is just a file: its variant comes from its shapes.
    assert musiq.load(tmp_path / "koniq_ckpt.npz").kind == "distribution"
    monkeypatch.setenv("MUSIQ_CHECKPOINT_DIR", str(tmp_path))
    (tmp_path / "ava_ckpt.npz").symlink_to(ckpt_10class)
    assert musiq.load("ava").info.name == "ava"


def test_missing_named_model_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MUSIQ_CHECKPOINT_DIR", raising=False)
    monkeypatch.delenv("MUSIQ_LOCAL_DIR", raising=False)  # ./musiq_original of tmp_path
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(musiq.CheckpointNotFound) as e:
        musiq.load("spaq-single")
    msg = str(e.value)
    assert "https://storage.googleapis.com/gresearch/musiq/full_size_single_scale/spaq_ckpt.npz" in msg
    assert "musiq_original/checkpoints/full_size_single_scale/spaq_ckpt.npz" in msg


def test_unknown_name_lists_models():
    with pytest.raises(musiq.MusiqError, match="unknown model 'kadid'.*koniq.*ava"):
        musiq.load("kadid")
