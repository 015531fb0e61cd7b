"""``OutputKind.interpret`` on what a model returns: README's line, run as written."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import musiq
from conftest import GOLDEN


@pytest.fixture(scope="module")
def ava_logits():
    """``(1, 10)`` logits of a random-weight 10-class network for one golden image."""
    net = musiq.create_model(arch=musiq.Architecture(num_classes=10))
    tokens = musiq.Preprocessor().tokens(GOLDEN / "images" / "astronaut_448x333_q90.jpg")
    return net(musiq.PackedBatch.from_tokens([tokens]))


def test_readme_line_on_a_models_output(ava_logits):
    logits = ava_logits
    assert tuple(logits.shape) == (1, 10) and logits.requires_grad
    out = musiq.output_kind("distribution").interpret(logits)   # README, as written
    assert isinstance(out, list) and len(out) == 1
    one = musiq.output_kind("distribution").interpret(logits[0])
    assert out[0] == one
    p = np.array(one["distribution"])
    assert p.shape == (10,) and p.sum() == pytest.approx(1.0, abs=1e-9)
    assert one["score"] == pytest.approx(float((p * np.arange(1, 11)).sum()), abs=1e-9)
    assert 1.0 <= one["score"] <= 10.0 and one["std"] > 0


def test_batches_of_several_images_and_bad_shapes():
    logits = np.array([[0.0] * 9 + [3.0], [3.0] + [0.0] * 9], np.float32)
    kind = musiq.output_kind("distribution")
    first, second = kind.interpret(logits)
    assert first["score"] > 5.5 > second["score"]
    assert kind.interpret(torch.from_numpy(logits))[1] == second
    mos = musiq.output_kind("mos")
    assert mos.interpret(np.array([[42.5]]))[0]["score"] == pytest.approx(42.5)
    assert mos.interpret([42.5])["score"] == pytest.approx(42.5)
    for bad in (np.zeros((1, 2, 10)), np.zeros(0), np.float32(3.0)):
        with pytest.raises(ValueError, match="logits must be"):
            kind.interpret(bad)
