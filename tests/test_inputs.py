"""Every input kind of docs/inputs.md: what it decodes to, or the clear error it gets, via the
API, a batch and the CLI. The corpus is generated in tests/corpus.py."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import simplejpeg
from PIL import Image, ImageFile, ImageOps

from corpus import (bad_cases, exif_jpeg, good_cases, header_only_png, mpo_jpeg, pil_bytes,
                    smooth_rgb)
from musiq import ImageError, load_image, preprocess
from musiq.decoding.decode import decode_bytes

GOOD = good_cases()
BAD = bad_cases()


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    for case in GOOD + BAD:
        (d / case.name).write_bytes(case.data)
    return d


@pytest.mark.parametrize("case", GOOD, ids=[c.name for c in GOOD])
def test_good_input_decodes(case, corpus_dir):
    a = load_image(corpus_dir / case.name)
    case.expect(a)
    assert np.array_equal(load_image(case.data), a)  # bytes in, same pixels out
    tok = preprocess(a)
    assert len(tok) >= 3 and np.isfinite(tok.patches).all()


@pytest.mark.parametrize("case", BAD, ids=[c.name for c in BAD])
def test_bad_input_is_a_clear_error(case, corpus_dir):
    path = corpus_dir / case.name
    t0 = time.perf_counter()
    with pytest.raises(ImageError) as e:
        load_image(path)
    assert time.perf_counter() - t0 < 2.0  # refused quickly: nothing is decoded in vain
    assert e.value.source == str(path)
    assert str(e.value).startswith(f"{path}: ")
    assert re.search(case.error, e.value.reason), e.value.reason


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "absent.jpg")
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)


def test_pixel_limit_is_configurable():
    data = pil_bytes(Image.fromarray(smooth_rgb(100, 100)), "PNG")
    with pytest.raises(ImageError, match="10,000 pixels, above the limit of 9,999"):
        decode_bytes(data, max_pixels=9_999)
    assert decode_bytes(data, max_pixels=10_000).shape == (100, 100, 3)
    big = header_only_png(20000, 20000)
    with pytest.raises(ImageError, match="corrupt or truncated PNG data|decompression-bomb"):
        decode_bytes(big, max_pixels=None)  # allowed by us, but the data is not there


def test_pixel_limit_is_checked_before_decoding():
    """A 400 MP header with a tiny body is refused without allocating the pixels."""
    import tracemalloc
    tracemalloc.start()
    try:
        with pytest.raises(ImageError, match="above the limit"):
            decode_bytes(header_only_png(20000, 20000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20


def test_thin_image_is_scored(scorer_1class):
    thin = np.tile(smooth_rgb(64, 1), (300, 1, 1))  # 19200 x 1: 600 native patches
    tok = preprocess(thin)
    assert [(s.height, s.width) for s in tok.scales] == [(224, 1), (384, 1), (19200, 1)]
    assert len(tok) == 7 + 12 + 600
    assert np.isfinite(scorer_1class.score(thin))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_transpose_matches_pillow(orientation):
    rgb = smooth_rgb(48, 64)
    data = exif_jpeg(rgb, orientation)
    plain = load_image(data)
    assert plain.shape == (48, 64, 3)  # off by default, as in the original
    turned = load_image(data, exif_transpose=True)
    expected = np.asarray(ImageOps.exif_transpose(_with_exif(plain, data)))
    assert np.array_equal(turned, expected)
    png = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = orientation
    png_bytes = pil_bytes(png, "PNG", exif=exif.tobytes())
    assert np.array_equal(load_image(png_bytes, exif_transpose=True),
                          np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(png_bytes)))
                                     .convert("RGB")))


def test_mpo_with_exif_transpose_keeps_the_tf_decoder():
    data = mpo_jpeg(smooth_rgb(48, 64))
    ref = simplejpeg.decode_jpeg(data, fastdct=True, fastupsample=False)
    assert np.array_equal(load_image(data, exif_transpose=True), ref)


def _with_exif(rgb: np.ndarray, jpeg: bytes) -> Image.Image:
    """The exact decoded pixels, carrying the JPEG's EXIF (for ImageOps.exif_transpose)."""
    img = Image.fromarray(rgb)
    img.info["exif"] = Image.open(io.BytesIO(jpeg)).info["exif"]
    return img


def test_identical_pixels_score_identically(scorer_1class):
    """Grey, grey+alpha and RGBA inputs become exactly the replicated/opaque RGB tokens."""
    grey = smooth_rgb(40, 56)[..., 0]
    rgb3 = np.repeat(grey[..., None], 3, axis=2)
    rgba = np.concatenate([rgb3, np.full((40, 56, 1), 7, np.uint8)], axis=2)
    la = np.stack([grey, 255 - grey], axis=2)
    ref = preprocess(rgb3)
    for image in (pil_bytes(Image.fromarray(grey), "PNG"), grey, grey[..., None],
                  pil_bytes(Image.fromarray(la, "LA"), "PNG"),
                  pil_bytes(Image.fromarray(rgba, "RGBA"), "PNG"), rgba,
                  Image.fromarray(grey)):
        tok = preprocess(load_image(image))
        assert np.array_equal(tok.patches, ref.patches)
    assert scorer_1class.score(pil_bytes(Image.fromarray(grey), "PNG")) \
        == scorer_1class.score(rgb3)


def test_batch_never_stops(corpus_dir, scorer_1class):
    few = ("jpeg_cmyk_adobe.jpg", "jpeg_named.png", "png_rgba16.png", "gif_animated.gif",
           "thin_1x1.png", "tiff_cmyk.tiff")
    names = [c.name for c in BAD] + list(few)
    names.sort()
    preds = list(scorer_1class.predict_many([str(corpus_dir / n) for n in names],
                                            batch_size=8))
    assert [p.source for p in preds] == [str(corpus_dir / n) for n in names]
    bad = {c.name: c for c in BAD}
    for name, p in zip(names, preds):
        if name in bad:
            assert p.score is None and re.search(bad[name].error, p.error), (name, p.error)
        else:
            assert p.error is None and np.isfinite(p.score), (name, p.error)


def test_cli_reports_every_file(corpus_dir, ckpt_1class):
    names = sorted(c.name for c in BAD if c.name.startswith(("empty", "notes", "iphone",
                                                             "truncated_half", "bomb_png_2")))
    names += ["jpeg_grey.jpg", "png_rgb16.png", "gif_animated.gif"]
    r = subprocess.run([sys.executable, "-m", "musiq.cli.main", "score",
                        *[str(corpus_dir / n) for n in names], "--model", str(ckpt_1class),
                        "--format", "json", "--device", "cpu"],
                       capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert r.returncode == 1, r.stderr
    rows = {os.path.basename(row["path"]): row for row in json.loads(r.stdout)}
    assert set(rows) == set(names)
    assert rows["empty.jpg"]["error"] == "empty file (0 bytes)"
    assert rows["iphone.jpg"]["error"].startswith("a HEIF/HEIC file")
    assert rows["truncated_half.jpg"]["error"].startswith("truncated JPEG")
    assert "above the limit" in rows["bomb_png_20000x20000.png"]["error"]
    for n in ("jpeg_grey.jpg", "png_rgb16.png", "gif_animated.gif"):
        assert rows[n]["error"] is None and isinstance(rows[n]["score"], float)
    assert "5 of 8 image(s) failed" in r.stderr
    assert f"{corpus_dir / 'notes.jpg'}: not an image" in r.stderr


def test_out_of_memory_is_an_error_for_that_image_only(monkeypatch):
    def no_memory(*args, **kwargs):
        raise MemoryError

    jpeg = pil_bytes(Image.fromarray(smooth_rgb(30, 40)), "JPEG")
    png = pil_bytes(Image.fromarray(smooth_rgb(30, 40)), "PNG")
    monkeypatch.setattr(simplejpeg, "decode_jpeg", no_memory)
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_memory)
    for data in (jpeg, png):
        with pytest.raises(ImageError, match="not enough memory to decode this 40x30 image"):
            decode_bytes(data)
