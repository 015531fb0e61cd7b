"""Layer-by-layer parity with the original's recorded module outputs (one image, 1 class).

The reference holds stem maps for the first 16 tokens (NHWC), token embeddings for all 194
slots (padding included) and encoder activations for CLS + 194 slots. We compute valid tokens
only, so we compare CLS and the valid slots. Tolerance: 1e-5 relative to the largest
magnitude of each tensor (float32 accumulation-order noise is ~1e-6 relative).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import GOLDEN
from musiq.network.architecture import OFFICIAL

HEADS, HIDDEN = OFFICIAL.heads, OFFICIAL.hidden

IMAGE = "chelsea_20x30_q90"
REL_TOL = 1e-5


@pytest.fixture(scope="module")
def run(scorer_1class):
    # Trimmed reference (tests/golden/tools/build_golden.py): stem maps of the first patches,
    # and of each sequence the CLS row and 16 token rows (``_seq_rows`` of the CLS-first
    # sequence; ``_token_rows`` of the valid tokens).
    ref = np.load(GOLDEN / "intermediates" / f"{IMAGE}__1class.npz")
    valid = ref["_token_rows"]
    model = scorer_1class.model
    got: dict[str, torch.Tensor] = {}
    hooks = []

    def capture(name, module):
        def hook(_module, _inputs, out):  # must return None, or it replaces the output
            got.setdefault(name, out.detach().clone())
        hooks.append(module.register_forward_hook(hook))

    stem = model.stem
    capture("conv_root", stem.conv_root)
    capture("gn_root", stem.gn_root)
    capture("block1__unit1__gn_proj", stem.unit1.gn_proj)
    capture("block1__unit1__gn3", stem.unit1.gn3)
    capture("block1", stem.unit1)
    capture("embedding", stem.embedding)
    for i, block in enumerate(model.blocks):
        p = f"Transformer__encoderblock_{i}"
        capture(p + "__LayerNorm_0", block.ln0)
        capture(p + "__qkv", block.attention.qkv)
        capture(p + "__MultiHeadDotProductAttention_1", block.attention.out)
        capture(p + "__LayerNorm_2", block.ln2)
        capture(p + "__MlpBlock_3__Dense_0", block.mlp0)
        capture(p + "__MlpBlock_3", block.mlp1)
        capture(p, block)
    capture("encoder_norm", model.encoder_norm)
    capture("head", model.head)
    tokens = scorer_1class.tokens(GOLDEN / "images" / f"{IMAGE}.jpg")
    # Every row of the last block, as the original computes it (scoring computes its CLS
    # row only: tests/test_engine.py::test_last_block_cls_row_equals_the_full_block).
    model.last_block_cls_only = False
    try:
        scorer_1class.logits([tokens])
    finally:
        model.last_block_cls_only = True
        for h in hooks:
            h.remove()
    got = {k: v.numpy() for k, v in got.items()}
    emb = got["embedding"]
    pos = model.pos_embedding.detach().numpy()[tokens.positions]
    scale = model.scale_embedding.detach().numpy()[tokens.scale_ids]
    got["Transformer__posembed_input"] = emb + pos
    got["Transformer__scaleembed_input"] = emb + pos + scale
    return ref, got, valid


def close(got: np.ndarray, ref: np.ndarray, name: str) -> None:
    assert got.shape == ref.shape, name
    err = float(np.abs(got - ref).max())
    bound = REL_TOL * max(1.0, float(np.abs(ref).max()))
    assert err <= bound, f"{name}: max abs diff {err:.3g} > {bound:.3g}"


STEM_MAPS = ["conv_root", "gn_root", "block1__unit1__gn_proj", "block1__unit1__gn3", "block1"]


@pytest.mark.parametrize("name", STEM_MAPS)
def test_stem_maps(run, name):
    ref, got, _ = run
    n = ref[name].shape[0]
    close(got[name][:n].transpose(0, 2, 3, 1), ref[name], name)  # NCHW -> NHWC


@pytest.mark.parametrize("name", ["embedding", "Transformer__posembed_input",
                                  "Transformer__scaleembed_input"])
def test_embeddings(run, name):
    ref, got, valid = run
    close(got[name][valid], ref[name][0], name)


@pytest.mark.parametrize("block", range(14))
def test_encoder_blocks(run, block):
    ref, got, valid = run
    rows = np.concatenate([[0], valid + 1])  # CLS, then the kept tokens
    p = f"Transformer__encoderblock_{block}"
    for suffix in ("__LayerNorm_0", "__MultiHeadDotProductAttention_1", "__LayerNorm_2",
                   "__MlpBlock_3__Dense_0", "__MlpBlock_3", ""):
        if p + suffix in ref.files:
            close(got[p + suffix][0, rows], ref[p + suffix][0], p + suffix)
    # Detailed records (blocks 0 and 13): q, k, v, out projection and the MLP's last dense.
    qkv = got[p + "__qkv"][0].reshape(-1, 3, HEADS, HIDDEN // HEADS)
    for j, part in enumerate(("query", "key", "value")):
        key = f"{p}__MultiHeadDotProductAttention_1__{part}"
        if key in ref.files:
            close(qkv[rows, j], ref[key][0], key)
    for key, mine in ((p + "__MultiHeadDotProductAttention_1__out",
                       p + "__MultiHeadDotProductAttention_1"),
                      (p + "__MlpBlock_3__Dense_1", p + "__MlpBlock_3")):
        if key in ref.files:
            close(got[mine][0, rows], ref[key][0], key)


def test_head(run):
    ref, got, _ = run
    close(got["encoder_norm"][0], ref["Transformer__encoder_norm"][0, 0], "encoder_norm CLS")
    close(got["encoder_norm"], ref["pre_logits"], "pre_logits")
    close(got["head"], ref["head"], "head")
    close(got["head"], ref["_logits"], "logits")
