"""``musiq score`` over many files, run as a user runs it: folders, globs, output files,
resume, per-file errors."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import GOLDEN

IMAGES = GOLDEN / "images"
MUSIQ = [sys.executable, "-m", "musiq.cli.main"]
NAMES = ["chelsea_20x30_q90.jpg", "astronaut_333x517_q85.jpg", "chelsea_451x300_q75.jpg"]


def musiq_cli(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("MUSIQ_CHECKPOINT_DIR", None)
    return subprocess.run([*MUSIQ, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=600)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """A photo folder: two images at the top, one in a subfolder, a corrupt file, a text file."""
    root = tmp_path_factory.mktemp("library")
    (root / "sub").mkdir()
    shutil.copy(IMAGES / NAMES[0], root / NAMES[0])
    shutil.copy(IMAGES / NAMES[1], root / NAMES[1])
    shutil.copy(IMAGES / NAMES[2], root / "sub" / NAMES[2])
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def expected(scorer_1class, library):
    return {str(p): scorer_1class.score(p) for p in library.rglob("*.jpg")
            if p.name != "broken.jpg"}


def test_recursive_folder_to_csv_file_with_errors(ckpt_1class, library, expected, tmp_path):
    out = tmp_path / "scores.csv"
    r = musiq_cli("score", library, "--recursive", "--model", ckpt_1class, "--output", out,
                  "--batch-size", "2")
    assert r.returncode == 1  # one file failed
    assert r.stdout == ""     # results went to the file
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [row["path"] for row in rows] == sorted(
        [str(library / NAMES[0]), str(library / NAMES[1]), str(library / "broken.jpg"),
         str(library / "sub" / NAMES[2])])
    for row in rows:
        if row["path"].endswith("broken.jpg"):
            assert row["score"] == "" and "JPEG" in row["error"]
        else:
            assert row["error"] == ""
            assert abs(float(row["score"]) - expected[row["path"]]) <= 1e-5
    assert "1 of 4 image(s) failed" in r.stderr and "broken.jpg" in r.stderr
    assert "3 scored, 1 failed" in r.stderr


def test_non_recursive_glob_and_jsonl(ckpt_1class, library, expected, tmp_path):
    out = tmp_path / "scores.jsonl"
    r = musiq_cli("score", str(library / "*.jpg"), "--model", ckpt_1class, "-o", out,
                  "--format", "json", "--workers", "1")
    assert r.returncode == 1
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    printed = json.loads(r.stdout)  # --format still prints the contract's JSON array
    assert [o["path"] for o in lines] == [o["path"] for o in printed] == sorted(
        str(p) for p in library.glob("*.jpg"))
    for o in lines:
        assert set(o) >= {"path", "score", "error"}
        if o["error"] is None:
            assert abs(o["score"] - expected[o["path"]]) <= 1e-5
        else:
            assert o["score"] is None


def test_resume_skips_what_is_done_and_repairs_a_cut_line(ckpt_1class, library, expected,
                                                          tmp_path):
    out = tmp_path / "scores.jsonl"
    first = str(library / NAMES[0])
    # A previous run scored one image (the score is a marker: a rerun would replace it) and
    # was killed while writing the next row.
    out.write_text(json.dumps({"path": first, "score": 123.0, "error": None}) + "\n"
                   + '{"path": "' + str(library / NAMES[1]) + '", "sco')
    r = musiq_cli("score", library / NAMES[0], library / NAMES[1], library / "sub" / NAMES[2],
                  "--model", ckpt_1class, "-o", out, "--resume")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [o["path"] for o in rows] == [first, str(library / NAMES[1]),
                                         str(library / "sub" / NAMES[2])]
    assert rows[0]["score"] == 123.0  # not scored again
    for o in rows[1:]:
        assert abs(o["score"] - expected[o["path"]]) <= 1e-5
    assert "1 skipped" in r.stderr
    # Everything done: a second resume scores nothing and adds nothing.
    r = musiq_cli("score", library / NAMES[0], library / NAMES[1], "--model", ckpt_1class,
                  "-o", out, "--resume")
    assert r.returncode == 0 and len(out.read_text().splitlines()) == 3


def test_existing_output_is_not_overwritten_by_accident(ckpt_1class, library, tmp_path):
    out = tmp_path / "scores.csv"
    out.write_text("path,score,error\nx.jpg,1.0,\n")
    r = musiq_cli("score", library / NAMES[0], "--model", ckpt_1class, "-o", out)
    assert r.returncode == 2 and "--resume" in r.stderr
    assert out.read_text() == "path,score,error\nx.jpg,1.0,\n"
    r = musiq_cli("score", library / NAMES[0], "--model", ckpt_1class, "-o", tmp_path / "x.txt")
    assert r.returncode == 2 and ".csv or .jsonl" in r.stderr


def test_ava_csv_file_has_distribution_columns(ckpt_10class, library, tmp_path):
    out = tmp_path / "ava.csv"
    r = musiq_cli("score", library / NAMES[0], library / "broken.jpg", "--model", ckpt_10class,
                  "-o", out, "--precision", "bf16")
    assert r.returncode == 1
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(rows[0]) == (["path", "score", "error", "std"] + [f"p{i}" for i in range(1, 11)]
                             + ["frames", "spread"])  # video columns, empty for images
    probs = [float(rows[0][f"p{i}"]) for i in range(1, 11)]
    assert abs(sum(probs) - 1) < 1e-5 and 1 <= float(rows[0]["score"]) <= 10
    assert rows[1]["score"] == "" and rows[1]["p1"] == "" and rows[1]["error"]
