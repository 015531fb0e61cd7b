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


def test_page_scores_sorts_and_shows_range(browser_ready, ckpt_10class, ckpt_1class,
                                           tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"this is not a picture")
    chosen = [GOLDEN / "images" / n for n in CHOSEN] + [bad]
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "serve-page.png"
    shot.unlink(missing_ok=True)
    # Two files per request, so the page has to split the five it is given.
    # A second model: switching to it and back must not lose the first one's results.
    srv = ServerProcess("--model", str(ckpt_10class), "--model", str(ckpt_1class),
                        "--max-files", "2", env={"MUSIQ_API_KEY": KEY})
    try:
        run = subprocess.run(
            ["node", str(BROWSER_DIR / "page_test.mjs"), srv.url, KEY, str(shot),
             *map(str, chosen), "--", str(GOLDEN / "images" / DROPPED)],
            capture_output=True, text=True, timeout=300, cwd=BROWSER_DIR)
        assert run.returncode == 0, run.stdout + run.stderr
        shown = json.loads(run.stdout.strip().splitlines()[-1])
        expected = {}
        with httpx.Client(timeout=120, headers={"X-API-Key": KEY}) as c:
            for name in CHOSEN + [DROPPED]:
                r = c.post(srv.url + "/v1/score", files=[(
                    "file", (name, (GOLDEN / "images" / name).read_bytes()))])
                expected[name] = r.json()["results"][0]["score"]
    finally:
        srv.stop()

    assert shown["switched"]["options"] == ["ckpt_10class.npz", "ckpt_1class.npz"]
    assert shown["switched"]["other"] == 0
    assert shown["switched"]["back"] == len(chosen) + 1
    assert shown["dataRange"] == "1,10" and "from 1 to 10" in shown["range"]
    results = shown["results"]
    assert len(results) == len(chosen) + 1
    ok = [r for r in results if not r["failed"]]
    assert [r["filename"] for r in results[len(ok):]] == ["broken.jpg"]  # failures last
    assert "not a supported format" in results[-1]["text"]
    scores = [r["score"] for r in ok]
    assert scores == sorted(scores, reverse=True)  # best first
    assert {r["filename"] for r in ok} == set(CHOSEN) | {"dropped-" + DROPPED}
    for r in ok:
        name = r["filename"].removeprefix("dropped-")
        assert abs(r["score"] - expected[name]) <= 1e-5 * expected[name]
        assert r["thumbnail"]
    assert shown["status"].startswith(f"{len(ok)} image(s) scored by ckpt_10class.npz, "
                                      "1 could not be scored")
    assert not results[-1]["thumbnail"]
    assert shot.stat().st_size > 10_000
