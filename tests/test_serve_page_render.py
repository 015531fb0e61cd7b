"""The page's ``render()`` (``serve/static/app.js``) run by node against a minimal DOM, fed a
real ImageNet entry as the server makes it: the top-1 class name is shown with its
probability. Runs wherever ``node`` is; the browser test covers the rest of the page."""
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
(0, eval)(require("fs").readFileSync(input.app, "utf8") + `
  state.models = [{ name: "imagenet", kind: "imagenet", score_range: [0, 1] }];
  document.getElementById("model").value = "imagenet";
  state.byModel.imagenet = globalThis.ENTRIES;
  render();`.replace("globalThis.ENTRIES", JSON.stringify(input.entries)));
const flat = (e) => typeof e === "string" ? [{ cls: "", text: e }] :
  [{ cls: e.className, text: e.textContent, title: e.title }, ...e.children.flatMap(flat)];
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
