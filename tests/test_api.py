"""The Python API: every input form, batching, images the original cannot score."""
from __future__ import annotations

import io

import numpy as np
import pytest
import simplejpeg
from PIL import Image

import musiq
from conftest import GOLDEN

IMAGES = GOLDEN / "images"


def test_input_forms_agree(scorer_1class):
    path = IMAGES / "chelsea_451x300_q75.jpg"
    data = path.read_bytes()
    rgb = musiq.load_image(path)
    by_path = scorer_1class.score(path)
    assert scorer_1class.score(str(path)) == by_path
    assert scorer_1class.score(data) == by_path
    assert scorer_1class.score(rgb) == by_path
    png = IMAGES / "astronaut_512x512.png"
    assert scorer_1class.score(Image.open(png)) == scorer_1class.score(png)


def test_batched_equals_one_by_one(scorer_10class):
    names = ["coffee_1024x768_q90.jpg", "chelsea_20x30_q90.jpg", "rocket_517x333_q85.jpg",
             "coffee_30x20_q90.jpg", "grace_hopper.jpg"]
    files = [IMAGES / n for n in names]
    single = [scorer_10class.predict(f) for f in files]
    batched = list(scorer_10class.predict_many(files, batch_size=5))
    assert [p.source for p in batched] == [str(f) for f in files]
    for a, b in zip(single, batched):
        assert abs(a.score - b.score) <= 1e-5
        assert np.abs(np.array(a.logits) - b.logits).max() <= 1e-5


def test_bad_image_does_not_lose_others(scorer_1class, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    good = IMAGES / "coffee_30x20_q90.jpg"
    preds = list(scorer_1class.predict_many([good, bad, empty, tmp_path / "nope.jpg", good]))
    assert [p.ok for p in preds] == [True, False, False, False, True]
    assert preds[0].score == preds[4].score == scorer_1class.score(good)
    assert "not a supported format" in preds[1].error
    assert "empty" in preds[2].error
    assert "no such file" in preds[3].error
    assert scorer_1class.score_many([good, bad], errors="none")[1] is None
    with pytest.raises(musiq.ImageError, match=r"notes\.jpg: not an image"):
        scorer_1class.score_many([good, bad])


def test_grey_is_replicated(scorer_1class):
    grey = musiq.load_image(IMAGES / "camera_512x512_gray_q90.jpg")
    assert grey.shape == (512, 512, 3)
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    # libjpeg's own grey->RGB conversion with TF's IFAST settings gives the same pixels.
    data = (IMAGES / "camera_512x512_gray_q90.jpg").read_bytes()
    ref = simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=True, fastupsample=False)
    np.testing.assert_array_equal(grey, ref)
    s = scorer_1class.score(IMAGES / "camera_512x512_gray_q90.jpg")
    assert s == scorer_1class.score(grey) and np.isfinite(s)


def test_rgba_drops_alpha(scorer_1class):
    img = Image.open(IMAGES / "logo_500x500_rgba.png")
    assert img.mode == "RGBA"
    rgb = np.asarray(img)[..., :3]
    assert scorer_1class.score(IMAGES / "logo_500x500_rgba.png") == scorer_1class.score(
        np.ascontiguousarray(rgb))


def test_thin_image_scores(scorer_1class):
    pred = scorer_1class.predict(IMAGES / "coffee_1000x2_q90.jpg")
    assert np.isfinite(pred.score)
    tokens = scorer_1class.tokens(IMAGES / "coffee_1000x2_q90.jpg")
    assert [(s.height, s.width) for s in tokens.scales] == [(1, 224), (1, 384), (2, 1000)]


def test_sixteen_bit_png_is_high_byte(tmp_path, scorer_1class):
    rng = np.random.default_rng(3)
    g16 = rng.integers(0, 65536, (40, 50), dtype=np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    rgb = musiq.load_image(tmp_path / "g16.png")
    np.testing.assert_array_equal(rgb[..., 0], (g16 >> 8).astype(np.uint8))
    assert scorer_1class.score(tmp_path / "g16.png") == scorer_1class.score(rgb)


def test_exif_orientation_only_on_request(tmp_path):
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:, :10] = 255
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 CW to display
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif, quality=95)
    data = buf.getvalue()
    assert musiq.load_image(data).shape == (20, 40, 3)
    turned = musiq.load_image(data, exif_transpose=True)
    assert turned.shape == (40, 20, 3)
    assert turned[:10].mean() > 200 and turned[-10:].mean() < 50


def test_wrong_array_type():
    with pytest.raises(musiq.ImageError, match="uint8"):
        musiq.load_image(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(musiq.ImageError, match="unsupported input type"):
        musiq.load_image(12)
