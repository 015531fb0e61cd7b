"""``musiq serve`` end to end: a real server process, a real HTTP client, the CLI as reference.

Status codes checked here are the documented contract (docs/serve.md).
"""
from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import GOLDEN

pytest.importorskip("fastapi")
from serving import ServerProcess  # noqa: E402

IMAGES = GOLDEN / "images"
KEY = "test-key-6f1d2c"
AUTH = {"Authorization": f"Bearer {KEY}"}
# Small inputs, including ones the original cannot score (grey, RGBA, 1000x2, 30x20).
SMALL = ["chelsea_451x300_q75.jpg", "coffee_30x20_q90.jpg", "coffee_1000x2_q90.jpg",
         "camera_512x512_gray_q90.jpg", "logo_500x500_rgba.png", "astronaut_333x517_q85.jpg"]
TOO_MANY_PIXELS = "motorcycle_2000x1500_q90.jpg"  # 3 MP, above the test server's 1 MP
MAX_FILES = 4
MAX_UPLOAD = 2 * 1024 * 1024


def close(a: float, b: float) -> bool:
    """Equal up to float32 rounding: packing images differently moves logits by ~1e-6."""
    return abs(a - b) <= 1e-5 * max(1.0, abs(b))


def cli_json(model, files) -> dict[str, dict]:
    """``musiq score --format json`` for the same files, by file name."""
    out = subprocess.run(
        [sys.executable, "-m", "musiq.cli.main", "score", "--format", "json", "--device",
         "cpu", "--model", str(model), *map(str, files)],
        capture_output=True, text=True, timeout=600)
    return {rec["path"].rsplit("/", 1)[-1]: rec for rec in json.loads(out.stdout)}


def multipart(names, client, url, **params) -> httpx.Response:
    files = [("file", (n, (IMAGES / n).read_bytes())) for n in names]
    return client.post(url + "/v1/score", files=files, params=params, headers=AUTH)


def assert_clean_exit(srv: ServerProcess) -> None:
    """SIGTERM ends the server after a graceful shutdown (uvicorn then re-raises the signal)."""
    rc = srv.stop()
    assert rc in (0, -signal.SIGTERM), srv.output()
    assert "Application shutdown complete" in srv.output()


@pytest.fixture(scope="module")
def server(ckpt_1class, ckpt_10class):
    srv = ServerProcess("--model", str(ckpt_1class), "--model", str(ckpt_10class),
                        "--max-files", str(MAX_FILES), "--max-upload-mb", "2",
                        "--max-pixels", "1000000", "--max-wait-ms", "200",
                        env={"MUSIQ_API_KEY": KEY})
    yield srv
    assert_clean_exit(srv)


@pytest.fixture(scope="module")
def client():
    with httpx.Client(timeout=120) as c:
        yield c


def test_health_models_and_api_key(server, client, ckpt_1class, ckpt_10class):
    assert client.get(server.url + "/healthz").json()["status"] == "ok"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": KEY + "x"}):
        r = client.get(server.url + "/v1/models", headers=headers)
        assert r.status_code == 401 and "API key" in r.json()["detail"]
        assert r.headers["www-authenticate"] == "Bearer"
    r = client.post(server.url + "/v1/score", files=[("file", ("a.jpg", b"x"))])
    assert r.status_code == 401
    for headers in (AUTH, {"X-API-Key": KEY}):
        r = client.get(server.url + "/v1/models", headers=headers)
        assert r.status_code == 200
    body = r.json()
    assert body["default"] == ckpt_1class.name
    by_name = {m["name"]: m for m in body["models"]}
    assert by_name[ckpt_10class.name]["kind"] == "distribution"
    assert by_name[ckpt_10class.name]["score_range"] == [1.0, 10.0]
    assert all("path" not in m for m in body["models"])  # no server-side paths
    assert body["limits"]["max_files"] == MAX_FILES
    assert body["limits"]["max_pixels"] == 1_000_000


@pytest.mark.parametrize("ckpt", ["ckpt_1class", "ckpt_10class"])
def test_scores_equal_the_cli(server, client, ckpt, request):
    path = request.getfixturevalue(ckpt)
    expected = cli_json(path, [IMAGES / n for n in SMALL])
    got: dict[str, dict] = {}
    for i in range(0, len(SMALL), MAX_FILES):
        r = multipart(SMALL[i:i + MAX_FILES], client, server.url, model=path.name)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == path.name
        got.update({e["filename"]: e for e in body["results"]})
    assert set(got) == set(SMALL)
    for name in SMALL:
        e, ref = got[name], expected[name]
        assert e["error"] is None and ref["error"] is None
        assert close(e["score"], ref["score"]), (name, e["score"], ref["score"])
        if ckpt == "ckpt_10class":
            assert body["score_range"] == [1.0, 10.0]
            assert len(e["distribution"]) == 10
            assert max(abs(a - b) for a, b in zip(e["distribution"], ref["distribution"])) < 1e-6
            assert close(e["std"], ref["std"])
        else:
            assert "distribution" not in e


def test_raw_body_and_filename(server, client):
    data = (IMAGES / "chelsea_451x300_q75.jpg").read_bytes()
    raw = client.post(server.url + "/v1/score", content=data, headers=AUTH,
                      params={"filename": "cat.jpg"})
    assert raw.status_code == 200
    (entry,) = raw.json()["results"]
    assert entry["filename"] == "cat.jpg" and entry["error"] is None
    solo = multipart(["chelsea_451x300_q75.jpg"], client, server.url).json()["results"][0]
    assert close(entry["score"], solo["score"])


def test_multipart_bad_file_is_an_entry_error(server, client):
    files = [("file", ("good.jpg", (IMAGES / "coffee_30x20_q90.jpg").read_bytes())),
             ("file", ("notes.txt", b"hello, not an image")),
             ("file", ("cut.jpg", (IMAGES / "coffee_600x400_q90.jpg").read_bytes()[:3000])),
             ("file", ("huge.jpg", (IMAGES / TOO_MANY_PIXELS).read_bytes()))]
    r = client.post(server.url + "/v1/score", files=files, headers=AUTH)
    assert r.status_code == 200
    res = {e["filename"]: e for e in r.json()["results"]}
    assert [e["filename"] for e in r.json()["results"]] == ["good.jpg", "notes.txt", "cut.jpg",
                                                             "huge.jpg"]
    assert res["good.jpg"]["error"] is None and isinstance(res["good.jpg"]["score"], float)
    assert res["notes.txt"]["score"] is None
    assert "not a supported format" in res["notes.txt"]["error"]
    assert "truncated" in res["cut.jpg"]["error"]
    assert "2000x1500" in res["huge.jpg"]["error"] and "limit" in res["huge.jpg"]["error"]


@pytest.mark.parametrize("body,status,needle", [
    (b"hello, not an image", 415, "upload.bin: not an image: not a supported format"),
    ((IMAGES / "coffee_600x400_q90.jpg").read_bytes()[:3000], 422, "truncated JPEG"),
    ((IMAGES / TOO_MANY_PIXELS).read_bytes(), 422, "above the limit of 1,000,000"),
    (b"", 400, "empty request body"),
])
def test_raw_body_errors(server, client, body, status, needle):
    r = client.post(server.url + "/v1/score", content=body, headers=AUTH,
                    params={"filename": "upload.bin"})
    assert r.status_code == status
    assert needle in r.json()["detail"]


def test_upload_limits(server, client):
    big = b"\xff\xd8\xff" + bytes(MAX_UPLOAD)
    r = client.post(server.url + "/v1/score", content=big, headers=AUTH)
    assert r.status_code == 413 and "limit of 2 MiB" in r.json()["detail"]

    def chunks():  # no Content-Length: the server must count while reading
        for _ in range(40):
            yield bytes(64 * 1024)

    r = client.post(server.url + "/v1/score", content=chunks(), headers=AUTH)
    assert r.status_code == 413
    r = multipart(["coffee_30x20_q90.jpg"] * (MAX_FILES + 1), client, server.url)
    assert r.status_code == 413 and f"at most {MAX_FILES}" in r.json()["detail"]


def test_request_errors(server, client):
    path = str(IMAGES / "chelsea_451x300_q75.jpg")
    # A text field holding a server-side path is refused, not opened.
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n"
            + path.encode() + b"\r\n--XyZ--\r\n")
    r = client.post(server.url + "/v1/score", content=body, headers={
        **AUTH, "Content-Type": "multipart/form-data; boundary=XyZ"})
    assert r.status_code == 400 and "never reads paths" in r.json()["detail"]
    # The same as a form field is a raw body: bytes, never a path.
    r = client.post(server.url + "/v1/score", data={"file": path}, headers=AUTH)
    assert r.status_code == 415
    r = client.post(server.url + "/v1/score", files=[("image", ("a.jpg", b"x"))], headers=AUTH)
    assert r.status_code == 400 and "no multipart field named 'file' (got: image)" in r.text
    r = client.post(server.url + "/v1/score", content=b"--nope\r\n", headers={
        **AUTH, "Content-Type": "multipart/form-data"})
    assert r.status_code == 400 and "multipart" in r.json()["detail"]
    r = multipart(["coffee_30x20_q90.jpg"], client, server.url, model="nope")
    assert r.status_code == 404 and "ckpt_1class.npz" in r.json()["detail"]


def test_bad_uploads_do_not_disturb_concurrent_good_ones(server, client):
    name = "chelsea_451x300_q75.jpg"
    reference = multipart([name], client, server.url).json()["results"][0]["score"]
    good = (IMAGES / name).read_bytes()
    bad = [b"not an image", good[:2000], b"\xff\xd8\xff" + bytes(100), b"\x89PNG\r\n\x1a\n"]
    jobs = [("good", good)] * 6 + [("bad", b) for b in bad]
    answers: list = [None] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def send(i: int) -> None:
        kind, data = jobs[i]
        barrier.wait()
        with httpx.Client(timeout=120) as c:
            answers[i] = c.post(server.url + "/v1/score", content=data, headers=AUTH)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (kind, _), r in zip(jobs, answers):
        if kind == "good":
            assert r.status_code == 200, r.text
            assert close(r.json()["results"][0]["score"], reference)
        else:
            assert r.status_code in (415, 422) and r.json()["detail"]
    metrics = client.get(server.url + "/metrics").text
    sizes = [int(m) for m in re.findall(r'musiq_batches_total\{[^}]*size="(\d+)"\}', metrics)]
    assert max(sizes) > 1, metrics  # concurrent images were batched


def test_metrics_and_docs(server, client):
    r = client.get(server.url + "/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    ok = re.search(r'musiq_requests_total\{route="/v1/score",status="200"\} (\d+)', text)
    assert ok and int(ok.group(1)) >= 1
    assert re.search(r'musiq_rejected_total\{reason="unauthorized"\} [1-9]', text)
    assert re.search(r"^musiq_queue_depth 0$", text, re.M)
    assert re.search(r'^musiq_batch_size_bucket\{le="\+Inf"\} [1-9]', text, re.M)
    spec = client.get(server.url + "/openapi.json").json()
    assert "multipart/form-data" in spec["paths"]["/v1/score"]["post"]["requestBody"]["content"]
    assert client.get(server.url + "/docs").status_code == 200


def test_page_files(server, client):
    r = client.get(server.url + "/")
    assert r.status_code == 200 and "musiq" in r.text
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert client.get(server.url + "/static/app.js").status_code == 200
    for bad in ("/static/..%2f..%2fpyproject.toml", "/static/scorer.py", "/static/%2e%2e"):
        assert client.get(server.url + bad).status_code == 404


@pytest.fixture(scope="module")
def busy_server(ckpt_1class):
    """One queue slot, a 2 s body deadline and a 4 s request deadline."""
    srv = ServerProcess("--model", str(ckpt_1class), "--max-queue", "1", "--max-files", "1",
                        "--timeout", "4", "--body-timeout", "2")
    yield srv
    assert_clean_exit(srv)


def read_reply(sock: socket.socket) -> bytes:
    sock.settimeout(30)
    reply = b""
    while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
        part = sock.recv(4096)
        if not part:
            break
        reply += part
    sock.close()
    return reply


def test_slow_bodies_do_not_hold_the_queue_and_get_408(busy_server, client):
    """Clients that announce a body and stop sending used to hold every queue slot (503 for
    everyone else); now the slot is taken only once the body is in, under --body-timeout."""
    small = (IMAGES / "coffee_30x20_q90.jpg").read_bytes()
    url = busy_server.url
    slow = []
    for _ in range(3):  # three times the queue
        s = socket.create_connection(("127.0.0.1", busy_server.port))
        s.sendall(f"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n"
                  f"Content-Type: image/jpeg\r\n\r\n".encode() + small[:2])
        slow.append(s)
    started = time.monotonic()
    time.sleep(0.3)
    r = client.post(url + "/v1/score", content=small)
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["score"] is not None
    for s in slow:
        reply = read_reply(s)
        assert reply.startswith(b"HTTP/1.1 408"), reply
        assert b"within the limit of 2 s" in reply
    assert 1.5 <= time.monotonic() - started < 20
    metrics = client.get(url + "/metrics").text
    assert re.search(r'musiq_rejected_total\{reason="body_timeout"\} 3', metrics)


def test_full_queue_answers_503_and_slow_request_504(busy_server, client):
    # A 3 MP image keeps the only slot busy for a while (decode, then the model).
    big = (IMAGES / TOO_MANY_PIXELS).read_bytes()
    small = (IMAGES / "coffee_30x20_q90.jpg").read_bytes()
    url = busy_server.url
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(client.post, url + "/v1/score", content=big)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not first.done():
            if "musiq_queue_depth 1" in client.get(url + "/metrics").text:
                break  # the big image holds the only slot (decoding or in the model)
            time.sleep(0.02)
        r = client.post(url + "/v1/score", content=small)
        assert r.status_code == 503, r.text
        assert "queue of 1 image(s) is full" in r.json()["detail"]
        assert 1 <= int(r.headers["retry-after"]) <= 60
        big_answer = first.result()
    assert big_answer.status_code in (200, 504), big_answer.text
    # The slot is free again and the server scores (once a forward pass of the big image that
    # timed out has finished: a running pass is not interrupted).
    deadline = time.monotonic() + 120
    while True:
        r = client.post(url + "/v1/score", content=small)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        assert r.status_code == 504, r.text
    assert r.status_code == 200 and r.json()["results"][0]["score"] is not None
    metrics = client.get(url + "/metrics").text
    assert re.search(r'musiq_rejected_total\{reason="queue_full"\} [1-9]', metrics)


def test_invalid_options_fail_before_serving():
    out = subprocess.run([sys.executable, "-m", "musiq.cli.main", "serve", "--max-files", "9",
                          "--max-queue", "4"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "max_files must be between 1 and max_queue" in out.stderr
