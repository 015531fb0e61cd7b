"""Parity with the original google-research code on ../shared/golden."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import GOLDEN, golden_records
from musiq import load_image, preprocess

SCORED = [r["file"] for r in golden_records() if "logits" in r["1class"]]
FAILED_IN_ORIGINAL = [r["file"] for r in golden_records() if "error" in r["1class"]]


@pytest.mark.parametrize("name", [r["file"] for r in golden_records()
                                  if (GOLDEN / "tokens" / (r["file"].rsplit(".", 1)[0] + ".npz")).exists()])
def test_tokens_equal_original(name):
    expected = np.load(GOLDEN / "tokens" / (name.rsplit(".", 1)[0] + ".npz"))["tokens"]
    got = preprocess(load_image(GOLDEN / "images" / name)).to_original_layout()
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-6


@pytest.mark.parametrize("name", SCORED)
def test_scores_1class(name, golden, scorer_1class):
    rec = golden[name]["1class"]
    pred = scorer_1class.predict(GOLDEN / "images" / name)
    assert abs(pred.score - rec["score"]) <= 1e-4
    assert np.abs(np.array(pred.logits) - rec["logits"]).max() <= 1e-4


@pytest.mark.parametrize("name", SCORED)
def test_scores_10class(name, golden, scorer_10class):
    rec = golden[name]["10class"]
    pred = scorer_10class.predict(GOLDEN / "images" / name)
    assert abs(pred.score - rec["score"]) <= 1e-4
    assert np.abs(np.array(pred.logits) - rec["logits"]).max() <= 1e-4
    assert np.abs(np.array(pred.distribution) - rec["softmax"]).max() <= 1e-5


def test_golden_sizes_and_grids(golden):
    for name, rec in golden.items():
        if "scales" not in rec:
            continue
        tok = preprocess(load_image(GOLDEN / "images" / name))
        got = {s.scale_id: (s.height, s.width, s.grid_h, s.grid_w) for s in tok.scales}
        for sid, key in enumerate(("224", "384", "native")):
            e = rec["scales"][key]
            assert got[sid] == (e["rh"], e["rw"], e["count_h"], e["count_w"]), (name, key)
        assert len(tok.to_original_layout()) == rec["num_tokens"]
        assert len(tok) == rec["num_valid_tokens"]
