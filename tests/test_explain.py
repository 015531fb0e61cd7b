"""``musiq explain``: occlusion values equal scoring the occluded image directly; rollout;
the heat map PNG; a bad image."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import GOLDEN, ROOT
from musiq.explain import explain, occluded_image

MUSIQ = [sys.executable, "-m", "musiq.cli.main"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A 100x70 crop (4x3 native patches, SAME padding on each side)."""
    rgb = np.asarray(Image.open(GOLDEN / "images" / "chelsea_451x300_q75.jpg").convert("RGB"))
    path = tmp_path_factory.mktemp("explain") / "crop.png"
    Image.fromarray(rgb[100:170, 150:250]).save(path)
    return path


def test_occlusion_equals_scoring_the_occluded_image(small, ckpt_1class, scorer_1class,
                                                     tmp_path):
    heat = tmp_path / "heat.png"
    r = subprocess.run([*MUSIQ, "explain", str(small), "--model", str(ckpt_1class),
                        "-o", str(heat), "--format", "json", "--cell", "1",
                        "--method", "occlusion", "--method", "rollout"],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["grid_shape"] == [3, 4] and out["cell_px"] == 32
    assert out["grid_offset_px"] == [-13, -14]
    assert out["provenance"]["model"] == ckpt_1class.name
    base = scorer_1class.score(small)
    assert out["score"] == pytest.approx(base, abs=1e-5)
    rgb = np.asarray(Image.open(small).convert("RGB"))
    occ = np.asarray(out["occlusion"])
    assert np.abs(occ).max() > 1e-4  # the map is not flat
    for row, col in [(0, 0), (1, 2), (2, 3)]:
        image = occluded_image(rgb, row, col, 1)
        assert (image != rgb).any()
        direct = base - scorer_1class.score(image)
        assert occ[row, col] == pytest.approx(direct, abs=2e-5)
    roll = np.asarray(out["rollout"])
    assert roll.shape == (3, 4) and (roll > 0).all() and roll.sum() < 1.0
    with Image.open(heat) as im:
        w, h = im.size
    assert w > h  # two panels of a landscape image, with colour bars


def test_cells_group_patches_and_api(small, scorer_10class):
    ex = explain(scorer_10class, small, methods=("occlusion",), cell=2)
    assert ex.shape() == [2, 2] and ex.cell_px == 64
    assert 1.0 <= ex.score <= 10.0


def test_bad_image_is_named(ckpt_1class, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a picture")
    r = subprocess.run([*MUSIQ, "explain", str(bad), "--model", str(ckpt_1class),
                        "--format", "json"], capture_output=True, text=True, cwd=ROOT,
                       timeout=600)
    assert r.returncode == 1 and "broken.jpg" in r.stderr and "Traceback" not in r.stderr
