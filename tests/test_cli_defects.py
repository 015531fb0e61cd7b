"""Defects a new user and an attacker found in the CLI, files and decoding (issue 10), each
met as a user meets it: ``musiq`` run as a subprocess on real files."""
from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import GOLDEN

IMAGES = GOLDEN / "images"
MUSIQ = [sys.executable, "-m", "musiq.cli.main"]
SMALL = "chelsea_20x30_q90.jpg"
OTHER = "coffee_30x20_q90.jpg"


def musiq_cli(*args, cwd=None, timeout=300, stdin=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("MUSIQ_CHECKPOINT_DIR", None)
    argv = [*MUSIQ, *(a if isinstance(a, bytes) else str(a) for a in args)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout, stdin=stdin, errors="surrogateescape")


def no_traceback(r: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in r.stderr, r.stderr


def rows(path: Path) -> list[dict]:
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    return list(csv.DictReader(io.StringIO(text, newline="")))


# -- files: only regular files, size-bounded ---------------------------------------------------

def test_fifo_device_and_sparse_giant_are_error_rows_not_hangs(ckpt_1class, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(IMAGES / SMALL, folder / "good.jpg")
    os.mkfifo(folder / "pipe.jpg")               # found by a folder scan
    os.mkfifo(tmp_path / "listed.jpg")           # listed in --files-from
    with open(tmp_path / "sparse.jpg", "wb") as f:
        f.truncate(4 * 2**30)                     # 4 GB of nothing, no disk used
    listing = tmp_path / "list.txt"
    listing.write_text(f"{tmp_path / 'listed.jpg'}\n/dev/zero\n")
    r = musiq_cli("score", folder, "-r", tmp_path / "sparse.jpg", "--files-from", listing,
                  "--model", ckpt_1class, "--format", "json", timeout=120)
    no_traceback(r)
    assert r.returncode == 1
    out = {Path(o["path"]).name: o for o in json.loads(r.stdout)}
    assert out["good.jpg"]["error"] is None and out["good.jpg"]["score"] is not None
    assert "FIFO" in out["pipe.jpg"]["error"] and "not a regular file" in out["pipe.jpg"]["error"]
    assert "FIFO" in out["listed.jpg"]["error"]
    assert "device" in out["zero"]["error"]
    assert "4,294,967,296 bytes, above the limit of" in out["sparse.jpg"]["error"]


def test_symlink_loop_in_a_folder_does_not_lose_the_other_results(ckpt_1class, tmp_path):
    shutil.copy(IMAGES / SMALL, tmp_path / "good.jpg")
    os.symlink("loop.jpg", tmp_path / "loop.jpg")
    r = musiq_cli("score", tmp_path, tmp_path / "loop.jpg", "--model", ckpt_1class,
                  "--format", "json")
    no_traceback(r)
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert [Path(o["path"]).name for o in out] == ["good.jpg", "loop.jpg"]  # listed once
    assert out[0]["error"] is None
    assert "symbolic links" in out[1]["error"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders whatever their mode")
def test_unreadable_subfolder_is_reported(ckpt_1class, tmp_path):
    shutil.copy(IMAGES / SMALL, tmp_path / "good.jpg")
    locked = tmp_path / "locked"
    locked.mkdir()
    shutil.copy(IMAGES / SMALL, locked / "hidden.jpg")
    locked.chmod(0)
    try:
        r = musiq_cli("score", tmp_path, "-r", "--model", ckpt_1class, "--format", "json")
    finally:
        locked.chmod(0o755)
    no_traceback(r)
    out = json.loads(r.stdout)
    assert any(o["path"] == str(locked) and "cannot list folder" in o["error"] for o in out)


def test_unreadable_folders_become_problems_not_exceptions(tmp_path, monkeypatch):
    # As root (this machine) no folder is unreadable: the listing's error path, directly.
    from musiq.cli import inputs
    (tmp_path / "sub").mkdir()
    real = os.scandir

    def scandir(path="."):
        if str(path).endswith("sub"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found = inputs.collect([str(tmp_path / "sub"), str(tmp_path)], recursive=True)
    assert found.problems and found.problems[0][1] == "cannot list folder (Permission denied)"
    found = inputs.collect([str(tmp_path / "sub")])
    assert found.problems == [(str(tmp_path / "sub"), "cannot list folder (Permission denied)")]


# -- decoding cost ------------------------------------------------------------------------

def _png(width: int, height: int, extra_chunks: bytes = b"") -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    raw = zlib.compress(b"\x00" * ((width + 1) * height), 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0,
                                                             0, 0, 0))
            + extra_chunks + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def test_cheap_file_with_costly_image_is_refused_naming_the_limit(ckpt_1class, tmp_path):
    big = tmp_path / "flat.png"
    big.write_bytes(_png(8000, 7000))  # 56 MP of zeros in ~55 KB
    jpeg = bytearray((IMAGES / SMALL).read_bytes())
    sof = jpeg.find(b"\xff\xc0")
    jpeg[sof + 5:sof + 9] = struct.pack(">HH", 6000, 6000)  # a 1 KB file claiming 36 MP
    (tmp_path / "bomb.jpg").write_bytes(bytes(jpeg))
    r = musiq_cli("score", big, tmp_path / "bomb.jpg", "--model", ckpt_1class,
                  "--format", "json", timeout=120)
    no_traceback(r)
    flat, bomb = json.loads(r.stdout)
    assert "above the limit of 50,000,000" in flat["error"] and "tokens" in flat["error"]
    assert "pixels per byte, above the limit of 1,024" in bomb["error"]


def test_many_scans_are_refused():
    from musiq.decoding.decode import decode_bytes
    from musiq.errors import ImageError
    data = (IMAGES / SMALL).read_bytes()
    with pytest.raises(ImageError, match="300 scans, above the limit of 256"):
        decode_bytes(data[:-2] + b"\xff\xda\x00\x02" * 299 + b"\xff\xd9")


def test_png_with_a_2mb_colour_profile_scores_as_without(ckpt_1class, tmp_path):
    img = Image.open(IMAGES / "astronaut_512x512.png").convert("RGB").crop((0, 0, 64, 48))
    img.save(tmp_path / "plain.png")
    profile = np.random.default_rng(0).integers(0, 256, 2 * 2**20, dtype=np.uint8).tobytes()
    img.save(tmp_path / "profile.png", icc_profile=profile)
    r = musiq_cli("score", tmp_path / "plain.png", tmp_path / "profile.png", "--model",
                  ckpt_1class, "--format", "json")
    assert r.returncode == 0, r.stderr
    plain, with_profile = json.loads(r.stdout)
    assert with_profile["error"] is None
    # Same pixels exactly; the scores of two images in one forward pass agree to 1e-5.
    assert abs(with_profile["score"] - plain["score"]) <= 1e-5
    import musiq
    assert np.array_equal(musiq.load_image(tmp_path / "profile.png"),
                          musiq.load_image(tmp_path / "plain.png"))


# -- checkpoints --------------------------------------------------------------------------

def test_checkpoint_device_fifo_and_huge_header(tmp_path):
    os.mkfifo(tmp_path / "pipe.npz")
    npy = tmp_path / "big.npy"
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }"
    header = header + b" " * (20000 - len(header) - 1) + b"\n"
    npy.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\0" * 4)
    import zipfile
    with zipfile.ZipFile(tmp_path / "crafted.npz", "w") as z:
        z.write(npy, "opt/target/head/kernel.npy")
    image = IMAGES / SMALL
    for model, reason in (("/dev/zero", "not a regular file"),
                          (tmp_path / "pipe.npz", "not a regular file"),
                          (tmp_path / "crafted.npz", "too large to be read safely")):
        r = musiq_cli("score", image, "--model", model, timeout=60)
        no_traceback(r)
        assert r.returncode == 2 and reason in r.stderr, r.stderr
        assert "allow_pickle" not in r.stderr


def test_non_finite_scores_are_error_rows(ckpt_1class, tmp_path):
    import musiq
    params, _ = musiq.load_checkpoint(ckpt_1class)
    params["head/bias"] = np.full_like(params["head/bias"], np.nan)
    nan_ckpt = musiq.save_checkpoint(tmp_path / "nan.npz", params)
    r = musiq_cli("score", IMAGES / SMALL, "--model", nan_ckpt, "--format", "json")
    assert r.returncode == 1

    def refuse(name):
        raise AssertionError(f"invalid JSON constant {name}")

    (o,) = json.loads(r.stdout, parse_constant=refuse)
    assert o["score"] is None and "non-finite" in o["error"]


# -- output files -------------------------------------------------------------------------

def test_non_utf8_name_and_formula_names_survive_csv_and_resume(ckpt_1class, tmp_path):
    names = [b"caf\xe9.jpg", b"=HYPERLINK(1).jpg", b"+1.jpg", b"-1.jpg", b"@x.jpg", b"'q.jpg"]
    for n in names:
        shutil.copy(IMAGES / SMALL, os.path.join(os.fsencode(tmp_path), n))
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"\n".join(names) + b"\n")
    out = tmp_path / "out.csv"
    r = musiq_cli("score", "--files-from", listing, "--model", ckpt_1class, "-o", out,
                  cwd=tmp_path)
    no_traceback(r)
    assert r.returncode == 0, r.stderr
    got = [row["path"] for row in rows(out)]
    assert got == [os.fsdecode(names[0]), "'=HYPERLINK(1).jpg", "'+1.jpg", "'-1.jpg",
                   "'@x.jpg", "''q.jpg"]
    assert b"caf\xe9.jpg" in out.read_bytes()  # the name's own bytes
    r = musiq_cli("score", "--files-from", listing, "--model", ckpt_1class, "-o", out,
                  "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "6 skipped" in r.stderr and len(rows(out)) == 6


def test_resume_repairs_a_row_cut_inside_a_quoted_name(ckpt_1class, tmp_path):
    odd = tmp_path / "line\nbreak, quoted.jpg"
    good = tmp_path / "good.jpg"
    shutil.copy(IMAGES / SMALL, odd)
    shutil.copy(IMAGES / OTHER, good)
    out = tmp_path / "out.csv"
    # A run scored good.jpg (123 marks it) and was killed inside the quoted name.
    out.write_text(f'path,score,error\n{good},123.0,\n"{tmp_path}/line\nbre')
    r = musiq_cli("score", good, odd, "--model", ckpt_1class, "-o", out, "--resume")
    assert r.returncode == 0, r.stderr
    got = rows(out)
    assert [row["path"] for row in got] == [str(good), str(odd)]
    assert got[0]["score"] == "123.0" and float(got[1]["score"]) != 123.0


def test_a_second_run_on_a_locked_output_is_refused(ckpt_1class, tmp_path):
    out = tmp_path / "out.csv"
    out.write_text("path,score,error\n")
    with open(out, "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        r = musiq_cli("score", IMAGES / SMALL, "--model", ckpt_1class, "-o", out, "--resume")
    assert r.returncode == 2 and "locked" in r.stderr
    assert out.read_text() == "path,score,error\n"


def test_resume_compares_resolved_paths(ckpt_1class, tmp_path):
    shutil.copy(IMAGES / SMALL, tmp_path / "a.jpg")
    out = tmp_path / "out.jsonl"
    r = musiq_cli("score", tmp_path / "a.jpg", "--model", ckpt_1class, "-o", out)
    assert r.returncode == 0, r.stderr
    r = musiq_cli("score", "a.jpg", "./a.jpg", "--model", ckpt_1class, "-o", out, "--resume",
                  cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "1 skipped" in r.stderr and len(out.read_text().splitlines()) == 1


def test_resume_retry_failed_rescores_failed_rows(ckpt_1class, tmp_path):
    shutil.copy(IMAGES / SMALL, tmp_path / "a.jpg")
    shutil.copy(IMAGES / OTHER, tmp_path / "b.jpg")
    out = tmp_path / "out.csv"
    out.write_text(f"path,score,error\n{tmp_path / 'a.jpg'},123.0,\n"
                   f"{tmp_path / 'b.jpg'},,no such file\n")
    r = musiq_cli("score", tmp_path / "a.jpg", tmp_path / "b.jpg", "--model", ckpt_1class,
                  "-o", out, "--resume", "--retry-failed")
    assert r.returncode == 0, r.stderr
    got = rows(out)
    assert [row["path"] for row in got] == [str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")]
    assert got[0]["score"] == "123.0"
    assert got[1]["error"] == "" and got[1]["score"] != ""


def test_outputs_are_checked_before_any_work(ckpt_1class, small_set, tmp_path):
    r = musiq_cli("score", IMAGES / SMALL, "--model", tmp_path / "missing.npz",
                  "-o", tmp_path / "nowhere" / "out.csv")
    no_traceback(r)  # the model path is bad too: the output is found first
    assert r.returncode == 2 and "nowhere does not exist" in r.stderr
    r = musiq_cli("evaluate", "--labels", small_set / "labels.csv", "--model", ckpt_1class,
                  "--plot", tmp_path / "nowhere" / "plot.png", "--bootstrap", "0")
    no_traceback(r)
    assert r.returncode == 2 and "--plot" in r.stderr and "does not exist" in r.stderr
    assert r.stdout == ""  # nothing was scored


@pytest.mark.parametrize("command", ["models", "score"])
def test_a_closed_pipe_is_not_a_traceback(ckpt_1class, command, tmp_path):
    args = "models --format json" if command == "models" else \
        f"score {IMAGES / SMALL} {IMAGES / OTHER} {IMAGES / SMALL} --model {ckpt_1class}"
    # The reader exits at once: every write meets a closed pipe.
    r = subprocess.run(["sh", "-c", f"{' '.join(MUSIQ)} {args} | true"],
                       capture_output=True, text=True, timeout=300)
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr


def test_kill_9_of_the_parent_ends_its_workers(ckpt_1class, tmp_path):
    for i in range(40):
        shutil.copy(IMAGES / SMALL, tmp_path / f"{i:02}.jpg")
    out = tmp_path / "out.jsonl"
    env = dict(os.environ)
    proc = subprocess.Popen([*MUSIQ, "score", str(tmp_path), "--model", str(ckpt_1class),
                             "-o", str(out), "--workers", "2", "--batch-size", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not (out.exists() and out.read_text().strip()):
            time.sleep(0.2)  # results arriving: the workers have started
        assert out.read_text().strip(), "no result arrived"
        children = _children(proc.pid)
        assert children
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.time() + 15
    while time.time() < deadline and any(_alive(p) for p in children):
        time.sleep(0.2)
    left = [p for p in children if _alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"workers left running: {left}"


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# -- arguments ----------------------------------------------------------------------------

def test_globs_list_each_file_once_match_any_case_and_report_no_match(ckpt_1class, tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    shutil.copy(IMAGES / SMALL, tmp_path / "d" / "a.jpg")
    shutil.copy(IMAGES / SMALL, tmp_path / "d" / "B.JPG")
    shutil.copy(IMAGES / OTHER, tmp_path / "d" / "sub" / "c.jpg")
    for pattern in ("d/**", "d/**/*"):
        r = musiq_cli("score", pattern, "--model", ckpt_1class, "--format", "json",
                      cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert sorted(o["path"] for o in json.loads(r.stdout)) == [
            "d/B.JPG", "d/a.jpg", "d/sub/c.jpg"], pattern
    r = musiq_cli("score", "d/*.jpg", "d/*.tif", "--model", ckpt_1class, "--format", "json",
                  cwd=tmp_path)
    assert r.returncode == 1
    out = {o["path"]: o for o in json.loads(r.stdout)}
    assert set(out) == {"d/B.JPG", "d/a.jpg", "d/*.tif"}
    assert out["d/*.tif"]["error"] == "no file matches this pattern"


def test_folder_with_images_only_in_subfolders_suggests_recursive(tmp_path):
    (tmp_path / "sub").mkdir()
    shutil.copy(IMAGES / SMALL, tmp_path / "sub" / "a.jpg")
    r = musiq_cli("score", tmp_path, "--model", "koniq")
    assert r.returncode == 2 and "--recursive" in r.stderr and "no images given" in r.stderr


# -- names, help, docs --------------------------------------------------------------------

def test_imagenet_classes_have_names(ckpt_1000class):
    r = musiq_cli("score", IMAGES / SMALL, "--model", ckpt_1000class, "--format", "json")
    assert r.returncode == 0, r.stderr
    (o,) = json.loads(r.stdout)
    from musiq.network.imagenet import class_names
    names = class_names()
    assert len(names) == 1000 and names[0] == "tench" and names[207] == "golden retriever"
    assert [t["name"] for t in o["top5"]] == [names[t["class"]] for t in o["top5"]]
    r = musiq_cli("score", IMAGES / SMALL, "--model", ckpt_1000class)
    assert f"({names[o['top5'][0]['class']]})" in r.stdout


def test_pyiqa_names_and_habits(ckpt_1class, tmp_path):
    shutil.copy(ckpt_1class, tmp_path / "koniq_ckpt.npz")
    image = IMAGES / SMALL
    r = musiq_cli("score", image, "--model", "musiq-koniq", "--checkpoint-dir", tmp_path,
                  "--format", "json")
    assert r.returncode == 0, r.stderr
    import musiq
    scorer = musiq.load("MUSIQ-KonIQ", checkpoint_dir=tmp_path, device="cpu")
    assert scorer.name == "koniq"
    assert scorer(image) == scorer.score(image) == json.loads(r.stdout)[0]["score"]
    assert scorer.lower_better is False and scorer.score_range == (0.0, 100.0)
    for alias in ("musiq-spaq", "musiq-paq2piq", "musiq-ava"):
        assert musiq.get_info(alias).name == alias[len("musiq-"):]


def test_help_is_plain_and_complete():
    for command in ("score", "models", "evaluate"):
        r = musiq_cli(command, "--help")
        assert r.returncode == 0 and "``" not in r.stdout
    from musiq.cli.main import build_parser
    parser = build_parser()
    sub = next(a for a in parser._actions if hasattr(a, "choices") and a.choices)
    for command in ("score", "models", "evaluate"):
        for action in sub.choices[command]._actions:
            assert action.help, f"musiq {command} {action.option_strings} has no help"
    r = musiq_cli("score", "--help")
    assert "3x" not in r.stdout and "auto" in r.stdout


def test_docs_say_what_is_true():
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    assert "Python >= 3.10" not in readme and "3.11" in readme
    assert "jsonl" in readme.split("--format", 1)[1].split("\n", 1)[0]
    assert 'requires-python = ">=3.11"' in (root / "pyproject.toml").read_text()
    inputs = (root / "docs" / "inputs.md").read_text()
    assert "50,000,000" in inputs and "1,024 pixels per byte" in inputs
    import musiq
    assert "musiq.load_image" in musiq.load_image.__doc__
