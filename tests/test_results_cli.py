"""Score files as a user meets them (musiq run as a subprocess): nothing written is lost on
--resume, a stop, a kill or a rewrite; bad files are clear errors; planted links are not
followed; DuckDB, pandas and polars read every format with no options."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import GOLDEN

IMAGES = GOLDEN / "images"
MUSIQ = [sys.executable, "-m", "musiq.cli.main"]
A, B = IMAGES / "coffee_30x20_q90.jpg", IMAGES / "chelsea_20x30_q90.jpg"


def cli(*args, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("MUSIQ_CHECKPOINT_DIR", None)
    return subprocess.run([*MUSIQ, *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout, errors="surrogateescape")


def clean(r: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in r.stderr, r.stderr


def test_resume_keeps_rows_after_a_stray_quote(ckpt_1class, tmp_path):
    shutil.copy(A, tmp_path / "a.jpg")
    out = tmp_path / "out.csv"
    rows = [f"{tmp_path}/old{i}.jpg,{i}.5,\n" for i in range(6)]
    rows.insert(3, f'{tmp_path}/imgs/old"photo.jpg,1.5,\n')
    text = "path,score,error\n" + "".join(rows)
    out.write_text(text)
    r = cli("score", tmp_path / "a.jpg", "--model", ckpt_1class, "-o", out, "--resume")
    clean(r)
    assert r.returncode == 0, r.stderr
    got = out.read_text()
    assert got.startswith(text) and len(got.splitlines()) == 9  # 8 kept + the new row
    # A quote that never closes before whole rows: refused, the file untouched.
    bad = 'path,score,error\n"x.jpg,1.5,\ny.jpg,2.5,\nz.jpg,3'
    out.write_text(bad)
    r = cli("score", tmp_path / "a.jpg", "--model", ckpt_1class, "-o", out, "--resume")
    clean(r)
    assert r.returncode == 2 and "left untouched" in r.stderr
    assert out.read_text() == bad


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_retry_failed_rewrites_aside_never_in_place(ckpt_1class, fmt, tmp_path):
    out = tmp_path / f"out.{fmt}"
    if fmt == "csv":
        text = f"path,score,error\n{A},123.0,\n{tmp_path / 'b.jpg'},,no such file\n"
    else:
        text = (json.dumps({"path": str(A), "score": 123.0, "error": None}) + "\n"
                + json.dumps({"path": str(tmp_path / "b.jpg"), "score": None,
                              "error": "no such file"}) + "\n")
    out.write_text(text)
    old = tmp_path / "old_inode"
    os.link(out, old)  # the file's old inode: truncating in place would empty it
    shutil.copy(B, tmp_path / "b.jpg")
    r = cli("score", A, tmp_path / "b.jpg", "--model", ckpt_1class, "-o", out, "--resume",
            "--retry-failed")
    assert r.returncode == 0, r.stderr
    assert old.read_text() == text  # the original was never cut or rewritten in place
    assert os.stat(out).st_ino != os.stat(old).st_ino
    assert "123.0" in out.read_text() and "no such file" not in out.read_text()
    assert not list(tmp_path.glob("out.*.partial-*"))


def _many(tmp_path: Path, n: int) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(n):
        os.link(A if i % 2 else B, folder / f"img{i:04d}.jpg")
    return folder


def _start_and_wait_for_rows(ckpt, folder, out, *extra, rows=2) -> subprocess.Popen:
    proc = subprocess.Popen([*MUSIQ, "score", str(folder), "--model", str(ckpt), "-o",
                             str(out), "--batch-size", "1", *extra], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    journal = Path(f"{out}.journal")
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if journal.exists() and journal.read_text().count("\n") >= rows:
            return proc
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"no rows reached {journal} while the run went on: "
                         f"{proc.communicate()[1][-2000:]}")


def test_parquet_sigterm_keeps_rows_and_kill_9_is_recovered_by_resume(ckpt_1class, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    folder = _many(tmp_path, 30)
    out = tmp_path / "s.parquet"
    proc = _start_and_wait_for_rows(ckpt_1class, folder, out)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130 and "Traceback" not in err, err
    kept = pq.read_table(out).column("path").to_pylist()
    assert len(kept) >= 2 and len(set(kept)) == len(kept)
    assert not Path(f"{out}.lock").exists() and not Path(f"{out}.journal").exists()

    proc = _start_and_wait_for_rows(ckpt_1class, folder, out, "--resume", rows=3)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    r = cli("score", folder, "--model", ckpt_1class, "-o", out, "--resume")
    assert r.returncode == 0, r.stderr
    paths = pq.read_table(out).column("path").to_pylist()
    assert sorted(paths) == sorted(str(p) for p in folder.iterdir())  # each exactly once
    assert not Path(f"{out}.journal").exists() and not Path(f"{out}.lock").exists()


def test_resume_from_another_folder_does_not_score_again(ckpt_1class, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(A, tmp_path / "in" / "good1.jpg")
    shutil.copy(B, tmp_path / "in" / "good2.jpg")
    out = tmp_path / "out.jsonl"
    r = cli("score", "./good1.jpg", "--model", ckpt_1class, "-o", out, cwd=tmp_path / "in")
    assert r.returncode == 0, r.stderr
    r = cli("score", "../in", "--model", ckpt_1class, "-o", out, "--resume",
            cwd=tmp_path / "elsewhere")
    assert r.returncode == 0, r.stderr
    assert "1 skipped" in r.stderr
    paths = [json.loads(line)["path"] for line in out.read_text().splitlines()]
    assert len(paths) == 2
    # Every relative path in the file means the same: relative to the first run's folder.
    assert sorted(os.path.normpath(p) for p in paths) == ["good1.jpg", "good2.jpg"]
    meta = json.loads(Path(f"{out}.meta.json").read_text())
    assert meta["paths_relative_to"] == str(tmp_path / "in")


def test_planted_links_at_temporary_and_lock_names_are_not_followed(ckpt_1class, tmp_path):
    pytest.importorskip("pyarrow")
    victim = tmp_path / "victim"
    out = tmp_path / "s.parquet"
    os.symlink(victim, f"{out}.partial")
    os.symlink(victim, f"{out}.meta.json.partial")
    r = cli("score", A, "--model", ckpt_1class, "-o", out)
    clean(r)
    assert r.returncode == 0, r.stderr
    assert not victim.exists() and out.is_file() and not out.is_symlink()
    out2 = tmp_path / "t.parquet"
    os.symlink(victim, f"{out2}.lock")
    r = cli("score", A, "--model", ckpt_1class, "-o", out2)
    clean(r)
    assert r.returncode == 2 and "symbolic link" in r.stderr
    assert not victim.exists()


def test_bad_score_files_are_errors_not_tracebacks(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    cases = {"null.jsonl": '{"path": null, "score": 1.0, "error": null}\n',
             "dict.jsonl": '{"path": {"a": 1}, "score": 1.0, "error": null}\n'}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
    pq.write_table(pa.table({"path": [1], "score": [1.0]}, metadata={b"musiq": b"[]"}),
                   tmp_path / "meta.parquet")
    pq.write_table(pa.table({"path": pa.array([None], pa.string()), "score": [1.0]}),
                   tmp_path / "nullpath.parquet")
    (tmp_path / "range.csv").write_text("path,score,error\na.jpg,1.0,\n")
    (tmp_path / "range.csv.meta.json").write_text('{"score_range": "0 to 100"}')
    for name in [*cases, "meta.parquet", "nullpath.parquet", "range.csv"]:
        r = cli("report", tmp_path / name, "-o", tmp_path / f"{name}.html")
        clean(r)
        assert r.returncode == 2 and name in r.stderr, (name, r.stderr)


def test_formats_read_by_duckdb_pandas_polars_with_no_options(ckpt_10class, tmp_path):
    duckdb = pytest.importorskip("duckdb")
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    bad = tmp_path / "0bad.jpg"  # sorts first: the files start with a failure
    bad.write_bytes(b"not an image")
    shutil.copy(A, tmp_path / "a.jpg")
    shutil.copy(B, tmp_path / "b.jpg")
    files = [bad, tmp_path / "a.jpg", tmp_path / "b.jpg"]
    outs = {}
    for fmt in ("csv", "jsonl", "parquet"):
        outs[fmt] = tmp_path / f"s.{fmt}"
        r = cli("score", *files, "--model", ckpt_10class, "-o", outs[fmt])
        assert r.returncode == 1, r.stderr
    r = cli("score", *files, "--model", ckpt_10class, "--format", "json")
    outs["json"] = tmp_path / "s.json"
    outs["json"].write_text(r.stdout)
    want = json.loads(r.stdout)
    for fmt, path in outs.items():
        reads = {"duckdb": duckdb.sql(f"SELECT * FROM '{path}'").df(),
                 "pandas": {"csv": pd.read_csv, "jsonl": lambda p: pd.read_json(p, lines=True),
                            "json": pd.read_json, "parquet": pd.read_parquet}[fmt](path),
                 "polars": {"csv": pl.read_csv, "jsonl": pl.read_ndjson, "json": pl.read_json,
                            "parquet": pl.read_parquet}[fmt](path).to_pandas()}
        for tool, df in reads.items():
            assert list(df["path"]) == [str(f) for f in files], (fmt, tool)
            assert pd.isna(df["score"][0]) and df["error"][0], (fmt, tool)
            # float64 in every format: the same values as the JSON output
            assert list(df["score"][1:]) == [w["score"] for w in want[1:]], (fmt, tool)
            assert "std" in df.columns, (fmt, tool)
    import pyarrow.parquet as pq
    assert str(pq.read_schema(outs["parquet"]).field("logits").type) == "list<element: double>"


def test_imagenet_csv_carries_class_names(ckpt_1000class, tmp_path):
    out = tmp_path / "s.csv"
    r = cli("score", A, "--model", ckpt_1000class, "-o", out)
    assert r.returncode == 0, r.stderr
    import csv
    (row,) = list(csv.DictReader(out.open()))
    r = cli("score", A, "--model", ckpt_1000class, "--format", "json")
    top5 = json.loads(r.stdout)[0]["top5"]
    assert [row[f"top{i}_class"] for i in range(1, 6)] == [str(t["class"]) for t in top5]
    assert [row[f"top{i}_name"] for i in range(1, 6)] == [t["name"] for t in top5]
