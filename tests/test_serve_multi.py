"""``POST /v1/score?model=a,b`` and ``model=all``: several models answer each file from one
decode. Every model's score equals its single-model answer; a bad file is one row with its
error for every model; one model's failure leaves the others' scores; names are checked.
A real server process on 127.0.0.1 serving three test checkpoints (two multi-scale, one
single-scale, so that one decode makes two preprocessings' tokens)."""
from __future__ import annotations

import re

import httpx
import pytest

from conftest import GOLDEN

pytest.importorskip("fastapi")
from openapi_schema_validator import OAS31Validator  # noqa: E402
from serving import ServerProcess  # noqa: E402

IMAGES = GOLDEN / "images"
#: Several-model scores equal the single-model answers (the same tokens, the same model).
SAME = 1e-6
#: Files scored in one batch with others: packing moves logits by float32 rounding (as in
#: test_serve.close).
PACKED = 1e-5
GOOD = ["chelsea_451x300_q75.jpg", "coffee_30x20_q90.jpg", "chelsea_20x30_q90.jpg",
        "coffee_1000x2_q90.jpg"]
#: 318 multi-scale tokens (above the server's --max-tokens 300), 187 single-scale ones.
TOO_MANY_FOR_MULTI = "astronaut_333x517_q85.jpg"


@pytest.fixture(scope="module")
def names(ckpt_1class, ckpt_10class, ckpt_1class_single) -> list[str]:
    return [ckpt_1class.name, ckpt_10class.name, ckpt_1class_single.name]


@pytest.fixture(scope="module")
def server(ckpt_1class, ckpt_10class, ckpt_1class_single):
    srv = ServerProcess("--model", str(ckpt_1class), "--model", str(ckpt_10class),
                        "--model", str(ckpt_1class_single), "--max-files", "4",
                        "--max-pixels", "1000000", "--max-tokens", "300",
                        "--decode-workers", "1", "--max-wait-ms", "20")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client():
    with httpx.Client(timeout=120) as c:
        yield c


def post(client, url, files, **params) -> httpx.Response:
    parts = [("file", (n, data if isinstance(data, bytes) else (IMAGES / n).read_bytes()))
             for n, data in files]
    return client.post(url + "/v1/score", files=parts, params=params)


def one(client, url, name, model) -> dict:
    """The result of one file scored alone (a batch of one) by ``model``."""
    r = post(client, url, [(name, None)], model=model)
    assert r.status_code == 200, r.text
    return r.json()["results"][0]


def same_result(got: dict, single: dict, tol: float) -> None:
    assert got["error"] == single["error"]
    if single["error"] is None:
        assert abs(got["score"] - single["score"]) <= tol, (got["score"], single["score"])
        for key in ("distribution", "std"):
            assert (key in got) == (key in single)
        if "distribution" in single:
            assert max(abs(a - b) for a, b in zip(got["distribution"],
                                                  single["distribution"])) <= tol
            assert abs(got["std"] - single["std"]) <= tol


@pytest.fixture(scope="module")
def alone(server, client, names) -> dict[str, dict[str, dict]]:
    """``{model: {file: its single-model result}}``, each file alone."""
    return {m: {f: one(client, server.url, f, m) for f in GOOD + [TOO_MANY_FOR_MULTI]}
            for m in names}


@pytest.mark.parametrize("order", ["served", "reversed", "all"])
def test_every_model_scores_as_alone(server, client, names, alone, order):
    asked = names[::-1] if order == "reversed" else names
    query = "all" if order == "all" else ",".join(asked)
    for f in GOOD:
        r = post(client, server.url, [(f, None)], model=query)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == asked[0] and list(body["models"]) == asked
        assert body["models"][names[1]] == {"kind": "distribution", "score_range": [1.0, 10.0]}
        lead = alone[asked[0]]
        assert body["kind"] == ("distribution" if asked[0] == names[1] else "mos")
        (row,) = body["results"]
        assert row["filename"] == f and row["error"] is None
        assert list(row["models"]) == asked
        assert row["score"] == row["models"][asked[0]]["score"]  # the first model's
        assert abs(row["score"] - lead[f]["score"]) <= SAME
        for m in asked:
            same_result(row["models"][m], alone[m][f], SAME)
            assert "filename" not in row["models"][m] and "logits" not in row["models"][m]


def test_one_model_answers_exactly_as_before(server, client, names):
    """No ``models`` key anywhere when one model is named (or none)."""
    for params in ({}, {"model": names[1]}):
        body = post(client, server.url, [(GOOD[0], None)], **params).json()
        assert set(body) == {"model", "kind", "score_range", "results"}
        assert "models" not in body["results"][0]


def test_bad_files_are_one_row_each_and_one_model_failing_keeps_the_others(
        server, client, names, alone):
    files = [(GOOD[0], None), ("notes.txt", b"hello, not an image"),
             ("cut.jpg", (IMAGES / "coffee_600x400_q90.jpg").read_bytes()[:3000]),
             (TOO_MANY_FOR_MULTI, None)]
    r = post(client, server.url, files, model="all")
    assert r.status_code == 200, r.text
    rows = r.json()["results"]
    assert [row["filename"] for row in rows] == [n for n, _ in files]
    good, text, cut, big = rows
    assert good["error"] is None
    for m in names:
        same_result(good["models"][m], alone[m][GOOD[0]], PACKED)
    for row, needle in ((text, "not a supported format"), (cut, "truncated")):
        assert needle in row["error"] and row["score"] is None
        assert list(row["models"]) == names
        for m in names:  # the same error for every model
            assert row["models"][m] == {"score": None, "error": row["error"]}
    # Decoded, but too many tokens for the multi-scale models: their errors, and the
    # single-scale model's score (from the same decode) stays.
    assert big["error"] is None and big["score"] is None
    for m in names[:2]:
        assert big["models"][m]["score"] is None
        assert "318 tokens, above the limit of 300" in big["models"][m]["error"]
    single = big["models"][names[2]]
    assert single["error"] is None
    same_result(single, alone[names[2]][TOO_MANY_FOR_MULTI], PACKED)


def test_raw_body(server, client, names, alone):
    data = (IMAGES / GOOD[0]).read_bytes()
    r = client.post(server.url + "/v1/score", content=data,
                    params={"model": f"{names[2]},{names[0]}", "filename": "cat.jpg"})
    assert r.status_code == 200, r.text
    (row,) = r.json()["results"]
    assert row["filename"] == "cat.jpg" and list(row["models"]) == [names[2], names[0]]
    for m in (names[2], names[0]):
        same_result(row["models"][m], alone[m][GOOD[0]], SAME)
    # An upload that cannot be decoded answers as with one model.
    for model in (names[0], "all"):
        r = client.post(server.url + "/v1/score", content=b"hello", params={
            "model": model, "filename": "x.bin"})
        assert r.status_code == 415
        assert "x.bin: not an image: not a supported format" in r.json()["detail"]


@pytest.mark.parametrize("query,status,needle", [
    ("{0},nope", 404, "unknown model 'nope'; this server has: {0}, {1}, {2}"),
    ("nope,{1}", 404, "unknown model 'nope'"),
    ("{0},{1},{0}", 400, "'{0}' named more than once"),
    ("{0},,{1}", 400, "empty model name"),
    ("{0},", 400, "empty model name"),
    ("nope", 404, "unknown model 'nope'"),
])
def test_names_are_checked(server, client, names, query, status, needle):
    r = post(client, server.url, [(GOOD[1], None)], model=query.format(*names))
    assert r.status_code == status, r.text
    assert needle.format(*names) in r.json()["detail"]


def test_metrics_count_each_model(server, client, names):
    before = client.get(server.url + "/metrics").text

    def count(text: str, model: str) -> int:
        m = re.search(rf'musiq_model_images_total\{{model="{re.escape(model)}",outcome="ok"\}}'
                      r" (\d+)", text)
        return int(m.group(1)) if m else 0

    def images(text: str) -> int:
        m = re.search(r'musiq_images_total\{outcome="ok"\} (\d+)', text)
        return int(m.group(1)) if m else 0

    r = post(client, server.url, [(GOOD[1], None), (GOOD[2], None)],
             model=f"{names[0]},{names[2]}")
    assert r.status_code == 200
    after = client.get(server.url + "/metrics").text
    assert images(after) - images(before) == 2  # images, once each
    assert count(after, names[0]) - count(before, names[0]) == 2
    assert count(after, names[2]) - count(before, names[2]) == 2
    assert count(after, names[1]) == count(before, names[1])  # not asked
    for m in (names[0], names[2]):
        assert re.search(rf'musiq_batches_total\{{model="{re.escape(m)}",size="\d+"\}}', after)


def test_the_document_describes_several_models(server, client, names):
    spec = client.get(server.url + "/openapi.json").json()
    op = spec["paths"]["/v1/score"]["post"]
    param = next(p for p in op["parameters"] if p["name"] == "model")
    assert "all" in param["description"] and "comma" in param["description"]
    schema = op["responses"]["200"]["content"]["application/json"]["schema"]
    validator = OAS31Validator({**schema, "components": spec.get("components", {})})
    files = [(GOOD[0], None), ("notes.txt", b"not an image")]
    for model in ("all", names[0]):
        validator.validate(post(client, server.url, files, model=model).json())
    answer = spec["components"]["schemas"]["ScoreAnswer"]["properties"]
    assert "models" in answer
    entry = spec["components"]["schemas"]["ScoreEntry"]["properties"]
    assert "models" in entry


def test_one_decode_per_upload(ckpt_1class, ckpt_10class, ckpt_1class_single):
    """In process: three models, two preprocessings, one decode call asking for both."""
    import asyncio

    import musiq
    from musiq.serve.app import Service
    from musiq.serve.decoding import decode_shared
    from musiq.serve.uploads import Upload
    from musiq.serve.work import Served, score_several

    scorers = [musiq.load(c, device="cpu") for c in (ckpt_1class, ckpt_10class,
                                                       ckpt_1class_single)]
    options = tuple(dict.fromkeys(Service.options(s) for s in scorers))
    assert len(options) == 2

    class Pool:
        calls: list = []

        async def decode(self, data: bytes, which):
            self.calls.append(which)
            return decode_shared(data, options, which)

    class Batcher:
        def __init__(self, scorer) -> None:
            self.scorer = scorer

        async def submit(self, tokens):
            return self.scorer.logits([tokens])[0]

    pool = Pool()
    served = {s.name: Served(s, Batcher(s), pool, options.index(Service.options(s)))
              for s in scorers}
    data = (IMAGES / GOOD[0]).read_bytes()
    row = asyncio.run(score_several(Upload(GOOD[0], data), served, asyncio.Semaphore(1)))
    assert pool.calls == [(0, 1)]
    assert row.ok and list(row.models) == list(served)
    for s in scorers:
        assert abs(row.models[s.name].score - s.predict(IMAGES / GOOD[0]).score) <= SAME
