"""``musiq serve`` against what an attacker or a confused user does, as a client meets it:
a real server process on 127.0.0.1 (started and stopped by pid), real HTTP."""
from __future__ import annotations

import io
import re
import socket
import subprocess
import sys
import time

import httpx
import pytest

from conftest import GOLDEN

pytest.importorskip("fastapi")
from fileserver import FileServer  # noqa: E402
from serving import ServerProcess, free_port  # noqa: E402

IMAGES = GOLDEN / "images"
KEY = "hardening-key-81c"
AUTH = {"X-API-Key": KEY}
SMALL = (IMAGES / "coffee_30x20_q90.jpg").read_bytes()


def noise_jpeg(width: int, height: int) -> bytes:
    """12 MP of noise: over a second to decode and tokenise here (0.03 MP: ~0.1 s)."""
    import numpy as np
    from PIL import Image
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def thin_png(width: int) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (width, 1), (120, 60, 30)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(ckpt_1class):
    srv = ServerProcess("--model", str(ckpt_1class), "--max-tokens", "20000",
                        "--decode-timeout", "0.6", "--allowed-origin", "https://ok.example",
                        env={"MUSIQ_API_KEY": KEY})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client():
    with httpx.Client(timeout=60) as c:
        yield c


def test_thin_image_is_refused_by_its_token_count(server, client):
    """1x999,999 pixels: 1 MP but 31,250 native tokens; refused before tokenising."""
    started = time.monotonic()
    r = client.post(server.url + "/v1/score", content=thin_png(999_999), headers=AUTH)
    assert r.status_code == 422, r.text
    assert "would make 31,269 tokens, above the limit of 20,000" in r.json()["detail"]


def test_slow_decode_is_killed_and_the_server_recovers(server, client):
    big = noise_jpeg(4000, 3000)
    r = client.post(server.url + "/v1/score", files=[("file", ("big.jpg", big)),
                                                     ("file", ("small.jpg", SMALL))],
                    headers=AUTH)
    assert r.status_code == 200, r.text
    big, small = r.json()["results"]
    assert big["score"] is None
    assert "decoding took longer than the limit of 0.6 s" in big["error"]
    assert small["score"] is not None and small["error"] is None
    # The killed worker was replaced: images keep being scored.
    for _ in range(3):
        r = client.post(server.url + "/v1/score", content=SMALL, headers=AUTH)
        assert r.status_code == 200 and r.json()["results"][0]["score"] is not None


def test_static_paths_add_no_metric_series(server, client):
    for i in range(40):
        assert client.get(f"{server.url}/static/junk{i}.js").status_code == 404
    text = client.get(server.url + "/metrics").text
    assert "junk" not in text
    assert re.search(r'musiq_requests_total\{route="/static/\{name\}",status="404"\} 40', text)


def test_host_and_origin_are_checked(server, client):
    url = server.url + "/v1/models"
    assert client.get(url, headers=AUTH).status_code == 200
    # DNS rebinding: the browser sends the attacker's name as Host.
    r = client.get(url, headers={**AUTH, "Host": "evil.example:8000"})
    assert r.status_code == 403 and "Host 'evil.example:8000' is not allowed" in r.json()["detail"]
    # A page elsewhere making the browser post here.
    r = client.post(server.url + "/v1/score", content=SMALL,
                    headers={**AUTH, "Origin": "https://evil.example"})
    assert r.status_code == 403 and "Origin 'https://evil.example'" in r.json()["detail"]
    same = f"http://127.0.0.1:{server.port}"
    for origin in (same, "https://ok.example"):
        r = client.post(server.url + "/v1/score", content=SMALL,
                        headers={**AUTH, "Origin": origin})
        assert r.status_code == 200, (origin, r.text)


def test_wrong_and_missing_api_keys_say_which(server, client):
    r = client.get(server.url + "/v1/models", headers={"X-API-Key": "nope"})
    assert r.status_code == 401 and r.json()["detail"].startswith("wrong API key")
    r = client.get(server.url + "/v1/models")
    assert r.status_code == 401 and r.json()["detail"].startswith("missing API key")


def test_port_in_use_fails_without_claiming_to_serve(ckpt_1class):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "musiq.cli.main", "serve", "--model",
                              str(ckpt_1class), "--port", str(port), "--device", "cpu"],
                             capture_output=True, text=True, timeout=300)
    assert out.returncode != 0, out.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr
    assert "another process uses this port" in out.stderr
    assert "http://" not in out.stderr and "Traceback" not in out.stderr


def test_offline_is_honoured(tmp_path):
    with FileServer() as files:
        out = subprocess.run(
            [sys.executable, "-m", "musiq.cli.main", "serve", "--offline", "--model", "koniq",
             "--checkpoint-dir", str(tmp_path), "--port", str(free_port()), "--device", "cpu"],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
            env={**__import__("os").environ, "MUSIQ_BASE_URL": files.url, "MUSIQ_OFFLINE": "0",
                 "MUSIQ_CHECKPOINT_DIR": str(tmp_path)})
        assert files.behaviour.log == []  # nothing was requested
    assert out.returncode != 0, out.stderr
    assert "offline mode" in out.stderr and "Traceback" not in out.stderr
