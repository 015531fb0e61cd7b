"""musiq.evaluate and ``musiq evaluate``: statistics over real scores, reports, failures."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

import musiq

from conftest import ROOT


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "musiq.cli.main", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=600)


def test_api_statistics_plot_and_report(small_set, scorer_1class, tmp_path):
    labels = small_set / "labels.csv"
    r = musiq.evaluate(scorer_1class, labels, bootstrap=200, plot=tmp_path / "s.png",
                       report=tmp_path / "r.json")
    assert r.n == 10 and not r.failed
    pred = np.array([x["prediction"] for x in r.items])
    label = np.array([x["label"] for x in r.items])
    # the predictions are the scorer's own scores (batched the same way), in file order
    names = [x["image"] for x in r.items]
    assert np.array_equal(pred, scorer_1class.score_many([small_set / n for n in names]))
    assert r.srcc == pytest.approx(stats.spearmanr(pred, label)[0])
    assert r.krcc == pytest.approx(stats.kendalltau(pred, label)[0])
    assert r.plcc == pytest.approx(stats.pearsonr(pred, label)[0])
    assert r.ci["srcc"][0] <= r.srcc <= r.ci["srcc"][1]
    png = (tmp_path / "s.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["n"] == 10 and len(report["items"]) == 10 and report["srcc"] == r.srcc


def test_cli_json_contract_and_missing_image(small_set, ckpt_1class_single, tmp_path):
    labels = tmp_path / "labels.csv"
    rows = (small_set / "labels.csv").read_text().splitlines()
    labels.write_text("\n".join(rows[:6] + ["no_such_photo.jpg,50.0"]) + "\n")
    p = run_cli("evaluate", "--model", str(ckpt_1class_single), "--labels", str(labels),
                "--images", str(small_set), "--format", "json", "--device", "cpu",
                "--bootstrap", "100")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    for key in ("n", "srcc", "plcc", "krcc", "rmse"):
        assert key in d
    assert d["n"] == 5 and d["n_failed"] == 1
    assert d["failed"][0]["image"] == "no_such_photo.jpg"
    assert "no_such_photo.jpg" in p.stderr and "no such file" in p.stderr
    # --strict turns the missing image into a failure exit code; the table format works
    p = run_cli("evaluate", "--model", str(ckpt_1class_single), "--labels", str(labels),
                "--images", str(small_set), "--strict", "--bootstrap", "0", "--device", "cpu")
    assert p.returncode == 1
    assert "SRCC" in p.stdout and "KRCC" in p.stdout


def test_cli_bad_label_file_names_it(small_set, ckpt_1class, tmp_path):
    labels = tmp_path / "bad.csv"
    labels.write_text("file,score\na.jpg,1\n")
    p = run_cli("evaluate", "--model", str(ckpt_1class), "--labels", str(labels),
                "--device", "cpu")
    assert p.returncode == 2
    assert "bad.csv: no image column 'image'" in p.stderr


def test_distribution_labels_emd(small_set, scorer_10class, tmp_path):
    # AVA.txt layout: index, image id, 10 vote counts, tags, challenge
    names = sorted(p.stem for p in small_set.glob("*.jpg"))[:6]
    rng = np.random.default_rng(3)
    lines = [f"{i} {n} " + " ".join(str(v) for v in rng.integers(0, 30, 10)) + " 0 0 1"
             for i, n in enumerate(names)]
    ava = tmp_path / "AVA.txt"
    ava.write_text("\n".join(lines) + "\n")
    r = musiq.evaluate(scorer_10class, ava, images=small_set,
                       columns=musiq.evaluation.labels.preset("ava"), bootstrap=50)
    assert r.n == 6
    assert r.emd is not None and 0 < r.emd < 1
    assert r.emd_ci[0] <= r.emd <= r.emd_ci[1]
    votes = np.array([[float(v) for v in ln.split()[2:12]] for ln in lines])
    means = (votes / votes.sum(1, keepdims=True) * np.arange(1, 11)).sum(1)
    assert np.allclose([x["label"] for x in r.items], means)
    pred = np.array([x["distribution"] for x in r.items])
    assert r.emd == pytest.approx(float(musiq.evaluation.metrics.emd(pred, votes).mean()))
