"""One conformance tester: every way of scoring, on the golden images, against the original.

Each row of ``PATHS`` is one path a user can score through (the tokens' maker, the runtime,
batched or one by one, the local engine, the Ray engine, the HTTP service, training's
validation, explain's unoccluded score, the differentiable score). Every row scores the 17
golden images the original scored with the 1-class reference checkpoint and must agree with
the original's scores within its row's tolerance, taken from one table. A new path is one more
row here, not a new tolerance elsewhere.
"""
from __future__ import annotations

import shutil
import signal
from pathlib import Path
from typing import Callable

import httpx
import numpy as np
import pytest
import torch

import musiq
from conftest import GOLDEN, golden_records
from serving import ServerProcess

#: The one tolerance table (absolute, in score units of the 1-class checkpoint = its logit).
#: ``exact``: float32 arithmetic in another order (measured at most 2.4e-6; the original's
#: own jit/eager difference is 1.6e-6). ``differentiable``: score_tensor's documented bound
#: (its resize runs on float pixels; docs/differentiable.md).
TOLERANCE = {"exact": 1e-5, "differentiable": 1e-4}

SCORED = [r["file"] for r in golden_records() if "logits" in r["1class"]]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[str]:
    d = tmp_path_factory.mktemp("conformance")
    for name in SCORED:
        shutil.copy(GOLDEN / "images" / name, d / name)
    return [str(d / name) for name in SCORED]


@pytest.fixture(scope="module")
def original(golden) -> np.ndarray:
    return np.array([golden[name]["1class"]["score"] for name in SCORED])


def _load(ckpt: Path, **options) -> musiq.Scorer:
    return musiq.load(ckpt, device="cpu", **options)


def one_by_one(ckpt, files):
    scorer = _load(ckpt, backend="auto")
    return [scorer.predict(f).score for f in files]


def batched(ckpt, files, batch_size=8, **options):
    return [p.score for p in _load(ckpt, **options).predict_many(files, batch_size=batch_size)]


def from_bytes(ckpt, files):
    return _load(ckpt).score_many([Path(f).read_bytes() for f in files])


def several_models(ckpt, files):
    """The first of two models scored in one pass (a single-scale model in the mix makes
    its own tokens from the same decoded pixels)."""
    single = ckpt.with_name("ckpt_10class_single.npz")
    if not single.exists():
        from conftest import write_checkpoint
        write_checkpoint(single, "--classes", "10", "--single-scale")
    panel = musiq.load([ckpt, single], device="cpu")
    return [p.models[ckpt.stem].score for p in panel.predict_many(files)]


def ray_engine(ckpt, files):
    import ray

    from musiq.distributed import score_dataset
    from musiq.results.tables import table_predictions
    import tempfile
    tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", _temp_dir=tmp)
    try:
        ds = score_dataset(files, str(ckpt), options=musiq.ScorerOptions(device="cpu"))
        got = {p.source: p.score for b in ds.iter_batches(batch_format="pyarrow",
                                                          batch_size=None)
               for p in table_predictions(b)}
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    return [got[f] for f in files]


def http_service(ckpt, files):
    # A generous deadline: on a loaded 2-core machine one pass can take many seconds.
    server = ServerProcess("--model", str(ckpt), "--max-files", "16", "--timeout", "900")
    out = []
    try:
        for i in range(0, len(files), 4):
            part = files[i:i + 4]
            r = httpx.post(server.url + "/v1/score", timeout=900, files=[
                ("file", (Path(f).name, Path(f).read_bytes())) for f in part])
            assert r.status_code == 200, r.text
            out += [row["score"] for row in r.json()["results"]]
    finally:
        code = server.stop()
    # A graceful shutdown on SIGTERM (uvicorn then re-raises the signal), as test_serve checks.
    assert code in (0, -signal.SIGTERM), server.output()
    return out


def training_validation(ckpt, files):
    from musiq.engine import ScorerOptions, make_plan
    from musiq.evaluation.labels import LabelItem
    from musiq.network.outputs import output_kind
    from musiq.training.data import LabelledImages
    from musiq.training.validation import Validator
    net = musiq.create_model(ckpt)
    items = [LabelItem(Path(f).name, Path(f), float(i), None, i + 1)
             for i, f in enumerate(files)]
    plan = make_plan(ScorerOptions(device="cpu"), net.variant)
    data = LabelledImages(items, plan.preprocessor, "mos")
    _, scores, skipped = Validator(data, output_kind("mos"), batch_size=4, emd_r=1.0,
                                   plan=plan).run(net.train())
    assert not skipped and net.training  # validation leaves the training mode as it was
    return scores


def explain_unoccluded(ckpt, files):
    from musiq.explain import explain
    scorer = _load(ckpt)
    return [explain(scorer, f, methods=("occlusion",), cell=64).score for f in files]


def score_tensor(ckpt, files):
    scorer = _load(ckpt)
    out = []
    for f in files:
        rgb = musiq.load_image(f)
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0
        out.append(float(scorer.score_tensor(x)[0]))
    return out


#: name -> (how it scores, tolerance key)
PATHS: dict[str, tuple[Callable, str]] = {
    "predict, default runtime": (one_by_one, "exact"),
    "predict_many, default runtime": (lambda c, f: batched(c, f, backend="auto"), "exact"),
    "predict_many, torch runtime": (lambda c, f: batched(c, f, backend="torch"), "exact"),
    "predict_many, torch, one per pass": (
        lambda c, f: batched(c, f, batch_size=1, backend="torch"), "exact"),
    "predict_many, 2 decode processes": (lambda c, f: batched(c, f, workers=2), "exact"),
    "torch tokens": (lambda c, f: batched(c, f, preprocess="torch"), "exact"),
    "onnxruntime runtime": (lambda c, f: batched(c, f, backend="onnxruntime"), "exact"),
    "openvino runtime": (lambda c, f: batched(c, f, backend="openvino"), "exact"),
    "bytes input": (from_bytes, "exact"),
    "several models in one pass": (several_models, "exact"),
    "ray engine": (ray_engine, "exact"),
    "http service": (http_service, "exact"),
    "training validation": (training_validation, "exact"),
    "explain unoccluded score": (explain_unoccluded, "exact"),
    "score_tensor": (score_tensor, "differentiable"),
}


@pytest.mark.parametrize("path", list(PATHS))
def test_every_path_scores_as_the_original(path, ckpt_1class, images, original):
    run, tol = PATHS[path]
    got = np.array(run(ckpt_1class, images), dtype=np.float64)
    assert got.shape == original.shape
    worst = np.abs(got - original).max()
    assert worst <= TOLERANCE[tol], f"{path}: largest difference {worst:.3g}"
