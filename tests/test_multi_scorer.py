"""Several models in one pass (musiq.multi_scorer): every model's score equals its own
single-model run's; one decode per image; a bad file is one row; names are checked first."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import musiq
from conftest import GOLDEN, golden_records
from musiq.errors import ImageError, MusiqError
from musiq.multi_scorer import MultiScorer, spec_name

#: Several-model scores equal the single-model run's (the same engine on the same tokens).
SAME = 1e-6
NAMES = ["ckpt_1class", "ckpt_10class", "ckpt_1class_single"]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[str]:
    d = tmp_path_factory.mktemp("multi")
    names = [r["file"] for r in golden_records() if "logits" in r["1class"]][:6]
    for name in names:
        shutil.copy(GOLDEN / "images" / name, d / name)
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return [str(d / n) for n in names[:3]] + [str(d / "broken.jpg")] + [
        str(d / n) for n in names[3:]]


@pytest.fixture(scope="module")
def ckpts(ckpt_1class, ckpt_10class, ckpt_1class_single) -> list[Path]:
    return [ckpt_1class, ckpt_10class, ckpt_1class_single]


@pytest.fixture(scope="module")
def panel(ckpts) -> MultiScorer:
    return musiq.load(ckpts, device="cpu", backend="torch")


@pytest.fixture(scope="module")
def alone(ckpts, images) -> dict[str, list]:
    return {c.stem: list(musiq.load(c, device="cpu", backend="torch").predict_many(images))
            for c in ckpts}


def _check_equal(rows, alone, images) -> None:
    assert [r.source for r in rows] == images
    for name, preds in alone.items():
        for row, single in zip(rows, preds):
            got = row.models[name]
            assert (got.error is None) == (single.error is None), (name, row.source)
            if single.error is None:
                assert abs(got.score - single.score) <= SAME
                np.testing.assert_allclose(got.logits, single.logits, atol=SAME, rtol=0)
                if single.distribution is not None:
                    np.testing.assert_allclose(got.distribution, single.distribution,
                                               atol=SAME, rtol=0)


def test_names_order_and_kinds(panel):
    assert panel.names == NAMES
    assert [s.kind for s in panel.scorers.values()] == ["mos", "distribution", "mos"]
    # Two multi-scale models share one preprocessing; the single-scale one has its own.
    assert len(panel.shared.preprocessors) == 2


@pytest.mark.parametrize("how", ["in-process", "2 workers", "torch tokens", "batch of 1"])
def test_every_model_scores_as_alone(how, ckpts, panel, alone, images):
    if how == "in-process":
        rows = list(panel.predict_many(images))
    elif how == "2 workers":
        rows = list(panel.predict_many(images, workers=2))
    elif how == "batch of 1":  # compared with the single-model runs at the same settings
        rows = list(panel.predict_many(images, batch_size=1, window=2))
        alone = {c.stem: list(musiq.load(c, device="cpu", backend="torch").predict_many(
            images, batch_size=1, window=2)) for c in ckpts}
    else:
        rows = list(musiq.load(ckpts, device="cpu", backend="torch",
                               preprocess="torch").predict_many(images))
    _check_equal(rows, alone, images)


def test_a_bad_file_is_one_row_with_its_error_for_every_model(panel, images):
    rows = {r.source: r for r in panel.predict_many(images)}
    bad = rows[images[3]]
    assert bad.error and "broken.jpg" not in bad.error  # the row names the file itself
    assert not bad.ok and bad.failure == bad.error
    assert all(p.error == bad.error and p.score is None for p in bad.models.values())
    good = rows[images[0]]
    assert good.ok and good.error is None and good.failure is None
    d = good.to_dict()
    assert list(d) == ["path", "error", "models"] and list(d["models"]) == NAMES
    assert set(d["models"]["ckpt_10class"]) >= {"score", "error", "logits", "distribution",
                                                "std"}
    with pytest.raises(ImageError):
        panel.predict(images[3])


def test_one_model_failing_leaves_the_others(ckpts, images, tmp_path):
    # A single-scale model bounded to few tokens fails the larger images; the others score.
    panel = musiq.load(ckpts, device="cpu", backend="torch", max_tokens=400)
    row = next(r for r in panel.predict_many(images[:3])
               if r.models["ckpt_1class"].error is not None)
    assert row.error is None and not row.ok
    assert "ckpt_1class:" in row.failure


def test_score_returns_a_dict(panel, alone, images):
    scores = panel.score(images[0])
    assert list(scores) == NAMES
    assert abs(scores["ckpt_1class"] - alone["ckpt_1class"][0].score) <= SAME
    assert panel(images[0]) == scores


def test_names_are_checked_before_any_file_is_read(tmp_path, ckpt_1class):
    twin = tmp_path / "other"
    twin.mkdir()
    shutil.copy(ckpt_1class, twin / ckpt_1class.name)
    with pytest.raises(MusiqError, match="two models are named"):
        musiq.load([ckpt_1class, twin / ckpt_1class.name], device="cpu")
    with pytest.raises(MusiqError, match="clash with the output column 'path'"):
        musiq.load([ckpt_1class, tmp_path / "path.npz"], device="cpu")  # never read
    with pytest.raises(MusiqError, match="two models are named 'koniq'"):
        musiq.load("koniq,musiq-koniq", device="cpu")
    assert spec_name("musiq-koniq") == "koniq" and spec_name("/x/my.model.npz") == "my.model"


def test_model_lists(ckpt_1class, ckpt_10class):
    from musiq.network.registry import ALL_MODELS, split_models
    assert split_models(["koniq,ava", " spaq "]) == ["koniq", "ava", "spaq"]
    assert split_models("all") == list(ALL_MODELS) == ["koniq", "spaq", "paq2piq", "ava"]
    panel = musiq.load(f"{ckpt_1class},{ckpt_10class}", device="cpu")
    assert isinstance(panel, MultiScorer) and panel.names == NAMES[:2]
    with pytest.raises(MusiqError, match="no model given"):
        split_models([" , "])
