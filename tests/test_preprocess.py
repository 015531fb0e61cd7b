"""Preprocessing properties (hypothesis) and the arithmetic facts of docs/spec.md section 2."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from musiq.tokens.preprocess import (MULTI_SCALE, SINGLE_SCALE, extract_patches, gaussian_resize,
                              hashed_index, normalise, preprocess, resize_spans, target_size)


def test_target_size_float32_facts():
    assert target_size(27, 192, 224) == (31, 224)       # float64 maths would say 32
    assert target_size(333, 448, 224) == (166, 224)     # 166.5 rounds half to even
    assert target_size(2, 1000, 224) == (1, 224)        # TF fails (0); we use 1
    assert target_size(517, 333, 384) == (384, 247)


def test_hashed_index_float32_fact():
    assert hashed_index(205)[41] == 1                   # float32: 41 * (10/205) = 1.9999999; (41*10)//205 says 2
    assert hashed_index(1).tolist() == [0]
    assert hashed_index(10).tolist() == list(range(10))


@given(st.integers(1, 1024))
def test_hashed_index_properties(n):
    idx = hashed_index(n)
    assert len(idx) == n and idx[0] == 0 and idx.min() >= 0 and idx.max() <= 9
    assert np.all(np.diff(idx) >= 0)
    if n >= 10:
        assert set(idx.tolist()) == set(range(10))


@given(st.integers(1, 3000), st.integers(1, 3000), st.sampled_from([224, 384, 512]))
def test_target_size_properties(h, w, L):
    rh, rw = target_size(h, w, L)
    assert rh >= 1 and rw >= 1
    assert max(rh, rw) == L
    assert abs(rh - h * L / max(h, w)) <= 1.0 and abs(rw - w * L / max(h, w)) <= 1.0


@given(st.integers(1, 400), st.integers(1, 400))
def test_resize_spans_are_normalised_windows(n_in, n_out):
    starts, w = resize_spans(n_in, n_out)
    assert starts.shape == (n_out,) and w.shape == (n_out, min(5, n_in))
    assert starts.min() >= 0 and starts.max() <= n_in - 1
    assert (w >= 0).all()
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-6)


def test_same_size_resize_still_filters():
    rng = np.random.default_rng(0)
    x = normalise(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    y = gaussian_resize(x, 20, 30)
    assert y.shape == x.shape and np.abs(y - x).max() > 0.01
    flat = np.full((20, 30, 3), 0.25, np.float32)
    np.testing.assert_allclose(gaussian_resize(flat, 7, 11), 0.25, atol=1e-6)


def test_patch_padding_goes_after():
    x = np.ones((33, 65, 3), np.float32)
    p, gh, gw = extract_patches(x)
    assert (gh, gw) == (2, 3)
    grid = p.reshape(gh, gw, 32, 32, 3).transpose(0, 2, 1, 3, 4).reshape(64, 96, 3)
    rows = np.nonzero(grid[:, 40, 0])[0]
    cols = np.nonzero(grid[20, :, 0])[0]
    assert (rows.min(), rows.max()) == (15, 47)         # 31 padding rows: 15 before, 16 after
    assert (cols.min(), cols.max()) == (15, 79)         # 31 padding cols: 15 before, 16 after


def test_patch_vector_order():
    x = np.arange(32 * 32 * 3, dtype=np.float32).reshape(32, 32, 3)
    p, _, _ = extract_patches(x)
    np.testing.assert_array_equal(p[0], x.reshape(-1))  # rows, then columns, then RGB


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 200), st.integers(1, 200), st.booleans())
def test_tokens_shapes_and_masks(h, w, single):
    rgb = np.random.default_rng(h * 1000 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    config = SINGLE_SCALE if single else MULTI_SCALE
    tok = preprocess(rgb, config)
    lengths = sorted(config.longer_side_lengths)
    assert len(tok.scales) == len(lengths) + 1
    for s, L in zip(tok.scales, lengths + [None]):
        if L is None:
            assert (s.height, s.width, s.slots) == (h, w, s.num_valid)
        else:
            assert max(s.height, s.width) == L and s.slots == math.ceil(L / 32) ** 2
        assert (s.grid_h, s.grid_w) == (math.ceil(s.height / 32), math.ceil(s.width / 32))
    n = sum(s.num_valid for s in tok.scales)
    assert tok.patches.shape == (n, 3072) and tok.patches.dtype == np.float32
    assert np.abs(tok.patches).max() <= 1.0 + 1e-6
    assert tok.positions.min() >= 0 and tok.positions.max() < 100
    assert np.all(np.diff(tok.scale_ids) >= 0)
    assert tok.scale_ids.tolist() == sum(([s.scale_id] * s.num_valid for s in tok.scales), [])
    full = tok.to_original_layout()
    assert full.shape == (sum(s.slots for s in tok.scales), 3075)
    assert int(full[:, -1].sum()) == n
    assert not full[full[:, -1] == 0].any()             # padding slots are all zero


def test_bad_array_is_refused():
    from musiq import ImageError
    with pytest.raises(ImageError, match="expected an HxWx3 uint8"):
        preprocess(np.zeros((4, 4), np.uint8))
