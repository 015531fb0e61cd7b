"""The page's ``render()`` (``serve/static/app.js``) run by node against a minimal DOM, fed a
real ImageNet entry as the server makes it: the top-1 class name is shown with its
probability; and several-model rows: every model's score on each card, ranked by the model
chosen. Runs wherever ``node`` is; the browser test covers the rest of the page."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from conftest import ROOT

APP_JS = ROOT / "src" / "musiq" / "serve" / "static" / "app.js"

HARNESS = r"""
class El {
  constructor(tag) { this.tagName = tag; this.children = []; this.dataset = {}; this.style = {};
    this.textContent = ""; this.title = ""; this.hidden = false; this.className = "";
    this.classList = { toggle() {}, add() {}, remove() {} }; }
  append(...c) { this.children.push(...c); }
  replaceChildren(...c) { this.children = c; }
  addEventListener() {}
}
const els = {};
globalThis.document = { getElementById: (id) => (els[id] ||= new El("div")),
  createElement: (t) => new El(t), addEventListener() {} };
globalThis.sessionStorage = { getItem: () => null, setItem() {} };
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
globalThis.INPUT = input;
(0, eval)(require("fs").readFileSync(input.app, "utf8") + `
  state.models = INPUT.models || [{ name: "imagenet", kind: "imagenet", score_range: [0, 1] }];
  document.getElementById("model").value = INPUT.rank || "imagenet";
  if (INPUT.rows) state.rows = INPUT.rows; else state.byModel.imagenet = INPUT.entries;
  render();`);
const flat = (e) => typeof e === "string" ? [{ cls: "", text: e }] :
  [{ cls: e.className, text: e.textContent, title: e.title, tag: e.tagName, data: e.dataset },
   ...e.children.flatMap(flat)];
console.log(JSON.stringify(els.results.children.map(flat)));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_imagenet_results_show_the_top1_class_name():
    from musiq.network.outputs import interpret
    logits = np.full(1000, -3.0, np.float32)
    logits[281], logits[285] = 6.0, 4.0  # ILSVRC-2012: 281 tabby cat, 285 Egyptian cat
    result = interpret(logits, "imagenet")
    entry = {"filename": "cat.jpg", "score": result["score"], "error": None,
             "top5": result["top5"]}
    out = subprocess.run(["node", "-e", HARNESS], input=json.dumps(
        {"app": str(APP_JS), "entries": [entry]}), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    (card,) = json.loads(out.stdout)
    top1 = [part for part in card if part["cls"] == "top1"]
    assert len(top1) == 1, card
    assert top1[0]["text"] == result["top5"][0]["name"] and "tabby" in top1[0]["text"]
    assert "Egyptian cat" in top1[0]["title"]
    assert any(p["text"] == f"{result['score']:.4f}" for p in card), card  # the probability


def render(**data) -> list[list[dict]]:
    out = subprocess.run(["node", "-e", HARNESS], input=json.dumps({"app": str(APP_JS), **data}),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def row(name: str, a, b, error=None, b_error=None) -> dict:
    """A several-model result as /v1/score?model=all gives it (models a: MOS, b: AVA)."""
    return {"filename": name, "score": a, "error": error, "models": {
        "a": {"score": a, "error": error if a is None else None},
        "b": {"score": b, "error": b_error or (error if b is None else None)}}}


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.parametrize("rank,order", [("a", ["x.jpg", "y.jpg", "z.jpg", "bad.txt"]),
                                        ("b", ["y.jpg", "z.jpg", "x.jpg", "bad.txt"])])
def test_several_models_every_score_shown_ranked_by_the_chosen_one(rank, order):
    models = [{"name": "a", "kind": "mos", "score_range": [0, 100]},
              {"name": "b", "kind": "distribution", "score_range": [1, 10]}]
    rows = [row("x.jpg", 70.0, 3.0), row("bad.txt", None, None, error="not an image"),
            row("y.jpg", 50.0, 8.0), row("z.jpg", None, 5.0)]
    rows[3]["models"]["a"]["error"] = "too many tokens"
    cards = render(models=models, rows=rows, rank=rank)
    assert [c[0]["data"]["filename"] for c in cards] == order
    by_name = {c[0]["data"]["filename"]: c for c in cards}
    for r in rows:
        card = by_name[r["filename"]]
        shown = {p["data"]["model"]: p for p in card if p["cls"].startswith("model-score")}
        if r["error"] is not None:  # not decoded: its one error, no list of failed models
            assert shown == {} and any(p["text"] == r["error"] for p in card)
            assert not any(p["tag"] == "img" for p in card)
            continue
        assert list(shown) == ["a", "b"]  # every model, in served order
        assert [m for m, p in shown.items() if "current" in p["cls"]] == [rank]
        for m in "ab":
            score = r["models"][m]["score"]
            got = shown[m]["data"].get("score")
            assert (None if got is None else float(got)) == score
        failed = r["models"][rank]["score"] is None
        assert card[0]["cls"] == ("result failed" if failed else "result")
        # A decoded image keeps its thumbnail when the ranking model failed on it.
        assert any(p["tag"] == "img" for p in card)
    assert any(p["text"] == "70.00" for p in by_name["x.jpg"])  # MOS: 2 decimals
    assert any(p["text"] == "3.000" for p in by_name["x.jpg"])  # 1-10: 3 decimals
    z = by_name["z.jpg"]
    if rank == "a":  # z's error for the ranking model is its card's message
        assert any(p["cls"] == "score" and p["text"] == "too many tokens" for p in z)
