"""The ``musiq`` command, run as a user runs it."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import GOLDEN

IMAGES = GOLDEN / "images"
MUSIQ = [sys.executable, "-m", "musiq.cli.main"]


def musiq_cli(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.pop("MUSIQ_CHECKPOINT_DIR", None)
    if cwd is not None:  # a temporary folder: its ./musiq_original is the one to search
        e.pop("MUSIQ_LOCAL_DIR", None)
    e.update(env or {})
    return subprocess.run([*MUSIQ, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=e, timeout=300)


def test_json_contract(ckpt_10class, golden, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0garbage")
    names = ["chelsea_20x30_q90.jpg", "coffee_600x400_q30.jpg"]
    r = musiq_cli("score", *(IMAGES / n for n in names), bad, "--model", ckpt_10class,
                  "--format", "json")
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    assert [o["path"] for o in out] == [str(IMAGES / n) for n in names] + [str(bad)]
    for o, n in zip(out, names):
        assert o["error"] is None
        assert abs(o["score"] - golden[n]["10class"]["score"]) <= 1e-4
        assert len(o["distribution"]) == 10 and o["std"] > 0
    assert out[2]["score"] is None and "JPEG" in out[2]["error"]
    assert "broken.jpg" in r.stderr and "1 of 3" in r.stderr


def test_seed_form(ckpt_1class, golden):
    r = musiq_cli("score", "--image", IMAGES / "rocket_640x427_q85.jpg", "--model", ckpt_1class)
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    assert line.startswith("MUSIQ score: ")
    assert abs(float(line.split(": ")[1]) - golden["rocket_640x427_q85.jpg"]["1class"]["score"]) <= 1e-4


def test_csv_and_table_and_folder(ckpt_1class, golden, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for n in ("coffee_30x20_q90.jpg", "chelsea_20x30_q90.jpg"):
        (folder / n).write_bytes((IMAGES / n).read_bytes())
    (folder / "readme.txt").write_text("not an image, not listed")
    r = musiq_cli("score", folder, "--model", ckpt_1class, "--format", "csv")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [Path(row["path"]).name for row in rows] == ["chelsea_20x30_q90.jpg",
                                                       "coffee_30x20_q90.jpg"]
    for row in rows:
        assert abs(float(row["score"]) - golden[Path(row["path"]).name]["1class"]["score"]) <= 1e-4
        assert row["error"] == ""
    t = musiq_cli("score", folder, "--model", ckpt_1class)
    assert t.returncode == 0 and "chelsea_20x30_q90.jpg" in t.stdout and "score" in t.stdout


def test_missing_checkpoint_says_what_to_do(tmp_path):
    r = musiq_cli("score", "--image", IMAGES / "coffee_30x20_q90.jpg", "--model", "spaq",
                  cwd=tmp_path, env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert r.returncode == 2
    assert "https://storage.googleapis.com/gresearch/musiq/spaq_ckpt.npz" in r.stderr
    assert "musiq_original/checkpoints/spaq_ckpt.npz" in r.stderr
    assert "Traceback" not in r.stderr


def test_checkpoint_found_in_local_dir(ckpt_1class, tmp_path, golden):
    local = tmp_path / "musiq_original" / "checkpoints"
    local.mkdir(parents=True)
    (local / "koniq_ckpt.npz").symlink_to(ckpt_1class)
    r = musiq_cli("score", IMAGES / "coffee_30x20_q90.jpg", "--format", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert abs(json.loads(r.stdout)[0]["score"]
               - golden["coffee_30x20_q90.jpg"]["1class"]["score"]) <= 1e-4
    m = musiq_cli("models", "--format", "json", cwd=tmp_path)
    found = {row["name"]: row["found"] for row in json.loads(m.stdout)}
    assert found["koniq"].endswith("koniq_ckpt.npz") and found["spaq"] is None


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 nope")
    r = musiq_cli("score", IMAGES / "coffee_30x20_q90.jpg", "--model", tmp_path / "bad.npz")
    assert r.returncode == 2 and "bad.npz" in r.stderr and "Traceback" not in r.stderr


def test_options_between_images(ckpt_1class, golden):
    a, b = IMAGES / "coffee_30x20_q90.jpg", IMAGES / "chelsea_20x30_q90.jpg"
    r = musiq_cli("score", a, "--model", ckpt_1class, b, "--format", "json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [o["path"] for o in out] == [str(a), str(b)]
    assert abs(out[1]["score"] - golden[b.name]["1class"]["score"]) <= 1e-4
    bad = musiq_cli("score", a, "--model", ckpt_1class, "--no-such-option")
    assert bad.returncode == 2 and "unrecognized arguments: --no-such-option" in bad.stderr
