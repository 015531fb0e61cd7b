"""``musiq serve --engine ray`` on a local Ray started here (127.0.0.1, stopped by its process
ids): the page, ``/v1``, ``/v2``, ``/healthz`` and ``/metrics`` as in the single process, the
same scores as the library, and a replica killed under load replaced while every request
is answered (with client retries of the ones it held).

One Ray and one server for the module: starting them takes minutes on two shared cores.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from pathlib import Path

import httpx
import pytest
import yaml

pytest.importorskip("ray.serve")
pytest.importorskip("tritonclient.http")

import serving  # noqa: E402
from raycluster import ENV, RayCluster  # noqa: E402
from serving import ServerProcess, free_port  # noqa: E402
from test_serve_v2 import AUTH, IMAGES, KEY, MAX_FILES, SERVER_ARGS, SMALL, V2Checks, \
    close  # noqa: E402

REPLICAS = 2
ROOT = Path(__file__).resolve().parents[1]


def test_config_file_builds_the_application():
    """deploy/ray-serve.yaml (also KubeRay's serveConfigV2) builds the documented deployment;
    a setting musiq does not have is a clear error, not a replica crash later."""
    from musiq.errors import MusiqError
    from musiq.serve.ray_engine import app_builder
    config = yaml.safe_load((ROOT / "deploy" / "ray-serve.yaml").read_text())
    (app_config,) = config["applications"]
    assert app_config["import_path"] == "musiq.serve.ray_engine:app_builder"
    deployment = app_builder(app_config["args"])._bound_deployment
    assert deployment.num_replicas == app_config["args"]["replicas"]
    assert deployment.ray_actor_options == {"num_cpus": 2.0, "num_gpus": 0.0}
    spec = deployment.init_args[0]
    assert spec.models == ("koniq",) and spec.config.allowed_hosts == ("*",)
    assert spec.config.max_queue == deployment.max_queued_requests == 64
    kuberay = yaml.safe_load((ROOT / "deploy" / "rayservice.yaml").read_text())
    served = yaml.safe_load(kuberay["spec"]["serveConfigV2"])["applications"][0]
    assert app_builder(served["args"])._bound_deployment.num_replicas == 2
    with pytest.raises(MusiqError, match="max_batch"):
        app_builder({"max_batchsize": 4})


@pytest.fixture(scope="module")
def ray_cluster():
    cluster = RayCluster(num_cpus=2)
    yield cluster
    cluster.stop()
    assert not cluster.pids()


@pytest.fixture(scope="module")
def models(ckpt_1class, ckpt_10class):
    return [ckpt_1class, ckpt_10class]


@pytest.fixture(scope="module")
def ray_server(ray_cluster, models):
    ready, serving.READY_TIMEOUT_S = serving.READY_TIMEOUT_S, 600.0  # Ray starts slowly here
    try:
        srv = ServerProcess(*(a for m in models for a in ("--model", str(m))), *SERVER_ARGS,
                            "--decode-workers", "1", "--engine", "ray", "--ray-address",
                            ray_cluster.address, "--replicas", str(REPLICAS),
                            "--replica-cpus", "0.5", env={"MUSIQ_API_KEY": KEY, **ENV})
    finally:
        serving.READY_TIMEOUT_S = ready
    yield srv
    assert srv.stop() == 0, srv.output()
    assert "Ray Serve application stopped" in srv.output()


@pytest.fixture(scope="module")
def url(ray_server):
    return ray_server.url


class TestRay(V2Checks):
    """The v2 checks of the single-process service, against Ray Serve."""


def library_score(scorer, name: str) -> float:
    return scorer.output.interpret(scorer.logits([scorer.tokens(IMAGES / name)])[0])["score"]


@pytest.mark.parametrize("ckpt", ["1class", "10class"])
def test_v1_scores_equal_the_library(url, ckpt, request):
    path, scorer = (request.getfixturevalue(f"{k}_{ckpt}") for k in ("ckpt", "scorer"))
    files = [("file", (n, (IMAGES / n).read_bytes())) for n in SMALL[:MAX_FILES]]
    r = httpx.post(url + "/v1/score", files=files, params={"model": path.name}, headers=AUTH,
                   timeout=120)
    assert r.status_code == 200, r.text
    for entry, name in zip(r.json()["results"], SMALL):
        assert entry["filename"] == name and entry["error"] is None
        assert close(entry["score"], library_score(scorer, name)), name


def test_v1_several_models_in_one_request(url, models, scorer_1class, scorer_10class):
    """``model=all`` on a replica: every model's score, as the library's, from one decode."""
    files = [("file", (n, (IMAGES / n).read_bytes())) for n in SMALL[:2]]
    r = httpx.post(url + "/v1/score", files=files, params={"model": "all"}, headers=AUTH,
                   timeout=120)
    assert r.status_code == 200, r.text
    names = [m.name for m in models]
    assert list(r.json()["models"]) == names
    for entry, name in zip(r.json()["results"], SMALL):
        assert entry["filename"] == name and entry["error"] is None
        assert list(entry["models"]) == names
        for m, scorer in zip(names, (scorer_1class, scorer_10class)):
            assert close(entry["models"][m]["score"], library_score(scorer, name)), (m, name)


def test_page_health_metrics_key_and_refusals(url, models):
    page = httpx.get(url + "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    health = httpx.get(url + "/healthz").json()
    assert health["status"] == "ok" and health["models"] == [m.name for m in models]
    assert httpx.get(url + "/v1/models").status_code == 401
    assert httpx.get(url + "/v1/models", headers=AUTH).json()["default"] == models[0].name
    raw = httpx.post(url + "/v1/score", content=b"hello, not an image", headers=AUTH)
    assert raw.status_code == 415 and "body" in raw.json()["detail"]
    many = [("file", (f"{i}.jpg", b"x")) for i in range(MAX_FILES + 1)]
    r = httpx.post(url + "/v1/score", files=many, headers=AUTH)
    assert r.status_code == 413 and "too many files" in r.json()["detail"]
    r = httpx.post(url + "/v1/score", content=b"\xff" * (2 * 1024 * 1024 + 1), headers=AUTH)
    assert r.status_code == 413
    metrics = httpx.get(url + "/metrics").text
    assert "musiq_requests_total" in metrics and 'route="/v1/score"' in metrics


def test_a_second_server_on_the_same_serve_is_refused(ray_cluster, ray_server, models):
    """Serve's HTTP port is fixed once started: a second musiq serve on another port, or a
    second 'musiq' application, is a clear error that leaves the first one serving."""
    for port, words in ((free_port(), f"already listens on 127.0.0.1:{ray_server.port}"),
                        (ray_server.port, "already runs an application named 'musiq'")):
        out = subprocess.run(
            [sys.executable, "-m", "musiq.cli.main", "serve", "--engine", "ray",
             "--ray-address", ray_cluster.address, "--host", "127.0.0.1", "--port", str(port),
             "--model", str(models[0]), "--device", "cpu"],
            capture_output=True, text=True, timeout=300, env={**os.environ, **ENV})
        assert out.returncode != 0 and words in out.stderr, out.stderr[-2000:]
        assert "Traceback" not in out.stderr
    assert httpx.get(ray_server.url + "/healthz").json()["status"] == "ok"


def score_with_retries(url: str, name: str, attempts: int = 5) -> tuple[float, int]:
    """The score of one image and how many attempts it took; a request held by a replica
    that dies fails with 5xx and is sent again (what a client of any replicated service
    does)."""
    data = (IMAGES / name).read_bytes()
    for attempt in range(1, attempts + 1):
        try:
            r = httpx.post(url + "/v1/score", content=data, headers=AUTH, timeout=120)
            if r.status_code == 200:
                return r.json()["results"][0]["score"], attempt
            assert r.status_code >= 500, r.text
        except httpx.TransportError:
            pass
        time.sleep(1.0)
    raise AssertionError(f"{name}: no answer after {attempts} attempts")


def test_killed_replica_is_replaced_and_requests_answered(url, ray_cluster, scorer_1class):
    before = ray_cluster.replica_pids()
    assert len(before) == REPLICAS, before
    names = [SMALL[i % 2] for i in range(24)]  # the two smallest images, alternating
    expected = {n: library_score(scorer_1class, n) for n in set(names)}
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(score_with_retries, url, n) for n in names]
        while sum(f.done() for f in futures) < 4:
            time.sleep(0.05)
        os.kill(before[0], signal.SIGKILL)
        results = [f.result() for f in futures]
    for (score, _), name in zip(results, names):
        assert close(score, expected[name]), name
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        now = ray_cluster.replica_pids()
        if len(now) == REPLICAS and before[0] not in now:
            break
        time.sleep(1.0)
    assert len(now) == REPLICAS and before[0] not in now, (before, now)
    while httpx.get(url + "/healthz").status_code != 200 and time.monotonic() < deadline:
        time.sleep(1.0)
    assert score_with_retries(url, SMALL[1])[1] == 1
