"""The Ray Data engine (musiq.distributed, musiq score --engine ray) and Parquet output.

A local Ray is started by the test (2 CPUs) and shut down after; the cluster test starts a
real head node with ``ray start --head --block`` on 127.0.0.1 and stops it by the process
group of the process it started. Few, small images: the suite runs on 2 shared cores.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import GOLDEN

ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")

from musiq.results.tables import arrow_schema  # noqa: E402

IMAGES = ["chelsea_20x30_q90.jpg", "coffee_30x20_q90.jpg", "coffee_1000x2_q90.jpg",
          "astronaut_333x517_q85.jpg"]
MUSIQ = [sys.executable, "-m", "musiq.cli.main", "score"]
# The test cluster listens on 127.0.0.1 only; token authentication is off for it (a real
# cluster keeps it on and its drivers carry the token, docs/distributed.md).
NO_AUTH = {**os.environ, "RAY_AUTH_MODE": "disabled"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[str]:
    """Golden images plus hostile files: corrupt JPEG, empty file, text, a missing path."""
    d = tmp_path_factory.mktemp("ray_inputs")
    files = []
    for name in IMAGES:
        shutil.copy(GOLDEN / "images" / name, d / name)
        files.append(str(d / name))
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (d / "empty.png").write_bytes(b"")
    (d / "notes.jpg").write_text("hello")
    return files + [str(d / "corrupt.jpg"), str(d / "empty.png"), str(d / "notes.jpg"),
                    str(d / "missing.jpg")]


@pytest.fixture(scope="module")
def local_ray():
    tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING",
             _temp_dir=tmp)
    yield
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


def check_against_local(rows: list[dict], scorer, files: list[str]) -> None:
    local = {p.source: p for p in scorer.predict_many(files)}
    paths = [r["path"] for r in rows]
    assert sorted(paths) == sorted(files)  # every path exactly once
    for r in rows:
        want = local[r["path"]]
        if want.error is None:
            assert r["error"] is None, r
            assert abs(r["score"] - want.score) <= 1e-5
            assert max(abs(a - b) for a, b in zip(r["logits"], want.logits)) <= 1e-5
        else:
            assert r["score"] is None and r["error"], r
    assert {r["path"] for r in rows if r["error"]} == {p for p, w in local.items() if w.error}


def test_score_dataset_equals_local_engine(local_ray, scorer_1class, inputs):
    from musiq.distributed import score_dataset
    ds = score_dataset(inputs, scorer_1class, concurrency=1, batch_size=8, model_batch_size=4,
                       decode_batch_size=2)
    table = ds.to_arrow_refs()
    import pyarrow as pa
    t = pa.concat_tables(ray.get(table))
    assert t.schema.names == arrow_schema("mos").names
    assert t.schema.field("logits").type == pa.list_(pa.float64())  # float32 values, exact
    rows = t.to_pylist()
    check_against_local(rows, scorer_1class, inputs)
    errors = {Path(r["path"]).name: r["error"] for r in rows if r["error"]}
    assert set(errors) == {"corrupt.jpg", "empty.png", "notes.jpg", "missing.jpg"}
    assert "empty" in errors["empty.png"] and "no such file" in errors["missing.jpg"]


def test_score_dataset_from_a_dataset_of_bytes_with_distribution(local_ray, scorer_10class,
                                                                 inputs):
    from musiq.distributed import score_dataset
    good = inputs[:3]
    src = ray.data.from_items([{"path": p, "bytes": Path(p).read_bytes()} for p in good])
    rows = score_dataset(src, scorer_10class).take_all()
    check_against_local(rows, scorer_10class, good)
    for r in rows:
        assert len(r["distribution"]) == 10 and abs(sum(r["distribution"]) - 1) < 1e-6
        assert r["std"] > 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """A real Ray head on 127.0.0.1, started and stopped by this test (its process group)."""
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="rc", dir="/tmp")
    ray_bin = str(Path(sys.executable).with_name("ray"))
    proc = subprocess.Popen(
        [ray_bin, "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
         "--node-ip-address=127.0.0.1", "--include-dashboard=false", f"--temp-dir={tmp}",
         "--disable-usage-stats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env=NO_AUTH)
    address = f"127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert proc.poll() is None, "ray start --head exited"
        time.sleep(1)
    time.sleep(3)
    yield address
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    shutil.rmtree(tmp, ignore_errors=True)


def test_cli_on_a_cluster_resumes_without_duplicates(cluster, ckpt_1class, scorer_1class,
                                                     inputs, tmp_path):
    out = tmp_path / "scores.parquet"
    common = ["--model", str(ckpt_1class), "--device", "cpu", "--engine", "ray",
              "--ray-address", cluster, "--output", str(out), "--quiet"]
    # The first run stops after a part of the inputs (as an interrupted run leaves them).
    first = subprocess.run(MUSIQ + inputs[:2] + inputs[-2:] + common, capture_output=True,
                           text=True, timeout=600, env=NO_AUTH)
    assert first.returncode == 1, first.stderr  # one of them failed
    assert len(pq.read_table(out)) == 4
    second = subprocess.run(MUSIQ + inputs + common + ["--resume"], capture_output=True,
                            text=True, timeout=600, env=NO_AUTH)
    assert second.returncode == 1, second.stderr
    assert "Traceback" not in second.stderr
    t = pq.read_table(out)
    assert t.schema.names == arrow_schema("mos").names
    check_against_local(t.to_pylist(), scorer_1class, inputs)


def test_local_engine_parquet_output_and_resume(ckpt_10class, scorer_10class, inputs,
                                                tmp_path):
    out = tmp_path / "ava.parquet"
    common = ["--model", str(ckpt_10class), "--device", "cpu", "--output", str(out)]
    r = subprocess.run(MUSIQ + inputs[:2] + common, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(MUSIQ + inputs + common + ["--resume"], capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    t = pq.read_table(out)
    assert t.schema == arrow_schema("distribution")
    check_against_local(t.to_pylist(), scorer_10class, inputs)
    r = subprocess.run(MUSIQ + inputs[:1] + common, capture_output=True, text=True)
    assert r.returncode != 0 and "exists" in r.stderr


# -- the local engine's file checks on the Ray engine (issue 18 item 5) ----------------------------
@pytest.fixture(scope="module")
def hostile_folder(tmp_path_factory) -> Path:
    """Three good images beside a 3 GB sparse .jpg (no disk used), a FIFO, a symlink loop, a
    text file and an image in a subfolder."""
    d = tmp_path_factory.mktemp("ray_hostile")
    for name in IMAGES[:3]:
        shutil.copy(GOLDEN / "images" / name, d / name)
    with open(d / "huge.jpg", "wb") as f:
        f.truncate(3 * 2**30)
    os.mkfifo(d / "pipe.jpg")
    os.symlink(d / "loop.jpg", d / "loop.jpg")
    (d / "notes.txt").write_text("not an image")
    (d / "sub").mkdir()
    shutil.copy(GOLDEN / "images" / IMAGES[3], d / "sub" / IMAGES[3])
    return d


def test_folder_gets_the_local_engines_file_checks(local_ray, scorer_1class, hostile_folder):
    from musiq.distributed import score_dataset
    d = hostile_folder
    rows = score_dataset(str(d), scorer_1class, decode_batch_size=2).take_all()
    by_name = {Path(r["path"]).name: r for r in rows}
    # The CLI's folder expansion: image suffixes only, no subfolders unless asked.
    assert sorted(by_name) == sorted(IMAGES[:3] + ["huge.jpg", "pipe.jpg", "loop.jpg"])
    check_against_local([r for r in rows if Path(r["path"]).name in IMAGES[:3]],
                        scorer_1class, [str(d / n) for n in IMAGES[:3]])
    # Refused from its size before a byte is read (reading 3 GB took minutes before).
    assert "3,221,225,472 bytes, above the limit" in by_name["huge.jpg"]["error"]
    assert "FIFO" in by_name["pipe.jpg"]["error"]
    assert "symbolic links" in by_name["loop.jpg"]["error"]
    deep = score_dataset(str(d), scorer_1class, recursive=True, skip_paths=[
        str(d / n) for n in IMAGES[:3] + ["huge.jpg", "pipe.jpg", "loop.jpg"]]).take_all()
    assert [Path(r["path"]).name for r in deep] == [IMAGES[3]] and deep[0]["error"] is None


def test_bytes_and_path_values_that_are_not_bytes_get_clear_errors(local_ray, scorer_1class):
    import pyarrow as pa

    from musiq.distributed import score_dataset
    from musiq.decoding.reading import NULL_PATH
    good = str(GOLDEN / "images" / IMAGES[0])
    data = Path(good).read_bytes()
    src = ray.data.from_arrow(pa.table({
        "path": pa.array([good, "null.jpg", None], pa.string()),
        "bytes": pa.array([data, None, data], pa.binary())}))
    rows = score_dataset(src, scorer_1class, decode_batch_size=2).take_all()
    errors = {r["path"]: r["error"] for r in rows}
    assert len(rows) == 3 and errors[good] is None
    assert errors["null.jpg"] == "the row's 'bytes' is null: no image data"
    assert errors[NULL_PATH] == "the row's 'path' is null: every row needs a path"
    # A number in the bytes column is refused by its type, never made 2 GB of zeros.
    src = ray.data.from_arrow(pa.table({"path": ["int.jpg"], "bytes": [2_000_000_000]}))
    rows = score_dataset(src, scorer_1class).take_all()
    assert rows[0]["error"] == "the row's 'bytes' is int, not bytes (encoded image data)"


def test_reading_checks_without_ray(hostile_folder):
    from musiq.errors import ImageError
    from musiq.decoding.reading import bytes_value, read_source
    d = hostile_folder
    assert read_source(f"file://{d / IMAGES[0]}", 10**6) == (d / IMAGES[0]).read_bytes()
    for name, reason in (("huge.jpg", "above the limit"), ("pipe.jpg", "FIFO"),
                         ("loop.jpg", "symbolic links"), ("gone.jpg", "no such file")):
        with pytest.raises(ImageError, match=reason):
            read_source(str(d / name), 10**6)
    with pytest.raises(ImageError, match="is str, not bytes"):
        bytes_value("text", "t.jpg", None)
    with pytest.raises(ImageError, match="11 bytes, above the limit of 10"):
        bytes_value(b"x" * 11, "b.jpg", 10)
    assert bytes_value(memoryview(b"abc"), "m.jpg", 10) == b"abc"


def test_uri_folders_and_globs_are_listed_as_the_cli_lists_folders(hostile_folder):
    from musiq.distributed_inputs import _expand_remote, _remote_folder, _uri_rows
    d = hostile_folder
    uri = f"file://{d}"
    names = {Path(p).name for p in _remote_folder(uri, False)}
    assert names == set(IMAGES[:3] + ["huge.jpg"])  # loop/FIFO are not files to pyarrow
    assert {Path(p).name for p in _remote_folder(uri + "/", True)} == names | {IMAGES[3]}
    assert _remote_folder(f"{uri}/x.jpg", False) == [f"{uri}/x.jpg"]  # not looked up
    assert {Path(p).name for p in _expand_remote(f"{uri}/**/*")} == names | {IMAGES[3]}
    assert _uri_rows(f"{uri}/*.png", False) == [
        {"path": f"{uri}/*.png", "error": "no file matches this pattern"}]


def test_read_images_reads_with_the_same_checks(local_ray, hostile_folder):
    from musiq.distributed import read_images
    d = hostile_folder
    missing: list[str] = []
    rows = read_images([str(d), str(d / "gone.jpg")], missing=missing).take_all()
    by_name = {Path(r["path"]).name: r for r in rows}
    assert missing == [str(d / "gone.jpg")]
    assert sorted(by_name) == sorted(IMAGES[:3] + ["huge.jpg", "pipe.jpg", "loop.jpg"])
    for name in IMAGES[:3]:
        assert by_name[name]["bytes"] == (d / name).read_bytes() and not by_name[name]["error"]
    huge = by_name["huge.jpg"]
    assert huge["bytes"] is None and "above the limit" in huge["error"]
