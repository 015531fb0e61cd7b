"""One plan and one engine: every option reaches the plan, "auto" is resolved once, and the
divergences the paths had are gone."""
from __future__ import annotations

import io
import json
import pickle
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

import musiq
from musiq.engine import Engine, Plan, ScorerOptions, make_plan
from musiq.engine.plan import default_max_tokens

MUSIQ = [sys.executable, "-m", "musiq.cli.main"]


def test_every_cli_option_reaches_the_plan():
    """--max-batch-tokens, --workers, --threads and --max-tokens used to stop at the CLI
    (the Ray engine never saw --max-batch-tokens)."""
    from musiq.cli.common import options_from_args
    from musiq.cli.main import build_parser
    args = build_parser().parse_args(
        ["score", "x.jpg", "--device", "cpu", "--max-batch-tokens", "777", "--workers", "3",
         "--threads", "1", "--max-tokens", "5000", "--precision", "bf16"])
    options = options_from_args(args)
    plan = make_plan(options, musiq.Architecture())
    assert (plan.max_batch_tokens, plan.workers, plan.threads, plan.max_tokens,
            plan.precision) == (777, 3, 1, 5000, "bf16")
    # What the Ray actors receive is these same options.
    from musiq.distributed import ModelPayload
    assert ModelPayload(musiq.Architecture(), {}, options, "m").options.max_batch_tokens == 777


def test_auto_is_resolved_once_from_the_model():
    plan = make_plan(ScorerOptions(device="auto"), musiq.Architecture(num_scales=1))
    assert plan.device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert plan.preprocessor.config.longer_side_lengths == ()  # the model's own config
    assert make_plan(ScorerOptions(device="cpu"), musiq.Architecture()).preprocessor.config \
        == musiq.MULTI_SCALE
    assert plan.max_tokens == default_max_tokens(plan.preprocessor.max_pixels) == 16_277
    assert pickle.loads(pickle.dumps(plan)) == plan  # what travels to worker processes


def test_decode_workers_never_run_on_the_gpu():
    """The service handed ``preprocess=torch`` on ``cuda`` to its decode processes (one CUDA
    context each); workers now make tokens on the host."""
    pp = musiq.Preprocessor(backend="torch", device="cuda")
    plan = Plan(device="cuda", precision="fp32", runtime="torch", preprocessor=pp,
                max_batch_tokens=65536, stem_chunk=8192, depth=1, workers=8)
    worker = plan.worker_preprocessor()
    assert (worker.backend, worker.device) == ("numpy", "cpu")
    from musiq.serve.app import Service

    class FakeScorer:
        pass

    s = FakeScorer()
    s.plan = plan
    assert Service.options(s) == worker


@pytest.fixture(scope="module")
def wide_png(tmp_path_factory):
    """1 x 200,000 pixels: 0.2 MP, but over 6,000 tokens (each patch holds one pixel row)."""
    path = tmp_path_factory.mktemp("wide") / "wide.png"
    Image.new("RGB", (200_000, 1), (90, 120, 30)).save(path)
    return path


def test_token_bound_refuses_before_the_model(scorer_1class, wide_png):
    scorer = musiq.Scorer(scorer_1class.model, options=ScorerOptions(device="cpu",
                                                                     max_tokens=2000))
    start = time.perf_counter()
    (p,) = list(scorer.predict_many([wide_png]))
    assert time.perf_counter() - start < 30
    from musiq.tokens.preprocess import token_count
    n = token_count(1, 200_000, musiq.MULTI_SCALE)
    assert n > 6000
    assert p.score is None and f"{n:,} tokens, above the limit of 2,000" in p.error
    with pytest.raises(musiq.ImageError, match="tokens"):
        scorer.predict(wide_png)


def test_cli_token_bound(ckpt_1class, wide_png):
    r = subprocess.run([*MUSIQ, "score", str(wide_png), "--model", str(ckpt_1class),
                        "--device", "cpu", "--max-tokens", "1000", "--format", "json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stderr
    (row,) = json.loads(r.stdout)
    assert row["score"] is None and "above the limit of 1,000" in row["error"]
    assert "Traceback" not in r.stderr


def test_engine_runs_every_forward_pass(scorer_1class, golden):
    """The scorer's logits, the engine's own and its packed-stream rows are one computation."""
    from musiq.engine.stream import run_stream
    from musiq.tokens.pipeline import iter_prepared
    from conftest import GOLDEN
    names = sorted(golden)[:3]
    files = [GOLDEN / "images" / n for n in names if "logits" in golden[n]["1class"]]
    engine = scorer_1class.engine
    tokens = [scorer_1class.tokens(f) for f in files]
    direct = engine.logits(tokens)
    rows = [row for _, row in run_stream(engine, iter_prepared(files, scorer_1class.preprocessor),
                                         batch_size=2)]
    assert np.abs(np.stack(rows) - direct).max() <= 1e-5
    for f, row in zip(files, direct):
        assert abs(row[0] - golden[f.name]["1class"]["score"]) <= 1e-5


def test_reduced_precision_keeps_the_head_in_float32(scorer_1class):
    """bf16 ran the head in bf16, so a MOS on 0-100 moved in steps of 0.25-0.5."""
    net = musiq.create_model(arch=musiq.Architecture())
    with torch.no_grad():
        net.head.weight.mul_(0).add_(torch.randn_like(net.head.weight) * 30)
        net.head.bias.fill_(60.0)
    scorer = musiq.Scorer(net, options=ScorerOptions(device="cpu", precision="bf16"))
    rng = np.random.default_rng(0)
    scores = [scorer.score(rng.integers(0, 256, (64, 64 + i, 3), np.uint8)) for i in range(8)]
    steps = [abs(s * 4 - round(s * 4)) for s in scores]  # bf16 at 60 rounds to 0.25
    assert max(steps) > 1e-3, scores


def test_pre_head_features_are_what_the_head_reads(scorer_1class, golden):
    from conftest import GOLDEN
    name = next(n for n in sorted(golden) if "logits" in golden[n]["1class"])
    tokens = [scorer_1class.tokens(GOLDEN / "images" / name)]
    feats = scorer_1class.engine.features(tokens)
    assert feats.shape == (1, musiq.Architecture().hidden)
    head = scorer_1class.model.head
    logits = feats @ head.weight.detach().numpy().T + head.bias.detach().numpy()
    assert abs(logits[0, 0] - golden[name]["1class"]["score"]) <= 1e-5


def test_options_travel_as_asked_and_each_process_resolves_them(ckpt_1class, golden):
    """The scorer's options used to be replaced by the resolved ones (backend "openvino"), so
    Ray actors, rebuilding the network in memory, were refused the runtime and died."""
    from conftest import GOLDEN
    from musiq.distributed import ModelPayload
    s = musiq.load(ckpt_1class, device="cpu", backend="auto")
    assert s.options.backend == "auto"
    again = ModelPayload.of(s, s.options).scorer()  # what a Ray actor does
    assert again.backend == "torch"  # weights in memory: never a cached conversion
    name = next(n for n in sorted(golden) if "logits" in golden[n]["1class"])
    img = GOLDEN / "images" / name
    assert abs(again.score(img) - golden[name]["1class"]["score"]) <= 1e-5


@pytest.mark.parametrize("masked", [False, True])
def test_last_block_cls_row_equals_the_full_block(masked):
    """The last encoder block computes the CLS row only: it equals row 0 of the full block,
    with and without padding keys."""
    import torch

    from musiq.network.model import EncoderBlock
    torch.manual_seed(0)
    block = EncoderBlock(hidden=32, mlp_dim=64, heads=4).eval()
    x = torch.randn(3, 9, 32)
    mask = None
    if masked:
        keep = torch.ones(3, 9, dtype=torch.bool)
        keep[1, 6:] = False
        keep[2, 2:] = False
        mask = keep[:, None, None, :]
    with torch.no_grad():
        full, cls = block(x, mask), block.forward_cls(x, mask)
    assert cls.shape == (3, 1, 32)
    assert float((full[:, :1] - cls).abs().max()) <= 1e-6


def test_cls_only_last_block_gives_the_full_stacks_logits(scorer_1class):
    """Scoring with the CLS-only last block equals the full stack, batched (the shorter
    image's padding masked)."""
    import torch

    from conftest import GOLDEN
    from musiq import PackedBatch
    tokens = [scorer_1class.tokens(GOLDEN / "images" / n)
              for n in ("coffee_600x400_q90.jpg", "chelsea_20x30_q90.jpg")]
    model, batch = scorer_1class.model, PackedBatch.from_tokens(tokens)
    with torch.inference_mode():
        got = scorer_1class.engine.forward(batch).numpy()
        model.last_block_cls_only = False
        try:
            want = scorer_1class.engine.forward(batch).numpy()
        finally:
            model.last_block_cls_only = True
    assert float(np.abs(got - want).max()) <= 1e-6
