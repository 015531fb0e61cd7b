"""``musiq report``: reading scores files, and the page in headless Chromium from file://
(screenshot pixel checks, sorting, filters, failures, AVA distributions, paging).

The browser part skips like tests/test_serve_page.py when chromium/node/playwright-core are
missing, unless ``MUSIQ_REQUIRE_BROWSER=1``. The screenshot goes to
``test-artifacts/report-page.png``.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from browser_check import BROWSER_DIR, missing_browser
from conftest import GOLDEN, ROOT
from musiq.report import read_scores

MUSIQ = [sys.executable, "-m", "musiq.cli.main"]
ARTIFACTS = ROOT / "test-artifacts"
NAMES = ["chelsea_451x300_q75.jpg", "coffee_600x400_q90.jpg", "rocket_640x427_q85.jpg",
         "camera_512x512_gray_q90.jpg", "astronaut_448x333_q90.jpg"]


def cli(*args):
    return subprocess.run([*MUSIQ, *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)




@pytest.fixture(scope="module")
def ava_scores(ckpt_10class, tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    bad = root / "broken.jpg"
    bad.write_bytes(b"this is not a picture")
    out = root / "scores.jsonl"
    r = cli("score", *[GOLDEN / "images" / n for n in NAMES], bad, "--model", ckpt_10class,
            "-o", out)
    assert r.returncode == 1, r.stderr  # one image failed
    return out


def test_reads_csv_and_jsonl_alike(ckpt_10class, ava_scores, tmp_path):
    csv_out = tmp_path / "scores.csv"
    cli("score", *[GOLDEN / "images" / n for n in NAMES[:2]], "--model", ckpt_10class,
        "-o", csv_out)
    a = {r.path: r for r in read_scores(csv_out)}
    b = {r.path: r for r in read_scores(ava_scores)}
    assert len(a) == 2
    for p, row in a.items():
        assert row.score == pytest.approx(b[p].score, rel=1e-6)
        assert row.distribution == pytest.approx(b[p].distribution, rel=1e-5)
    failed = [r for r in b.values() if r.score is None]
    assert len(failed) == 1 and failed[0].path.endswith("broken.jpg") and failed[0].error


def test_bad_scores_file_is_named(tmp_path):
    bad = tmp_path / "notes.csv"
    bad.write_text("a,b\n1,2\n")
    r = cli("report", bad, "-o", tmp_path / "r.html")
    assert r.returncode == 2 and "notes.csv" in r.stderr and "path" in r.stderr
    assert "Traceback" not in r.stderr


def test_report_page_in_chromium(ava_scores, tmp_path):
    reason = missing_browser()
    if reason:
        if os.environ.get("MUSIQ_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser test required but {reason}")
        pytest.skip(reason)
    page = tmp_path / "report.html"
    r = cli("report", ava_scores, "-o", page)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "report_thumbs").glob("*.jpg"))) == len(NAMES)
    text = page.read_text()
    # Nothing fetched from a CDN (report_test.mjs also fails on any non-file request).
    assert not any(f'{a}="http' in text for a in ("src", "href")) and "<link" not in text
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report-page.png"
    shot.unlink(missing_ok=True)
    run = subprocess.run(["node", str(BROWSER_DIR / "report_test.mjs"), str(page), str(shot),
                          "coffee"], capture_output=True, text=True, timeout=300,
                         cwd=BROWSER_DIR)
    assert run.returncode == 0, run.stdout + run.stderr
    shown = json.loads(run.stdout.strip().splitlines()[-1])
    rows = read_scores(ava_scores)
    scores = sorted((r.score for r in rows if r.score is not None), reverse=True)

    cards = shown["initial"]["cards"]
    assert [c["score"] for c in cards[:-1]] == pytest.approx(scores, rel=1e-6)  # best first
    assert cards[-1]["score"] is None and cards[-1]["name"] == "broken.jpg"
    assert all(c["img"] > 0 for c in cards[:-1]) and all(c["dist"] == 10 for c in cards[:-1])
    assert shown["range"] == "1,10" and "scores 1 to 10" in shown["model"]
    assert sum(map(int, shown["counts"].split(","))) == len(scores)
    assert shown["stats"]["images"] == str(len(NAMES) + 1) and shown["stats"]["failed"] == "1"
    assert float(shown["stats"]["mean"]) == pytest.approx(np.mean(scores), abs=1e-3)
    assert len(shown["failures"]) == 1 and shown["failures"][0][0].endswith("broken.jpg")
    asc = [c["score"] for c in shown["ascending"]["cards"] if c["score"] is not None]
    assert asc == pytest.approx(sorted(scores), rel=1e-6)
    assert [c["name"] for c in shown["filtered"]["cards"]] == ["coffee_600x400_q90.jpg"]
    above = [c["score"] for c in shown["above"]["cards"]]
    assert above and all(s is not None and s >= shown["cut"] for s in above)
    assert len(above) == sum(s >= shown["cut"] for s in scores)

    # The screenshot shows thumbnails (many colours) and the histogram's bars (#2b6cb0).
    px = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert px.shape[:2] == (900, 1200)
    bar = (np.abs(px - [0x2b, 0x6c, 0xb0]).sum(axis=2) < 12).sum()
    assert bar > 2000
    lower = px[500:]
    assert len(np.unique(lower.reshape(-1, 3) // 16, axis=0)) > 200  # photos, not flat UI


def test_ten_thousand_rows_are_paged(tmp_path):
    reason = missing_browser()
    if reason:
        if os.environ.get("MUSIQ_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser test required but {reason}")
        pytest.skip(reason)
    scores = tmp_path / "big.csv"
    rng = np.random.default_rng(0)
    with open(scores, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "score", "error"])
        for i in range(10_000):  # files that do not exist here: cards without pictures
            w.writerow([f"shots/img_{i:05d}.jpg", f"{rng.uniform(0, 100):.4f}", ""])
    page = tmp_path / "big.html"
    r = cli("report", scores, "-o", page, "--embed")
    assert r.returncode == 0, r.stderr
    run = subprocess.run(["node", str(BROWSER_DIR / "report_test.mjs"), str(page),
                          str(tmp_path / "big.png"), "img_0999"], capture_output=True,
                         text=True, timeout=300, cwd=BROWSER_DIR)
    assert run.returncode == 0, run.stdout + run.stderr
    shown = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(shown["initial"]["cards"]) == 100 and shown["initial"]["page"] == "page 1 of 100"
    assert shown["paged"]["page"] == "page 2 of 100" and len(shown["paged"]["cards"]) == 100
    first, second = shown["initial"]["cards"], shown["paged"]["cards"]
    assert first[-1]["score"] >= second[0]["score"]
    assert shown["filtered"]["shown"] == "10 of 10000 shown"  # img_09990 .. img_09999
