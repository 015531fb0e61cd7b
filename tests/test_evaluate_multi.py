"""``musiq evaluate`` with several models (issue 21): one row per model on the same labels,
each model's numbers exactly those of its single-model evaluate; the plot one panel each."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

import musiq
from conftest import ROOT
from musiq.evaluation.compare import Comparison
from musiq.multi_scorer import MultiScorer

KEYS = ("n", "srcc", "plcc", "plcc_logistic", "krcc", "rmse", "rmse_logistic", "ci",
        "n_failed")


def same(a: dict, b: dict, where="") -> None:
    """Every statistic of ``KEYS`` equal (intervals too), to float round-off."""
    for key in KEYS:
        if key == "ci":
            assert a["ci"].keys() == b["ci"].keys(), where
            for stat, lo_hi in b["ci"].items():
                assert a["ci"][stat] == pytest.approx(lo_hi, rel=1e-6, abs=1e-9), (where, stat)
        else:
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), (where, key)


def run_cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "musiq.cli.main", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)


@pytest.fixture(scope="module")
def labels(small_set, tmp_path_factory):
    """The small set's labels and one missing image (a failure for every model)."""
    path = tmp_path_factory.mktemp("labels") / "labels.csv"
    rows = (small_set / "labels.csv").read_text().splitlines()
    path.write_text("\n".join(rows + ["no_such_photo.jpg,50.0"]) + "\n")
    return path


def test_api_each_model_as_alone(small_set, labels, scorer_1class, scorer_10class, tmp_path):
    panel = MultiScorer({"one": scorer_1class, "ten": scorer_10class})
    both = musiq.evaluate(panel, labels, images=small_set, bootstrap=200,
                          plot=tmp_path / "p.png", report=tmp_path / "r.json")
    assert isinstance(both, Comparison) and both.names == ["one", "ten"]
    for name, scorer in (("one", scorer_1class), ("ten", scorer_10class)):
        alone = musiq.evaluate(scorer, labels, images=small_set, bootstrap=200)
        got = both[name]
        assert [x["image"] for x in got.items] == [x["image"] for x in alone.items]
        assert [x["prediction"] for x in got.items] == pytest.approx(
            [x["prediction"] for x in alone.items], rel=1e-6, abs=1e-6)
        a, b = got.to_dict(), alone.to_dict()
        same(a, b, name)
        assert a["failed"] == b["failed"] and a["model"] == name
    with Image.open(tmp_path / "p.png") as im:  # two panels side by side
        assert im.size[0] >= 850 and im.size[0] > 1.5 * im.size[1]
    report = json.loads((tmp_path / "r.json").read_text())
    assert list(report["models"]) == ["one", "ten"]
    assert len(report["models"]["ten"]["items"]) == 10 and report["plot"] == str(tmp_path / "p.png")


def test_cli_table_and_json_per_model(small_set, labels, ckpt_1class, ckpt_1class_single):
    common = ("--labels", labels, "--images", small_set, "--device", "cpu", "--bootstrap", "100")
    alone = {}
    for ckpt in (ckpt_1class, ckpt_1class_single):
        p = run_cli("evaluate", "--model", ckpt, "--format", "json", *common)
        assert p.returncode == 0, p.stderr
        alone[ckpt.stem] = json.loads(p.stdout)
    p = run_cli("evaluate", "--model", f"{ckpt_1class},{ckpt_1class_single}", "--format",
                "json", *common)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert list(d["models"]) == [ckpt_1class.stem, ckpt_1class_single.stem]
    for name, one in alone.items():
        same(d["models"][name], one, name)
    assert f"model {ckpt_1class.stem}: 1 labelled image(s)" in p.stderr
    assert "no_such_photo.jpg" in p.stderr

    p = run_cli("evaluate", "--model", ckpt_1class, "--model", ckpt_1class_single, *common)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == f"labels {labels}" and lines[1].split()[:4] == ["model", "n", "failed",
                                                                       "SRCC"]
    for line, name in zip(lines[2:4], alone):
        cells = line.split()
        srcc = alone[name]["srcc"]
        lo, hi = alone[name]["ci"]["srcc"]
        assert cells[:4] == [name, "10", "1", f"{srcc:.4f}"]
        assert cells[4:6] == [f"[{lo:.4f},", f"{hi:.4f}]"]
    assert "95% bootstrap" in p.stdout


def test_cli_single_model_table_unchanged(small_set, labels, ckpt_1class):
    p = run_cli("evaluate", "--model", ckpt_1class, "--labels", labels, "--images", small_set,
                "--device", "cpu", "--bootstrap", "0")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"model  {ckpt_1class.name}\nlabels {labels}\n")
    assert "SRCC" in p.stdout and "\nmodel " not in p.stdout


def test_cli_same_name_twice_is_refused(small_set, labels, ckpt_1class):
    p = run_cli("evaluate", "--model", f"{ckpt_1class},{ckpt_1class}", "--labels", labels,
                "--images", small_set, "--device", "cpu")
    assert p.returncode == 2 and "two models are named" in p.stderr
    assert "Traceback" not in p.stderr
