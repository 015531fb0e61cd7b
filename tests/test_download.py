"""Downloads against a local HTTP server: success, resume, retries, 404, wrong content,
MD5 mismatch, offline mode, on-demand download in ``musiq.load`` and the CLI."""
from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import subprocess
import sys
import re
import time
from pathlib import Path

import pytest

import musiq
from conftest import GOLDEN
from fileserver import FileServer
from musiq.network.download import (DownloadError, TransferInterrupted, download, ensure_checkpoint,
                            read_record)
from musiq.errors import CheckpointNotFound
from musiq.network.registry import get_info

KONIQ = get_info("koniq")
URL_PATH = "/" + KONIQ.relpath


@pytest.fixture(scope="module")
def ckpt_bytes(ckpt_1class) -> bytes:
    return ckpt_1class.read_bytes()


@pytest.fixture()
def server(monkeypatch):
    with FileServer() as srv:
        monkeypatch.setenv("MUSIQ_BASE_URL", srv.url)
        monkeypatch.setenv("MUSIQ_OFFLINE", "0")
        yield srv


def leftovers(directory: Path) -> list[str]:
    """Files left in a directory (the ``.lock`` file a download holds goes when it ends)."""
    return sorted(p.name for p in directory.rglob("*") if p.is_file())


def test_success_records_size_and_sha256(server, ckpt_bytes, tmp_path):
    server.behaviour.files[URL_PATH] = ckpt_bytes
    path = download(KONIQ, tmp_path, progress=False)
    assert path == tmp_path / "koniq_ckpt.npz"
    assert path.read_bytes() == ckpt_bytes
    rec = read_record(path)
    assert rec["size"] == len(ckpt_bytes)
    assert rec["sha256"] == hashlib.sha256(ckpt_bytes).hexdigest()
    assert rec["url"] == server.url + "koniq_ckpt.npz"
    assert leftovers(tmp_path) == ["koniq_ckpt.npz", "koniq_ckpt.npz.json"]
    # Present now: loading by name needs no request.
    n = len(server.behaviour.log)
    assert musiq.load("koniq", checkpoint_dir=tmp_path).variant.num_classes == 1
    assert len(server.behaviour.log) == n


def test_interrupted_then_resumed(server, ckpt_bytes, tmp_path):
    cut = 30_000_000
    server.behaviour.files[URL_PATH] = ckpt_bytes
    server.behaviour.cut_after = [cut]
    with pytest.raises(TransferInterrupted, match="interrupted after 30,000,000 of"):
        download(KONIQ, tmp_path, retries=0, progress=False)
    # Nothing that looks usable: only the .partial file, holding exactly what arrived.
    assert leftovers(tmp_path) == ["koniq_ckpt.npz.partial"]
    assert (tmp_path / "koniq_ckpt.npz.partial").read_bytes() == ckpt_bytes[:cut]
    with pytest.raises(CheckpointNotFound):
        musiq.load("koniq", checkpoint_dir=tmp_path, offline=True)
    path = download(KONIQ, tmp_path, retries=0, progress=False)
    assert path.read_bytes() == ckpt_bytes
    assert server.behaviour.log[-1] == (URL_PATH, f"bytes={cut}-", 206)
    assert leftovers(tmp_path) == ["koniq_ckpt.npz", "koniq_ckpt.npz.json"]


def test_retries_resume_within_one_call(server, ckpt_bytes, tmp_path):
    server.behaviour.files[URL_PATH] = ckpt_bytes
    server.behaviour.cut_after = [10_000_000, 5_000_000]
    messages = []
    path = download(KONIQ, tmp_path, retries=3, progress=False, log=messages.append)
    assert path.read_bytes() == ckpt_bytes
    assert [r for _, r, _ in server.behaviour.log] == [None, "bytes=10000000-",
                                                        "bytes=15000000-"]
    assert len(messages) == 2 and "retrying" in messages[0]


def test_concurrent_downloads_fetch_once(server, ckpt_bytes, tmp_path):
    server.behaviour.files[URL_PATH] = ckpt_bytes
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        paths = list(pool.map(lambda _: download(KONIQ, tmp_path, progress=False), range(3)))
    assert paths == [tmp_path / "koniq_ckpt.npz"] * 3
    assert paths[0].read_bytes() == ckpt_bytes
    assert [s for _, _, s in server.behaviour.log] == [200]
    assert leftovers(tmp_path) == ["koniq_ckpt.npz", "koniq_ckpt.npz.json"]


def test_server_without_range_support_restarts(server, ckpt_bytes, tmp_path):
    server.behaviour.files[URL_PATH] = ckpt_bytes
    server.behaviour.ranges = False
    (tmp_path / "koniq_ckpt.npz.partial").write_bytes(ckpt_bytes[:1000])
    path = download(KONIQ, tmp_path, progress=False)
    assert path.read_bytes() == ckpt_bytes
    assert server.behaviour.log[-1][2] == 200


def test_404_leaves_nothing(server, tmp_path):
    with pytest.raises(DownloadError, match=r"koniq_ckpt\.npz: HTTP 404"):
        download(KONIQ, tmp_path, progress=False)
    assert leftovers(tmp_path) == []


def test_wrong_content_is_removed(server, tmp_path):
    server.behaviour.files[URL_PATH] = b"<html><body>Access denied</body></html>\n" * 100
    with pytest.raises(DownloadError, match="not a valid checkpoint.*not a readable .npz"):
        download(KONIQ, tmp_path, progress=False)
    assert leftovers(tmp_path) == []


def test_wrong_model_is_removed(server, ckpt_10class, tmp_path):
    server.behaviour.files[URL_PATH] = ckpt_10class.read_bytes()
    with pytest.raises(DownloadError, match="not a 'koniq' checkpoint: it has 10 output"):
        download(KONIQ, tmp_path, progress=False)
    assert leftovers(tmp_path) == []


def test_truncated_but_complete_looking_content_is_removed(server, ckpt_bytes, tmp_path):
    # The server itself holds a cut file (length consistent): validation must catch it.
    server.behaviour.files[URL_PATH] = ckpt_bytes[:-5000]
    with pytest.raises(DownloadError, match="not a valid checkpoint"):
        download(KONIQ, tmp_path, progress=False)
    assert leftovers(tmp_path) == []


def test_md5_checked_when_server_sends_it(server, ckpt_bytes, tmp_path):
    server.behaviour.files[URL_PATH] = ckpt_bytes
    server.behaviour.md5 = True
    server.behaviour.md5_override = hashlib.md5(b"something else").digest()
    with pytest.raises(DownloadError, match="MD5 .* differs from the server's"):
        download(KONIQ, tmp_path, progress=False)
    assert leftovers(tmp_path) == []
    server.behaviour.md5_override = None
    assert download(KONIQ, tmp_path, progress=False).read_bytes() == ckpt_bytes


def test_offline_never_touches_the_network(server, ckpt_bytes, tmp_path, monkeypatch):
    server.behaviour.files[URL_PATH] = ckpt_bytes
    monkeypatch.setenv("MUSIQ_OFFLINE", "1")
    with pytest.raises(CheckpointNotFound, match="offline"):
        download(KONIQ, tmp_path)
    with pytest.raises(CheckpointNotFound, match="storage.googleapis.com|offline"):
        musiq.load("koniq", checkpoint_dir=tmp_path)
    monkeypatch.setenv("MUSIQ_OFFLINE", "0")
    with pytest.raises(CheckpointNotFound, match="offline"):
        ensure_checkpoint(KONIQ, tmp_path, offline=True)
    assert server.behaviour.log == []
    assert leftovers(tmp_path) == []


def test_load_downloads_a_missing_named_model(server, ckpt_bytes, tmp_path):
    server.behaviour.files[URL_PATH] = ckpt_bytes
    scorer = musiq.load("koniq", checkpoint_dir=tmp_path, offline=False)
    assert scorer.path == tmp_path / "koniq_ckpt.npz"
    assert [s for _, _, s in server.behaviour.log] == [200]


def test_load_reports_failed_download_with_url(server, tmp_path):
    with pytest.raises(DownloadError, match=r"(?s)not found.*HTTP 404"):
        musiq.load("koniq", checkpoint_dir=tmp_path, offline=False)
    assert leftovers(tmp_path) == []  # no empty .lock file left behind


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "musiq.cli.main", *args], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=300)


def test_cli_download(server, ckpt_bytes, tmp_path):
    server.behaviour.files[URL_PATH] = ckpt_bytes
    env = {"MUSIQ_BASE_URL": server.url, "MUSIQ_OFFLINE": "0"}
    r = _cli("download", "koniq", "--checkpoint-dir", str(tmp_path), env=env)
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(ckpt_bytes).hexdigest() in r.stdout
    assert json.loads((tmp_path / "koniq_ckpt.npz.json").read_text())["size"] == len(ckpt_bytes)
    r = _cli("download", "koniq", "--checkpoint-dir", str(tmp_path), env=env)
    assert r.returncode == 0 and "already present" in r.stdout
    r = _cli("download", "spaq", "--checkpoint-dir", str(tmp_path), env=env)
    assert r.returncode == 1 and "HTTP 404" in r.stderr
    assert not (tmp_path / "spaq_ckpt.npz").exists()
    r = _cli("download", "nosuchmodel", env=env)
    assert r.returncode == 2 and "unknown model 'nosuchmodel'" in r.stderr


def test_cli_score_offline_is_clear(server, tmp_path):
    img = str(GOLDEN / "images" / "coffee_30x20_q90.jpg")
    r = _cli("score", img, "--model", "koniq", "--checkpoint-dir", str(tmp_path),
             "--offline", env={"MUSIQ_BASE_URL": server.url, "MUSIQ_OFFLINE": "0"})
    assert r.returncode == 2
    assert "offline" in r.stderr and "koniq_ckpt.npz" in r.stderr
    assert server.behaviour.log == []


def test_unwritable_destination_is_a_clear_error(server, ckpt_bytes, tmp_path):
    server.behaviour.files[URL_PATH] = ckpt_bytes
    (tmp_path / "koniq_ckpt.npz.partial").mkdir()  # cannot be opened for writing
    with pytest.raises(DownloadError, match=r"cannot write .*koniq_ckpt\.npz\.partial"):
        download(KONIQ, tmp_path, progress=False)
    assert not (tmp_path / "koniq_ckpt.npz").exists()


def test_a_silent_server_times_out_and_resumes(server, ckpt_bytes, tmp_path):
    server.behaviour.files[URL_PATH] = ckpt_bytes
    server.behaviour.stall_after = [1_000_000]
    t0 = time.perf_counter()
    path = download(KONIQ, tmp_path, timeout=0.5, retries=1, progress=False)
    assert time.perf_counter() - t0 < 30
    assert path.read_bytes() == ckpt_bytes
    assert server.behaviour.log[-1] == (URL_PATH, "bytes=1000000-", 206)


def test_a_trickling_server_is_abandoned_for_its_rate(server, ckpt_bytes, tmp_path, monkeypatch):
    """A byte every 0.2 s never trips the per-read timeout; the minimum rate does."""
    import musiq.network.transfer as transfer
    monkeypatch.setattr(transfer, "RATE_WINDOW", 1.0)
    server.behaviour.files[URL_PATH] = ckpt_bytes
    server.behaviour.trickle_s = 0.2
    started = time.monotonic()
    with pytest.raises(DownloadError, match=r"too slow .* below the minimum of 1,000"):
        download(KONIQ, tmp_path, retries=0, progress=False, min_rate=1000)
    assert time.monotonic() - started < 15
    assert not (tmp_path / "koniq_ckpt.npz").exists()


def test_total_deadline(server, ckpt_bytes, tmp_path):
    server.behaviour.files[URL_PATH] = ckpt_bytes
    server.behaviour.trickle_s = 0.1
    with pytest.raises(DownloadError, match="not finished after the limit of 1 s"):
        download(KONIQ, tmp_path, retries=0, progress=False, deadline=1.0, min_rate=0)


def test_an_endless_response_is_cut_at_the_bound_and_not_kept(server, tmp_path, monkeypatch):
    import musiq.network.download as dl
    monkeypatch.setitem(dl.SIZE_BOUNDS, KONIQ.filename, 5_000_000)
    server.behaviour.files[URL_PATH] = b"x"
    server.behaviour.endless = True
    with pytest.raises(DownloadError, match="sent more than 5,000,000 bytes; the data was removed"):
        download(KONIQ, tmp_path, retries=0, progress=False)
    assert leftovers(tmp_path) == []


def test_redirects_to_another_host_are_refused(server, ckpt_bytes, tmp_path):
    port = server.url.rsplit(":", 1)[1].rstrip("/")
    server.behaviour.files["/elsewhere.npz"] = ckpt_bytes
    server.behaviour.redirects[URL_PATH] = f"http://localhost:{port}/elsewhere.npz"
    with pytest.raises(DownloadError, match=r"redirected to http://localhost:.*another host"):
        download(KONIQ, tmp_path, retries=0, progress=False)
    assert [p for p, _, _ in server.behaviour.log] == [URL_PATH]  # never fetched elsewhere
    # The same host may redirect (a bucket moving an object).
    server.behaviour.redirects[URL_PATH] = server.url + "elsewhere.npz"
    assert download(KONIQ, tmp_path, retries=0, progress=False).read_bytes() == ckpt_bytes


def test_cli_download_finds_the_local_checkout_dir_and_offline(server, ckpt_bytes, tmp_path):
    local = tmp_path / "musiq_original" / "checkpoints"
    local.mkdir(parents=True)
    (local / "koniq_ckpt.npz").write_bytes(ckpt_bytes)
    # cwd is tmp_path: its ./musiq_original is the one to find (not the suite's empty one)
    env = {k: v for k, v in os.environ.items()
           if k not in ("MUSIQ_CHECKPOINT_DIR", "MUSIQ_LOCAL_DIR")}
    for extra in ([], ["--offline"]):
        out = subprocess.run([sys.executable, "-m", "musiq.cli.main", "download", "koniq",
                              *extra], capture_output=True, text=True, timeout=300,
                             cwd=tmp_path, env=env)
        assert out.returncode == 0, out.stderr
        assert "koniq: already present: musiq_original/checkpoints/koniq_ckpt.npz" in out.stdout
    assert server.behaviour.log == []


def test_on_demand_download_logs_progress_without_a_terminal(server, ckpt_bytes, tmp_path):
    server.behaviour.files[URL_PATH] = ckpt_bytes
    code = ("import musiq, musiq.network.transfer as t; t.LOG_EVERY_S = 0.0; "
            f"musiq.load('koniq', checkpoint_dir={str(tmp_path)!r})")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "musiq: koniq not found locally; downloading" in out.stderr
    assert re.search(r"musiq: koniq_ckpt.npz: [\d.]+ MB of [\d.]+ MB \(\d+%\)", out.stderr)
