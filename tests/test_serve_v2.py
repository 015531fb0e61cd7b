"""The Open Inference Protocol (v2) routes of ``musiq serve``: Triton's HTTP client from PyPI
against a real server process, the same numbers as ``/v1/score``, and the refusals.

``V2Checks`` holds the checks; ``tests/test_serve_ray.py`` runs them against Ray Serve too.
"""
from __future__ import annotations

import base64
import json
import math

import httpx
import numpy as np
import pytest

from conftest import GOLDEN

pytest.importorskip("fastapi")
httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

from serving import ServerProcess  # noqa: E402

IMAGES = GOLDEN / "images"
KEY = "test-key-v2-91b3"
# Pass tritonclient a copy: it adds its own headers to the dict it is given.
AUTH = {"Authorization": f"Bearer {KEY}"}
SMALL = ["chelsea_451x300_q75.jpg", "coffee_30x20_q90.jpg", "camera_512x512_gray_q90.jpg",
         "logo_500x500_rgba.png"]
MAX_FILES = 4
SERVER_ARGS = ("--max-files", str(MAX_FILES), "--max-upload-mb", "2", "--max-pixels",
               "1000000", "--max-wait-ms", "50")


def close(a: float, b: float) -> bool:
    """Equal up to float32 rounding: packing images differently moves logits by ~1e-6."""
    return abs(a - b) <= 1e-5 * max(1.0, abs(b))


def image_input(names_or_bytes, binary: bool) -> "httpclient.InferInput":
    blobs = [(IMAGES / x).read_bytes() if isinstance(x, str) else x for x in names_or_bytes]
    if binary:
        arr = np.array(blobs, dtype=np.object_)
    else:
        arr = np.array([base64.b64encode(b) for b in blobs], dtype=np.object_)
    inp = httpclient.InferInput("image", [len(blobs)], "BYTES")
    inp.set_data_from_numpy(arr, binary_data=binary)
    return inp


def v1_scores(url: str, model: str, names: list[str]) -> list[float]:
    files = [("file", (n, (IMAGES / n).read_bytes())) for n in names]
    r = httpx.post(url + "/v1/score", files=files, params={"model": model}, headers=AUTH,
                   timeout=120)
    assert r.status_code == 200, r.text
    return [e["score"] for e in r.json()["results"]]


def v2_post(url: str, model: str, body, headers=None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{url}/v2/models/{model}/infer", content=content,
                      headers={**AUTH, **(headers or {})}, timeout=120)


def b64(name: str) -> str:
    return base64.b64encode((IMAGES / name).read_bytes()).decode()


def tensor(data, shape=None, datatype="BYTES", name="image") -> dict:
    return {"inputs": [{"name": name, "datatype": datatype,
                        "shape": shape if shape is not None else [len(data)], "data": data}]}


class V2Checks:
    """Tests over fixtures ``url`` (a served instance with ``SERVER_ARGS`` and key ``KEY``)
    and ``models`` (the served checkpoints: 1 class, 10 classes)."""

    @pytest.mark.parametrize("binary", [False, True], ids=["json-base64", "binary-ext"])
    def test_triton_client_scores_equal_v1(self, url, models, binary, scorer_10class):
        client = httpclient.InferenceServerClient(url.removeprefix("http://"))
        for model in models:
            result = client.infer(model.name, [image_input(SMALL, binary)], headers=dict(AUTH))
            score = result.as_numpy("score")
            assert score.dtype == np.float32 and score.shape == (len(SMALL),)
            assert list(result.as_numpy("error")) == [""] * len(SMALL)
            expected = v1_scores(url, model.name, SMALL)
            for got, ref, name in zip(score, expected, SMALL):
                assert close(float(got), ref), (model.name, name, got, ref)
        logits = result.as_numpy("logits")  # the 10-class model, the last one served
        assert logits.shape == (len(SMALL), 10)
        for row, name in zip(logits, SMALL):
            ref = scorer_10class.logits([scorer_10class.tokens(IMAGES / name)])[0]
            assert np.allclose(row, ref, rtol=1e-5, atol=1e-5), name

    def test_triton_client_health_and_metadata(self, url, models):
        client = httpclient.InferenceServerClient(url.removeprefix("http://"))
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(models[1].name)
        assert not client.is_model_ready("no-such-model")
        meta = client.get_model_metadata(models[1].name, headers=dict(AUTH))
        assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
        outs = {o["name"]: o for o in meta["outputs"]}
        assert outs["score"]["datatype"] == "FP32" and outs["logits"]["shape"] == [-1, 10]
        with pytest.raises(InferenceServerException, match="API key"):
            client.get_model_metadata(models[1].name)

    def test_line_broken_base64_is_accepted(self, url, models):
        data = (IMAGES / SMALL[1]).read_bytes()
        r = v2_post(url, models[0].name, tensor([base64.encodebytes(data).decode()]))
        assert r.status_code == 200, r.text
        (score,) = r.json()["outputs"][0]["data"]
        assert close(score, v1_scores(url, models[0].name, [SMALL[1]])[0])

    def test_one_bad_image_keeps_the_others(self, url, models):
        client = httpclient.InferenceServerClient(url.removeprefix("http://"))
        good = SMALL[0]
        result = client.infer(models[0].name, [image_input(
            [good, b"hello, not an image", (IMAGES / SMALL[1]).read_bytes()[:200]],
            binary=False)], headers=dict(AUTH))
        score, errors = result.as_numpy("score"), result.as_numpy("error")
        assert close(float(score[0]), v1_scores(url, models[0].name, [good])[0])
        assert math.isnan(score[1]) and math.isnan(score[2]) and errors[0] == ""
        assert all(isinstance(e, str) and "image" in e for e in errors[1:]), errors
        assert np.isnan(result.as_numpy("logits")[1:]).all()

    def test_all_bad_images_answer_the_v1_status(self, url, models):
        r = v2_post(url, models[0].name, tensor([base64.b64encode(b"not an image").decode()]))
        assert r.status_code == 415 and "image[0]" in r.json()["error"], r.text
        client = httpclient.InferenceServerClient(url.removeprefix("http://"))
        with pytest.raises(InferenceServerException, match="image"):
            client.infer(models[0].name, [image_input([b"GIF89a broken"], binary=True)],
                         headers=dict(AUTH))

    @pytest.mark.parametrize("body,status,words", [
        (b"{not json", 400, "malformed JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (tensor([1.0], datatype="FP32"), 400, "BYTES"),
        (tensor(["aGk="], name="pixels"), 400, "unknown input"),
        (tensor(["aGk=", "aGk="], shape=[3]), 400, "shape [3]"),
        (tensor(["aGk="], shape=[1, 1]), 400, "shape [N]"),
        (tensor(["not base64 at all!"]), 400, "not valid base64"),
        (tensor([{"b64": "aGk="}]), 400, "base64 string"),
        (tensor(["aGk="] * (MAX_FILES + 1)), 413, "too many images"),
        ({"inputs": []}, 400, "exactly one"),
        ({**tensor(["aGk="]), "outputs": [{"name": "pixels"}]}, 400, "unknown output"),
    ])
    def test_malformed_requests_are_refused(self, url, models, body, status, words):
        r = v2_post(url, models[0].name, body)
        assert r.status_code == status, r.text
        assert words in r.json()["error"]

    def test_limits_auth_and_unknown_model(self, url, models):
        big = tensor([base64.b64encode(b"\xff" * (2 * 1024 * 1024)).decode()])
        r = v2_post(url, models[0].name, big)
        assert r.status_code == 413 and "larger than the limit" in r.json()["error"]
        r = httpx.post(f"{url}/v2/models/{models[0].name}/infer",
                       content=json.dumps(tensor([b64(SMALL[1])])))
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert "API key" in r.json()["error"]
        r = v2_post(url, "no-such-model", tensor([b64(SMALL[1])]))
        assert r.status_code == 404 and models[0].name in r.json()["error"]
        header = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                         "parameters": {"binary_data_size": 9}}]}).encode()
        r = v2_post(url, models[0].name, header + b"\x05\0\0\0abc",
                    {"Inference-Header-Content-Length": str(len(header))})
        assert r.status_code == 400 and "binary_data_size" in r.json()["error"]

    def test_metrics_count_v2_routes_by_template(self, url, models):
        v2_post(url, models[0].name, tensor([b64(SMALL[1])]))
        text = httpx.get(url + "/metrics").text
        assert 'route="/v2/models/{name}/infer",status="200"' in text
        assert models[0].name not in "".join(
            line for line in text.splitlines() if "route=" in line)


@pytest.fixture(scope="module")
def models(ckpt_1class, ckpt_10class):
    return [ckpt_1class, ckpt_10class]


@pytest.fixture(scope="module")
def url(models):
    srv = ServerProcess(*(a for m in models for a in ("--model", str(m))), *SERVER_ARGS,
                        env={"MUSIQ_API_KEY": KEY})
    yield srv.url
    srv.stop()


class TestSingleProcess(V2Checks):
    """The v2 checks against ``musiq serve`` (one process)."""
