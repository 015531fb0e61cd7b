"""Folder scans say what they left out; '-' and URLs get a hint; progress lines when stderr
is not a terminal (nohup, CI)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import GOLDEN
from musiq.cli.inputs import collect, video_scoring
from musiq.cli.progress import line, track
from musiq.results.rows import Prediction

IMAGES = GOLDEN / "images"
SMALL = ["coffee_30x20_q90.jpg", "chelsea_20x30_q90.jpg", "coffee_30x20_q90.jpg"]


def musiq(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "musiq.cli.main", *map(str, args)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def photos(tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for i, n in enumerate(SMALL):
        (folder / f"{i}_{n}").write_bytes((IMAGES / n).read_bytes())
    for n in ("a.HEIC", "b.heic", "notes.txt", "clip.mp4", ".DS_Store", "README"):
        (folder / n).write_bytes(b"x")
    (folder / "sub" / "c.heic").write_bytes(b"x")
    return folder


def test_folder_scan_counts_what_it_skipped(tmp_path, ckpt_1class):
    folder = photos(tmp_path)
    found = collect([str(folder)])
    if video_scoring():  # clip.mp4 is scanned (and fails: it is no video)
        assert len(found.files) == 4 and str(folder / "clip.mp4") in found.files
        assert found.skipped_summary() == (
            "skipped 4 files in folders: 2 .heic (unsupported format), 1 (no suffix) (not an "
            "image suffix), 1 .txt (not an image suffix)")
    else:
        assert len(found.files) == 3
        assert found.skipped_summary() == (
            "skipped 5 files in folders: 2 .heic (unsupported format), 1 (no suffix) (not an "
            "image suffix), 1 .mp4 (video; needs the 'video' extra), 1 .txt (not an image "
            "suffix)")
    assert collect([str(folder)], recursive=True).skipped[".heic"] == 3
    r = musiq("score", folder, "--model", ckpt_1class, "--format", "csv")
    assert r.returncode == (1 if video_scoring() else 0), r.stderr
    n = 4 if video_scoring() else 5
    assert f"musiq score: skipped {n} files in folders: 2 .heic (unsupported format)" in r.stderr
    only_heic = tmp_path / "heic"
    only_heic.mkdir()
    (only_heic / "x.heic").write_bytes(b"x")
    r = musiq("score", only_heic, "--model", ckpt_1class)
    assert r.returncode == 2 and "skipped 1 file in folders: 1 .heic" in r.stderr


def test_stdin_dash_and_urls_get_a_hint(ckpt_1class):
    r = musiq("score", "-", "https://example.com/a.jpg", IMAGES / SMALL[0], "--model",
              ckpt_1class, "--format", "csv")
    assert r.returncode == 1
    assert "use --files-from -" in r.stdout and "URLs are not supported" in r.stdout
    assert "no such file" not in r.stdout.lower()
    assert collect(["s3://bucket/a.jpg"], uris=True).files == ["s3://bucket/a.jpg"]  # Ray


def test_progress_lines_without_a_terminal(ckpt_1class):
    r = musiq("score", *(IMAGES / n for n in SMALL[:2]), IMAGES / "missing.jpg",
              "--model", ckpt_1class, "--format", "csv", env={"MUSIQ_PROGRESS_SECONDS": "0"})
    assert r.returncode == 1
    progress = [x for x in r.stderr.splitlines()
                if re.fullmatch(r"musiq score: \d/3 images \(\d+\.\d %\), [\d.]+ images/s, "
                                r"\d failed(, about \d+ s left)?", x)]
    assert [p.split()[2] for p in progress] == ["1/3", "2/3"], r.stderr
    assert "\r" not in r.stderr  # no bar
    quiet = musiq("score", *(IMAGES / n for n in SMALL[:2]), "--model", ckpt_1class,
                  "--format", "csv", "--quiet", env={"MUSIQ_PROGRESS_SECONDS": "0"})
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_progress_line_figures_and_interval(capsys):
    assert line(120, 2000, 0, 92.3) == ("120/2000 images (6.0 %), 1.30 images/s, 0 failed, "
                                        "about 24 min left")
    assert line(3, 4, 1, 3.0) == "3/4 images (75.0 %), 1.00 images/s, 1 failed, about 1 s left"
    ticks = iter([0.0, 10.0, 31.0, 40.0, 62.0, 70.0])
    preds = [Prediction(source=str(i), score=1.0) for i in range(5)]
    assert list(track(iter(preds), 5, bar=False, lines=True, clock=lambda: next(ticks))) == preds
    out = capsys.readouterr().err.splitlines()
    assert [o.split()[2] for o in out] == ["2/5", "4/5"]  # at 31 s and 62 s, every 30 s
