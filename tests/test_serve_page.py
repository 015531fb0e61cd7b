"""The web page at ``/`` in headless Chromium (Debian's chromium, driven by playwright-core).

Skips when chromium, node or ``tests/browser/node_modules`` are missing, unless
``MUSIQ_REQUIRE_BROWSER=1`` (set by ``.ci/run``, which installs them) turns that into a failure.
The screenshot goes to ``test-artifacts/serve-page.png``.
"""
from __future__ import annotations

import json
import os
import subprocess

import httpx
import pytest

from browser_check import BROWSER_DIR, missing_browser
from conftest import GOLDEN, ROOT

pytest.importorskip("fastapi")
from serving import ServerProcess  # noqa: E402

ARTIFACTS = ROOT / "test-artifacts"
KEY = "page-key-19a7"
CHOSEN = ["chelsea_451x300_q75.jpg", "coffee_600x400_q90.jpg", "rocket_640x427_q85.jpg",
          "camera_512x512_gray_q90.jpg"]
DROPPED = "astronaut_448x333_q90.jpg"




@pytest.fixture(scope="module")
def browser_ready():
    reason = missing_browser()
    if reason:
        if os.environ.get("MUSIQ_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser test required but {reason}")
        pytest.skip(reason)


def by_file(results: list[dict]) -> dict[str, dict]:
    return {r["filename"].removeprefix("dropped-"): r for r in results}


def close(a: float, b: float) -> bool:
    """Equal up to float32 rounding: the page's uploads batch images differently."""
    return abs(a - b) <= 1e-5 * max(1.0, abs(b))


def check_ranked(results: list[dict], chosen: int) -> list[dict]:
    """Scored images best first, then the broken file with its reason; the scored ones."""
    assert len(results) == chosen + 1
    ok = [r for r in results if not r["failed"]]
    assert [r["filename"] for r in results[len(ok):]] == ["broken.jpg"]  # failures last
    assert "not a supported format" in results[-1]["text"]
    assert not results[-1]["thumbnail"]
    scores = [r["score"] for r in ok]
    assert scores == sorted(scores, reverse=True)  # best first
    assert {r["filename"] for r in ok} == set(CHOSEN) | {"dropped-" + DROPPED}
    assert all(r["thumbnail"] for r in ok)
    return ok


@pytest.mark.parametrize("served", ["two models", "one model"])
def test_page_scores_sorts_and_shows_range(browser_ready, ckpt_10class, ckpt_1class,
                                           tmp_path, served):
    """One model: its scores, best first. Two: every card shows both models' scores (one
    request per group of files, ``model=all``), ranked by the model chosen; choosing the
    other ranks the same images by its scores."""
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"this is not a picture")
    chosen = [GOLDEN / "images" / n for n in CHOSEN] + [bad]
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / ("serve-page.png" if served == "two models" else
                        "serve-page-one-model.png")
    shot.unlink(missing_ok=True)
    models = [ckpt_10class, ckpt_1class][:2 if served == "two models" else 1]
    names = [m.name for m in models]
    # Two files per request, so the page has to split the five it is given.
    srv = ServerProcess(*[a for m in models for a in ("--model", str(m))],
                        "--max-files", "2", env={"MUSIQ_API_KEY": KEY})
    try:
        run = subprocess.run(
            ["node", str(BROWSER_DIR / "page_test.mjs"), srv.url, KEY, str(shot),
             *map(str, chosen), "--", str(GOLDEN / "images" / DROPPED)],
            capture_output=True, text=True, timeout=300, cwd=BROWSER_DIR)
        assert run.returncode == 0, run.stdout + run.stderr
        shown = json.loads(run.stdout.strip().splitlines()[-1])
        expected: dict[str, dict[str, float]] = {m: {} for m in names}
        with httpx.Client(timeout=120, headers={"X-API-Key": KEY}) as c:
            for m in names:
                for name in CHOSEN + [DROPPED]:
                    r = c.post(srv.url + "/v1/score", params={"model": m}, files=[(
                        "file", (name, (GOLDEN / "images" / name).read_bytes()))])
                    expected[m][name] = r.json()["results"][0]["score"]
    finally:
        srv.stop()

    assert shown["dataRange"] == "1,10" and "from 1 to 10" in shown["range"]
    ok = check_ranked(shown["results"], len(chosen))
    for r in ok:
        assert close(r["score"], expected[names[0]][r["filename"].removeprefix("dropped-")])
    assert shot.stat().st_size > 10_000
    switched = shown["switched"]
    assert switched["options"] == names
    if served == "one model":
        assert switched["disabled"] and shown["label"] == "Model"
        assert all(r["models"] == {} for r in shown["results"])  # the page as it always was
        assert shown["status"].startswith(f"{len(ok)} image(s) scored by {names[0]}, "
                                          "1 could not be scored")
        return
    assert not switched["disabled"] and shown["label"] == "Rank by"
    assert shown["status"] == (f"{len(ok)} image(s) scored by 2 models, ranked by "
                               f"{names[0]}, 1 could not be scored")
    for r in ok:  # every model's score on every card
        name = r["filename"].removeprefix("dropped-")
        assert list(r["models"]) == names
        assert all(close(r["models"][m], expected[m][name]) for m in names)
    assert shown["results"][-1]["models"] == {}  # not decoded: one error, for every model
    other = switched["other"]
    # The range line now describes the other model (a test checkpoint of unknown range).
    assert other["dataRange"] == "" and "score range unknown" in other["range"]
    assert f"ranked by {names[1]}" in other["status"]
    ok_other = check_ranked(other["results"], len(chosen))
    for r in ok_other:  # ranked by the other model's scores, the same ones as the API's
        assert close(r["score"], expected[names[1]][r["filename"].removeprefix("dropped-")])
    assert by_file(ok_other).keys() == by_file(ok).keys()
    assert [r["filename"] for r in switched["back"]["results"]] == [
        r["filename"] for r in shown["results"]]
