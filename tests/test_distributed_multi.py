"""Several models on the Ray engine (issue 21): decode once, every model scores each image.

Every model's score and logits equal its own single-model local run's (<= 1e-6) on golden
images; a bad file is one row with its error for every model. One local Ray (2 CPUs) for the
module, started and shut down here; few, small images (the suite runs on 2 shared cores).
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from conftest import GOLDEN

ray = pytest.importorskip("ray")
pa = pytest.importorskip("pyarrow")

import musiq  # noqa: E402
from musiq.results.several import ModelSet  # noqa: E402
from musiq.results.several_arrow import several_arrow_schema, several_table, table_rows  # noqa: E402,E501
from musiq.results.rows import MultiPrediction, Prediction  # noqa: E402

IMAGES = ["chelsea_20x30_q90.jpg", "coffee_30x20_q90.jpg", "coffee_1000x2_q90.jpg",
          "astronaut_333x517_q85.jpg"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[str]:
    """Golden images, a corrupt JPEG and a missing path."""
    d = tmp_path_factory.mktemp("ray_multi_inputs")
    files = []
    for name in IMAGES:
        shutil.copy(GOLDEN / "images" / name, d / name)
        files.append(str(d / name))
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return files + [str(d / "corrupt.jpg"), str(d / "missing.jpg")]


@pytest.fixture(scope="module")
def local_ray():
    tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", _temp_dir=tmp)
    yield
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def ckpts(ckpt_1class, ckpt_10class, ckpt_1class_single) -> list[Path]:
    """Two multi-scale models (they share tokens) and a single-scale one (its own tokens)."""
    return [ckpt_1class, ckpt_10class, ckpt_1class_single]


def check_against_single_runs(rows: list[MultiPrediction], ckpts: list[Path],
                              files: list[str]) -> None:
    assert sorted(r.source for r in rows) == sorted(files)  # every path exactly once
    by_path = {r.source: r for r in rows}
    for ckpt in ckpts:
        alone = {p.source: p for p in musiq.load(ckpt, device="cpu").predict_many(files)}
        for path, want in alone.items():
            got = by_path[path].models[ckpt.stem]
            assert got.source == path
            if want.error is not None:
                assert got.score is None and got.error, (path, got)
                continue
            assert got.error is None, (path, got)
            assert abs(got.score - want.score) <= 1e-6, (ckpt.stem, path)
            assert max(abs(a - b) for a, b in zip(got.logits, want.logits)) <= 1e-6
            assert len(got.logits) == len(want.logits)
            if want.distribution is not None:
                assert max(abs(a - b) for a, b in zip(got.distribution,
                                                      want.distribution)) <= 1e-6
                assert abs(got.std - want.std) <= 1e-6


def test_every_models_score_equals_its_single_model_run(local_ray, ckpts, inputs):
    from musiq.distributed import score_dataset
    ds = score_dataset(inputs, [str(c) for c in ckpts], options=musiq.ScorerOptions(
        device="cpu"), batch_size=8, model_batch_size=4, decode_batch_size=2)
    t = pa.concat_tables(ray.get(ds.to_arrow_refs()))
    names = [c.stem for c in ckpts]
    assert t.schema == several_arrow_schema(ModelSet(tuple(names),
                                                     ("mos", "distribution", "mos")))
    # The columns the issue fixes: path, a score column per model, prefixed extras, error.
    assert t.schema.names[:4] == ["path", *names]
    assert {"ckpt_10class_std", "ckpt_10class_distribution", "error",
            "ckpt_1class_logits"} <= set(t.schema.names)
    rows = table_rows(t)
    assert all(list(r.models) == names for r in rows)  # the models' order
    check_against_single_runs(rows, ckpts, inputs)
    bad = {Path(r.source).name: r for r in rows if not r.ok}
    assert set(bad) == {"corrupt.jpg", "missing.jpg"}
    for r in bad.values():  # one row, its error for every model
        assert r.error and all(p.error == r.error and p.score is None
                               for p in r.models.values())
    assert "no such file" in bad["missing.jpg"].error


def test_cli_seam_yields_several_model_rows(local_ray, ckpts, inputs):
    from musiq.cli.ray_engine import ray_predictions
    panel = musiq.load([str(c) for c in ckpts], device="cpu")
    args = argparse.Namespace(ray_address=None, ray_cpus=None, ray_actors=1, ray_gpus=0,
                              ray_actor_cpus=1, batch_size=4, threads=None, recursive=False)
    files = inputs[1:3] + inputs[-2:]
    rows = list(ray_predictions(panel, files, args))
    assert ray.is_initialized()  # the test's Ray is left running
    assert all(isinstance(r, MultiPrediction) and list(r.models) == panel.names for r in rows)
    check_against_single_runs(rows, ckpts, files)
    assert sum(r.error is not None for r in rows) == 2


def test_no_inputs_give_an_empty_table_in_the_same_columns(local_ray, ckpts):
    from musiq.distributed import score_dataset
    panel = musiq.load([str(c) for c in ckpts[:2]], device="cpu")
    ds = score_dataset([], panel)
    assert ds.count() == 0
    assert ds.schema().names == several_arrow_schema(ModelSet(
        tuple(c.stem for c in ckpts[:2]), ("mos", "distribution"))).names


def test_one_models_failure_keeps_the_others_scores_through_the_table():
    """The table round trip (no Ray): a model's own error stays its own."""
    from musiq.network.outputs import interpret
    ok = Prediction("a.jpg", **interpret(np.array([0.5] * 9 + [1.5], np.float32),
                                         "distribution"))
    rows = [MultiPrediction("a.jpg", {"m": Prediction("a.jpg", error="non-finite logits"),
                                      "ava": ok}),
            MultiPrediction.failed("b.jpg", ["m", "ava"], "cannot decode")]
    t = several_table(rows, ModelSet(("m", "ava"), ("mos", "distribution")))
    assert t.column("m").to_pylist() == [None, None]
    assert t.column("ava_distribution").to_pylist()[0] == ok.distribution
    back = table_rows(t)
    assert back[0].error is None and back[0].models["m"].error == "non-finite logits"
    assert back[0].models["ava"] == ok
    assert back[1].error == "cannot decode" and back[1].failure == "cannot decode"
    assert all(p.error == "cannot decode" for p in back[1].models.values())


def test_a_model_name_that_clashes_with_another_models_column_is_refused():
    from musiq.errors import MusiqError
    with pytest.raises(MusiqError, match="ava_std"):
        ModelSet(("ava", "ava_std"), ("distribution", "mos"))
