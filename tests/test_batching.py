"""Length-grouped batching: the schedule, and scores equal to the one-image path."""
from __future__ import annotations

import random

import numpy as np
import pytest

from conftest import GOLDEN
from musiq.engine.batching import Reorder, batch_cost, cut, schedule

IMAGES = GOLDEN / "images"
# Mixed sizes (7 to 400+ tokens), a grey JPEG, an RGBA PNG, and a 1000x2 image.
MIXED = ["astronaut_333x517_q85.jpg", "chelsea_20x30_q90.jpg", "astronaut_512x512.png",
         "camera_512x512_gray_q90.jpg", "chelsea_451x300_q75.jpg", "coffee_1000x2_q90.jpg",
         "astronaut_448x333_q90.jpg", "chelsea_451x300_q75_progressive.jpg"]


def test_cut_respects_limits_and_keeps_every_item():
    rng = random.Random(0)
    lengths = [rng.randint(1, 900) for _ in range(200)]
    batches = cut(list(range(200)), lambda i: lengths[i], batch_size=8, max_tokens=3000)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(200))
    for b in batches:
        assert len(b) <= 8
        assert batch_cost([lengths[i] for i in b]) <= 3000 or len(b) == 1
    # Sorted by length: the padding a batch carries is small.
    assert [lengths[i] for i in flat] == sorted(lengths)


def test_cut_puts_an_oversized_item_alone():
    batches = cut([5, 10_000, 7], lambda n: n, batch_size=8, max_tokens=100)
    assert [10_000] in batches and sum(map(len, batches)) == 3


def test_schedule_windows_bound_what_is_held():
    seen = []

    def stream():
        for i in range(50):
            seen.append(i)
            yield i

    it = schedule(stream(), lambda i: 10 + i % 7, batch_size=4, max_tokens=10**6, window=10)
    first = next(it)
    assert len(seen) == 10 and len(first) == 4  # only one window read so far
    rest = [i for b in it for i in b]
    assert sorted(first + rest) == list(range(50))


def test_reorder_releases_in_input_order():
    r: Reorder[str] = Reorder()
    r.put(2, "c")
    r.put(1, "b")
    assert list(r.ready()) == []
    r.put(0, "a")
    assert list(r.ready()) == ["a", "b", "c"] and len(r) == 0
    with pytest.raises(ValueError):
        r.put(1, "again")


@pytest.fixture(scope="module")
def single(scorer_1class) -> dict[str, float]:
    """One-image-path scores of MIXED."""
    return {str(IMAGES / n): scorer_1class.predict(IMAGES / n).score for n in MIXED}


@pytest.mark.parametrize("batch_size,max_tokens", [(8, 8192), (3, 700)])
def test_batched_scores_equal_one_image_path(scorer_1class, single, batch_size, max_tokens):
    paths = [IMAGES / n for n in MIXED]
    preds = list(scorer_1class.predict_many(paths, batch_size=batch_size,
                                            max_batch_tokens=max_tokens))
    assert [p.source for p in preds] == [str(p) for p in paths]  # input order restored
    for p in preds:
        assert p.error is None
        assert abs(p.score - single[p.source]) <= 1e-5, (p.source, p.score)


def test_batched_distribution_equals_one_image_path(scorer_10class):
    paths = [IMAGES / n for n in MIXED[:4]]
    preds = list(scorer_10class.predict_many(paths, batch_size=4))
    for path, p in zip(paths, preds):
        one = scorer_10class.predict(path)
        assert np.abs(np.array(p.distribution) - one.distribution).max() <= 1e-6
        assert abs(p.score - one.score) <= 1e-5


def test_worker_processes_give_the_same_results(scorer_1class, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    paths = [IMAGES / MIXED[0], bad, IMAGES / MIXED[1], tmp_path / "missing.png"]
    inproc = list(scorer_1class.predict_many(paths, batch_size=2))
    pooled = list(scorer_1class.predict_many(paths, batch_size=2, workers=2))
    assert [p.to_dict() for p in pooled] == [p.to_dict() for p in inproc]
    assert [p.ok for p in pooled] == [True, False, True, False]
    assert pooled[3].error == "no such file"


def test_reduced_precision_is_opt_in_and_close(ckpt_1class, scorer_1class):
    import musiq
    paths = [IMAGES / n for n in MIXED[:2]]
    fp32 = [p.logits[0] for p in scorer_1class.predict_many(paths)]
    again = musiq.load(ckpt_1class, precision="fp32")
    assert [p.logits[0] for p in again.predict_many(paths)] == fp32  # default is exact
    bf16 = musiq.load(ckpt_1class, precision="bf16")
    low = [p.logits[0] for p in bf16.predict_many(paths)]
    assert low != fp32
    assert max(abs(a - b) for a, b in zip(low, fp32)) < 0.05
    with pytest.raises(musiq.MusiqError):
        musiq.load(ckpt_1class, precision="int8")
