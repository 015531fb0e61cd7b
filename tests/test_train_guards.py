"""``musiq train`` never writes non-finite weights (issue 18 item 12): a label beyond
float32, NaN starting weights and a diverging run stop with an error naming the cause, the
last good checkpoint is kept and the output is not written."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import musiq
from musiq.training import TrainConfig, Trainer

from conftest import ROOT


def config(small_set, init, out, **kw):
    kw = {"labels": small_set / "labels.csv", "val": small_set / "labels.csv", "init": init,
          "output": out, "epochs": 2, "batch_size": 4, "lr": 0.003, "freeze_blocks": 14,
          "new_head": True, **kw}
    return TrainConfig(**kw)


def test_label_beyond_float32_is_refused(small_set, ckpt_1class_single, tmp_path):
    lines = (small_set / "labels.csv").read_text().splitlines()
    name = lines[2].split(",")[0]
    lines[2] = f"{name},1e308"
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o.npz"
    with pytest.raises(musiq.MusiqError, match=rf"labels.csv line 3: label 1e\+308 for "
                                               rf"{name} is not a finite float32"):
        Trainer(config(small_set, ckpt_1class_single, out, labels=labels, images=small_set),
                progress=False, log=None)
    assert not out.exists()


def test_nan_init_is_refused_by_the_cli(small_set, ckpt_1class_single, tmp_path):
    with np.load(ckpt_1class_single) as z:
        arrays = {k: z[k] for k in z.files}
    key = sorted(k for k in arrays if "encoderblock_3" in k)[0]
    arrays[key] = arrays[key].copy()
    arrays[key].flat[0] = np.nan
    bad = tmp_path / "nan_init.npz"
    np.savez(bad, **arrays)
    out = tmp_path / "o.npz"
    r = subprocess.run([sys.executable, "-m", "musiq.cli.main", "train", "--init", str(bad),
                        "--labels", str(small_set / "labels.csv"), "--epochs", "1",
                        "--output", str(out), "--batch-size", "5", "--freeze-blocks", "14",
                        "--device", "cpu", "--quiet"],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 2, r.stderr
    assert "nan_init.npz: non-finite weights" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists() and not (tmp_path / "o.train").exists()


def test_diverging_run_keeps_the_last_good_checkpoint(small_set, ckpt_1class_single,
                                                      tmp_path):
    out = tmp_path / "o.npz"
    box = {}

    def poison(line: str) -> None:  # after epoch 1 is saved, the weights go bad
        if line.startswith("epoch 1/"):
            with torch.no_grad():
                next(box["t"].model.head.parameters()).fill_(float("inf"))

    box["t"] = trainer = Trainer(config(small_set, ckpt_1class_single, out), progress=False,
                                 log=poison)
    with pytest.raises(musiq.MusiqError, match=r"epoch 2, batch 1: the loss is (nan|inf).*"
                                               r"kept in .*o.train \(epoch 1\)"):
        trainer.fit()
    work = tmp_path / "o.train"
    assert sorted(p.name for p in work.glob("*.npz")) == ["best.npz", "epoch_001.npz"]
    for name in ("best.npz", "epoch_001.npz"):
        with np.load(work / name) as z:
            assert all(np.isfinite(z[k]).all() for k in z.files)
    assert not out.exists()
    # a run whose step makes the weights non-finite is stopped before they are written
    resumed = Trainer(config(small_set, ckpt_1class_single, out, resume=True,
                             batch_size=1000), progress=False, log=None)  # one batch
    resumed.optimizer.param_groups[0]["lr"] = float("inf")
    resumed.scheduler.base_lrs = [float("inf")]
    with pytest.raises(musiq.MusiqError, match=r"epoch 2: non-finite weights in .*"
                                               r"kept in .*\(epoch 1\)"):
        resumed.fit()
    assert not (work / "epoch_002.npz").exists() and not out.exists()
