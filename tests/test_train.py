"""Fine-tuning: a real gain on a synthetic quality set, exact round trips, resume, CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import musiq
from musiq.network.checkpoint import PREFIX, parameter_shapes
from musiq.training import TrainConfig, Trainer
from musiq.training.head import ScaledHead
from musiq.training.losses import emd_loss
from musiq.training.probe import fit_ridge
from musiq.training.schedule import warmup_cosine

from conftest import ROOT


@pytest.fixture(scope="module")
def quality_set(tmp_path_factory):
    """90 training and 30 validation 128 px JPEGs of six photos at five quality levels;
    validation images are other crops of the photos than the training ones."""
    from synthetic import PHOTOS, make_set
    root = tmp_path_factory.mktemp("quality_set")
    train = make_set(root / "train", list(PHOTOS[:6]), crops_per_photo=3, size=128, seed=0)
    val = make_set(root / "val", list(PHOTOS[:6]), crops_per_photo=1, size=128, seed=50,
                   whole=False)
    return train, val


def test_finetune_raises_val_srcc_and_round_trips(quality_set, ckpt_1class_single, tmp_path):
    train, val = quality_set
    torch.set_num_threads(2)
    before = musiq.evaluate(ckpt_1class_single, val, bootstrap=0)
    out = tmp_path / "tuned.npz"
    trainer = Trainer(TrainConfig(
        labels=train, val=val, init=ckpt_1class_single, output=out, epochs=3, batch_size=16,
        lr=0.01, warmup_epochs=0.5, new_head=True, head_init="probe", freeze_blocks=12,
        seed=0), progress=False)
    result = trainer.fit()
    after = musiq.evaluate(out, val, bootstrap=0)
    print(f"validation SRCC: before {before.srcc:.4f}, after probe "
          f"{result.initial['srcc']:.4f}, after fine-tuning {after.srcc:.4f}")
    assert after.srcc >= before.srcc + 0.3
    assert after.srcc >= 0.6
    assert after.srcc == pytest.approx(result.best["srcc"], abs=1e-6)
    # the written file gives exactly the scores the trained model gives
    paths = [it.path for it in trainer.val_items]
    loaded = musiq.load(out)
    assert loaded.score_many(paths) == trainer.scorer().score_many(paths)
    # the trainer validated in batches of 16, the scorer batches by 8: on a 0-100 scale the
    # different padding only moves float32 rounding (measured up to 1.3e-4)
    assert np.allclose(loaded.score_many(paths), result.predictions, rtol=0, atol=1e-3)
    # official format: every key, shape float32 under opt/target/
    with np.load(out, allow_pickle=False) as z:
        expected = parameter_shapes(1, 1)
        assert sorted(z.files) == sorted(PREFIX + k for k in expected)
        for k, shape in expected.items():
            assert z[PREFIX + k].shape == shape and z[PREFIX + k].dtype == np.float32
    history = json.loads((tmp_path / "tuned.train" / "history.json").read_text())
    assert [h["epoch"] for h in history["history"]] == [1, 2, 3]


def test_resume_continues_exactly(small_set, ckpt_1class_single, tmp_path):
    def config(name, **kw):
        return TrainConfig(labels=small_set / "labels.csv", val=small_set / "labels.csv",
                           init=ckpt_1class_single, output=tmp_path / name, epochs=2,
                           batch_size=4, lr=0.003, freeze_blocks=13, new_head=True, **kw)

    whole = Trainer(config("whole.npz"), progress=False, log=None).fit()
    assert Trainer(config("split.npz"), progress=False, log=None).fit(stop_after=1) is None
    assert not (tmp_path / "split.npz").exists()
    assert (tmp_path / "split.train" / "epoch_001.npz").exists()
    resumed = Trainer(config("split.npz", resume=True), progress=False, log=None).fit()
    def untimed(history):
        return [{k: v for k, v in h.items() if k not in ("seconds", "images_per_s")}
                for h in history]

    assert untimed(resumed.history) == untimed(whole.history)
    with np.load(whole.output) as a, np.load(resumed.output) as b:
        for k in a.files:
            assert np.array_equal(a[k], b[k]), k


def test_distribution_head_emd_and_bf16(small_set, ckpt_1class_single, tmp_path):
    # 10-vote-column labels: a new 10-way head trained with EMD, under bfloat16 autocast
    rows = (small_set / "labels.csv").read_text().splitlines()[1:]
    lines = ["image," + ",".join(f"c{i}" for i in range(1, 11))]
    for r in rows:
        name, mos = r.split(",")
        peak = 1 + int(float(mos) / 100 * 9)
        votes = [10 if i == peak else 1 for i in range(1, 11)]
        lines.append(name + "," + ",".join(map(str, votes)))
    labels = tmp_path / "votes.csv"
    labels.write_text("\n".join(lines) + "\n")
    cols = musiq.LabelColumns(mos=None, distribution=tuple(f"c{i}" for i in range(1, 11)))
    result = musiq.train(labels, tmp_path / "ava_like.npz", val=labels, images=small_set,
                         val_images=small_set, columns=cols, init=ckpt_1class_single,
                         epochs=1, batch_size=5, freeze_blocks=14, amp="bf16", progress=False,
                         log=None)
    assert np.isfinite(result.history[0]["loss"])
    s = musiq.load(result.output)
    assert s.variant.num_classes == 10
    p = s.predict(small_set / rows[0].split(",")[0])
    assert len(p.distribution) == 10 and 1 <= p.score <= 10


def test_missing_training_image_is_named(small_set, ckpt_1class_single, tmp_path):
    labels = tmp_path / "t.csv"
    labels.write_text("image,mos\nnot_there.jpg,3\n" +
                      "\n".join((small_set / "labels.csv").read_text().splitlines()[1:3]))
    with pytest.raises(musiq.MusiqError, match=r"t.csv: 1 of 3 training image\(s\) not found"
                                               r":\n  .*not_there.jpg \(line 2\)"):
        Trainer(TrainConfig(labels=labels, images=small_set, output=tmp_path / "o.npz",
                            init=ckpt_1class_single), progress=False)


def test_cli_train_from_imagenet_structure(small_set, ckpt_1000class, tmp_path):
    """The contract: ``musiq train --init PATH --labels --val --images --epochs --output``,
    starting from a 1000-class multi-scale checkpoint (the ImageNet layout)."""
    out = tmp_path / "mine.npz"
    p = subprocess.run(
        [sys.executable, "-m", "musiq.cli.main", "train", "--init", str(ckpt_1000class),
         "--labels", str(small_set / "labels.csv"), "--val", str(small_set / "labels.csv"),
         "--images", str(small_set), "--epochs", "1", "--output", str(out),
         "--batch-size", "5", "--freeze-blocks", "14", "--device", "cpu", "--quiet"],
        capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["output"] == str(out) and summary["best"]["epoch"] == 1
    assert "epoch 1/1" in p.stderr and "val SRCC" in p.stderr
    s = musiq.load(out)
    assert (s.variant.num_classes, s.variant.num_scales) == (1, 3)
    # A finished run keeps its result and history, not 400 MB of run files (issue 19).
    assert sorted(p.name for p in (tmp_path / "mine.train").iterdir()) == ["history.json"]
    assert "--keep-run-files keeps them" in p.stderr
    assert "for 1 epoch, 2 steps each" in p.stderr  # 10 images, batches of 5


def test_counts_read_as_english():
    from musiq.training.trainer import _n
    assert (_n(1, "step"), _n(2, "step"), _n(0, "epoch")) == ("1 step", "2 steps", "0 epochs")


def test_remove_run_files_keeps_history(tmp_path):
    from musiq.cli.train import remove_run_files
    for name, size in (("epoch_001.npz", 10), ("best.npz", 20), ("state.pt", 30),
                       ("history.json", 5), ("best.npz.partial", 1)):
        (tmp_path / name).write_bytes(b"x" * size)
    assert remove_run_files(tmp_path) == 61
    assert [p.name for p in tmp_path.iterdir()] == ["history.json"]


def test_schedule_losses_head_and_ridge():
    lrs = [warmup_cosine(s, 10, 2) for s in range(10)]
    assert lrs[:3] == [0.5, 1.0, 1.0] and lrs[-1] > 0 and all(np.diff(lrs[1:]) <= 0)
    assert warmup_cosine(6, 10, 2) == pytest.approx(0.5)  # half-way through the cosine
    # EMD loss equals the metric (r = 2) on the softmax
    logits = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))
    target = torch.softmax(torch.randn(4, 10, generator=torch.Generator().manual_seed(1)), -1)
    got = float(emd_loss(logits, target, 2.0))
    want = musiq.evaluation.metrics.emd(torch.softmax(logits, -1).numpy(), target.numpy(), 2).mean()
    assert got == pytest.approx(want, rel=1e-5)
    # a scaled head folds into an equal plain Dense layer
    lin = torch.nn.Linear(384, 1)
    head = ScaledHead.wrap(lin, mean=50.0, std=20.0)
    x = torch.randn(3, 384)
    assert torch.allclose(head(x), lin(x), atol=1e-4)
    assert torch.allclose(head.folded()(x), head(x), atol=1e-4)
    # the ridge fit recovers an exact linear relation
    rng = np.random.default_rng(0)
    f = rng.normal(size=(200, 5)) + 3.0
    w, b, lam = fit_ridge(f, f @ np.array([1.0, -2, 0, 0.5, 3]) + 7.0)
    assert np.allclose(w, [1.0, -2, 0, 0.5, 3], atol=0.05) and b == pytest.approx(7, abs=0.5)


def _cli_train(args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "musiq.cli.main", "train", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=900)


def test_cli_train_refuses_to_overwrite_logs_cleanly_and_skips_bad_images(
        small_set, ckpt_1class_single, tmp_path):
    """Issue 10: an existing --output is refused without --force; a redirected stderr gets
    epoch lines, not a progress bar; a bad image is skipped and reported; the logged learning
    rate is the one the last step used, not 0 after the schedule's end."""
    labels = tmp_path / "t.csv"
    rows = (small_set / "labels.csv").read_text().splitlines()
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    labels.write_text("\n".join(rows[:5]) + f"\n{tmp_path / 'broken.jpg'},3\n")
    out = tmp_path / "mine.npz"
    out.write_bytes(b"precious")
    common = ["--init", str(ckpt_1class_single), "--labels", str(labels), "--val", str(labels),
              "--images", str(small_set), "--epochs", "1", "--output", str(out),
              "--batch-size", "2", "--freeze-blocks", "14", "--device", "cpu",
              "--warmup-epochs", "0"]
    p = _cli_train(common)
    assert p.returncode == 2, p.stderr
    assert "exists" in p.stderr and "--force" in p.stderr and "Traceback" not in p.stderr
    assert out.read_bytes() == b"precious"
    p = _cli_train(common + ["--force"])
    assert p.returncode == 0, p.stderr
    assert "\r" not in p.stderr and "batch/s" not in p.stderr  # no progress bar in a log
    assert "skipping" in p.stderr and "broken.jpg" in p.stderr
    summary = json.loads(p.stdout)
    assert [s["path"] for s in summary["skipped"]] == [str(tmp_path / "broken.jpg")]
    lr = [float(line.split(" lr ")[1].split()[0]) for line in p.stderr.splitlines()
          if line.startswith("epoch 1/1")]
    assert lr and lr[0] > 0
    assert musiq.load(out).variant.num_classes == 1
