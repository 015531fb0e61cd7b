"""The seams: architecture as data, the official-name table, output kinds, the factory, the
scorer's options and the picklable Preprocessor."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import musiq
from conftest import GOLDEN
from musiq.network.architecture import OFFICIAL, Architecture, official_parameters, parameter_shapes
from musiq.errors import CheckpointError, MusiqError
from musiq.network.outputs import KINDS, output_kind

IMAGE = GOLDEN / "images" / "coffee_30x20_q90.jpg"


@pytest.mark.parametrize("arch", [OFFICIAL, Architecture(num_classes=10, num_scales=1),
                                  Architecture(num_classes=3, layers=2, hidden=96, heads=4,
                                               mlp_dim=128, stem_width=32, stem_out=64)])
def test_table_covers_every_parameter_exactly_once(arch):
    net = musiq.Musiq(arch)
    own = dict(net.named_parameters())
    covered: dict[str, int] = {}
    for p in official_parameters(arch):
        t = own[p.attr]
        rows = t.shape[0] if p.rows is None else p.rows[1] - p.rows[0]
        assert int(np.prod(p.shape)) == rows * int(np.prod(t.shape[1:])), p.key
        covered[p.attr] = covered.get(p.attr, 0) + rows
    assert covered == {k: v.shape[0] for k, v in own.items()}
    assert len({p.key for p in official_parameters(arch)}) == len(official_parameters(arch))


def test_save_load_round_trip_is_exact():
    arch = Architecture(num_classes=10, layers=2)
    a = musiq.create_model(arch=arch)
    params = a.official_params()
    assert {k: v.shape for k, v in params.items()} == parameter_shapes(arch)
    b = musiq.create_model(arch=arch)
    assert not torch.equal(a.blocks[0].attention.qkv.weight, b.blocks[0].attention.qkv.weight)
    b.load_official(params)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


def test_checkpoint_shapes_come_from_the_table():
    from musiq.network.checkpoint import parameter_shapes as checkpoint_shapes
    assert checkpoint_shapes(10, 1) == parameter_shapes(Architecture(10, 1))
    with pytest.warns(DeprecationWarning):
        assert musiq.Variant is Architecture


def test_create_model_from_file_records_its_source(ckpt_10class):
    net = musiq.create_model(ckpt_10class)
    assert net.variant == Architecture(10, 3)
    assert net.source.path == ckpt_10class and net.source.info is None
    assert not net.training
    with pytest.raises(CheckpointError, match="architecture"):
        musiq.create_model(ckpt_10class, arch=Architecture(1, 3))


@pytest.mark.parametrize("name", ["mos", "distribution", "imagenet", "logits"])
def test_output_kinds(name):
    kind = KINDS[name]
    n = kind.num_classes or 7
    logits = np.linspace(-1, 2, n).astype(np.float32)
    out = kind.interpret(logits)
    assert out["logits"] == pytest.approx(logits.tolist())
    assert set(out) == {"score", "logits", *kind.extras}
    if kind.score_range is not None and n > 1:
        assert kind.score_range[0] <= out["score"] <= kind.score_range[1]
    assert len(kind.csv_values(out)) == len(kind.csv_columns)
    assert output_kind(n) is kind or name == "logits" or kind.num_classes is None
    assert kind.lower_better is False


def test_distribution_kind_mean_and_std():
    logits = np.log(np.array([0, 0, 0, 0, 1, 1, 0, 0, 0, 0], np.float64) + 1e-30)
    out = KINDS["distribution"].interpret(logits.astype(np.float32))
    assert out["score"] == pytest.approx(5.5, abs=1e-6)
    assert out["std"] == pytest.approx(0.5, abs=1e-6)


def test_scorer_options_checked_before_the_checkpoint_is_read(tmp_path):
    with pytest.raises(MusiqError, match="precision"):
        musiq.load(tmp_path / "missing.npz", precision="fp8")
    with pytest.raises(MusiqError, match="max_batch_tokens"):
        musiq.load(tmp_path / "missing.npz", max_batch_tokens=0)


def test_scorer_exposes_kind_metadata(scorer_10class, scorer_1class):
    assert scorer_10class.score_range == (1.0, 10.0)
    assert scorer_10class.lower_better is False
    assert scorer_1class.kind == "mos"
    with pytest.raises(AttributeError):
        scorer_1class.precision = "bf16"  # options are fixed when the scorer is made


def test_preprocessor_is_picklable_and_is_what_the_scorer_uses(scorer_1class):
    pp = scorer_1class.preprocessor
    clone = pickle.loads(pickle.dumps(pp))
    assert clone == pp
    a, b = clone.tokens(IMAGE), scorer_1class.tokens(IMAGE)
    assert np.array_equal(a.patches, b.patches) and np.array_equal(a.positions, b.positions)
    bad = clone.prepare(3, b"not an image")
    assert bad.index == 3 and bad.source == "<bytes>" and bad.tokens is None and bad.error


def test_in_memory_inputs_have_one_naming(scorer_1class):
    from PIL import Image
    rgb = musiq.load_image(IMAGE)
    for image, name in ((IMAGE.read_bytes(), "<bytes>"), (rgb, "<array>"),
                        (Image.fromarray(rgb), "<PIL image>"), (str(IMAGE), str(IMAGE))):
        assert scorer_1class.predict(image).source == name
    assert [p.source for p in scorer_1class.predict_many([b"junk"])] == ["<bytes>"]


def test_cli_precision_reaches_the_scorer(ckpt_1class):
    import argparse
    from musiq.cli.common import load_from_args
    args = argparse.Namespace(model=str(ckpt_1class), checkpoint_dir=None, device="cpu",
                              max_pixels=0, exif_transpose=False, offline=True,
                              precision="bf16", compile=False)
    assert load_from_args(args).precision == "bf16"


def test_unknown_loss_is_refused_not_replaced():
    from musiq.training import TrainConfig
    with pytest.raises(MusiqError, match="loss"):
        TrainConfig(labels="x.csv", output="y.npz", loss="huber")
    from musiq.training.losses import loss_for
    with pytest.raises(ValueError, match="does not fit"):
        loss_for("emd", "mos")
    assert loss_for("auto", "distribution") == "emd"


def test_non_finite_logits_are_errors_in_the_api(ckpt_1class, tmp_path):
    params, _ = musiq.load_checkpoint(ckpt_1class)
    params["head/bias"] = np.full_like(params["head/bias"], np.nan)
    scorer = musiq.load(musiq.save_checkpoint(tmp_path / "nan.npz", params), device="cpu")
    (p,) = scorer.predict_many([IMAGE])
    assert p.score is None and "non-finite" in p.error
    with pytest.raises(MusiqError, match="non-finite"):
        scorer.predict(IMAGE)
