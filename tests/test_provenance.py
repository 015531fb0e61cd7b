"""Provenance: the OUT.meta.json sidecar, --resume refusing another checkpoint or settings,
the table naming the model, Prediction.to_dict(provenance)."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys

from conftest import GOLDEN, write_checkpoint, ROOT

import musiq
from musiq.results.provenance import file_sha256, read_provenance, sidecar_path

MUSIQ = [sys.executable, "-m", "musiq.cli.main"]
IMAGES = GOLDEN / "images"
A, B = IMAGES / "coffee_30x20_q90.jpg", IMAGES / "chelsea_20x30_q90.jpg"


def cli(*args, cwd=None):
    return subprocess.run([*MUSIQ, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=600)


def test_sidecar_records_what_made_the_output(ckpt_1class, tmp_path):
    out = tmp_path / "scores.csv"
    r = cli("score", A, "--model", ckpt_1class, "-o", out)
    assert r.returncode == 0, r.stderr
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["checkpoint_sha256"] == hashlib.sha256(ckpt_1class.read_bytes()).hexdigest()
    assert meta["musiq_version"] == musiq.__version__
    assert meta["model"] == ckpt_1class.name and meta["kind"] == "mos"
    assert meta["precision"] == "fp32"
    assert meta["preprocessing"]["longer_side_lengths"] == [224, 384]
    assert meta["preprocessing"]["exif_transpose"] is False
    assert read_provenance(out) == meta
    # The CSV itself stays plain: its first line is the header.
    assert out.read_text().splitlines()[0] == "path,score,error,frames,spread"


def test_resume_refuses_another_checkpoint_and_leaves_file_untouched(ckpt_1class, tmp_path):
    other = tmp_path / "other.npz"
    write_checkpoint(other, "--classes", "1", "--seed", "7")
    assert file_sha256(other) != file_sha256(ckpt_1class)
    out = tmp_path / "scores.jsonl"
    assert cli("score", A, "--model", ckpt_1class, "-o", out).returncode == 0
    before, meta_before = out.read_bytes(), sidecar_path(out).read_bytes()
    r = cli("score", A, B, "--model", other, "-o", out, "--resume")
    assert r.returncode == 2
    assert "checkpoint_sha256" in r.stderr and str(out) in r.stderr
    assert "Traceback" not in r.stderr
    assert out.read_bytes() == before and sidecar_path(out).read_bytes() == meta_before
    # Another precision is refused too; the same settings go on.
    r = cli("score", A, B, "--model", ckpt_1class, "-o", out, "--resume", "--precision", "bf16")
    assert r.returncode == 2 and "precision" in r.stderr
    r = cli("score", A, B, "--model", ckpt_1class, "-o", out, "--resume", "--exif-transpose")
    assert r.returncode == 2 and "preprocessing" in r.stderr
    r = cli("score", A, B, "--model", ckpt_1class, "-o", out, "--resume")
    assert r.returncode == 0, r.stderr
    assert [json.loads(x)["path"] for x in out.read_text().splitlines()] == [str(A), str(B)]


def test_table_names_model_and_range(ckpt_10class):
    r = cli("score", A, "--model", ckpt_10class)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == f"model {ckpt_10class.name}, scores 1 to 10"


def test_prediction_to_dict_can_include_provenance(scorer_1class, ckpt_1class):
    p = scorer_1class.predict(A)
    assert "provenance" not in p.to_dict()
    d = p.to_dict(scorer_1class.provenance())
    assert d["provenance"]["checkpoint_sha256"] == file_sha256(ckpt_1class)
    assert d["score"] == p.score


def test_parquet_output_carries_provenance_retries_failures_and_refuses_another_model(
        ckpt_1class, tmp_path):
    pq = __import__("pytest").importorskip("pyarrow.parquet")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff not a jpeg")
    out = tmp_path / "scores.parquet"
    r = cli("score", A, bad, "--model", ckpt_1class, "-o", out)
    assert r.returncode == 1, r.stderr
    table = pq.read_table(out)
    assert table.column("path").to_pylist() == [str(A), str(bad)]
    meta = json.loads(pq.read_schema(out).metadata[b"musiq"])
    assert meta["checkpoint_sha256"] == file_sha256(ckpt_1class)
    assert not (tmp_path / "scores.parquet.lock").exists()
    # --retry-failed: the failed row goes, the (now good) file is scored, nothing duplicated
    bad.write_bytes(B.read_bytes())
    r = cli("score", A, bad, "--model", ckpt_1class, "-o", out, "--resume", "--retry-failed")
    assert r.returncode == 0, r.stderr
    table = pq.read_table(out)
    assert sorted(table.column("path").to_pylist()) == sorted([str(A), str(bad)])
    assert table.column("error").to_pylist() == [None, None]
    before = out.read_bytes()
    other = write_checkpoint(tmp_path / "other.npz", "--classes", "1", "--seed", "7")
    r = cli("score", A, B, "--model", other, "-o", out, "--resume")
    assert r.returncode == 2 and "another model" in r.stderr
    assert out.read_bytes() == before
