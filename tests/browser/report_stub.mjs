// Run a musiq report page's script under node with a minimal stand-in for the DOM (no
// browser needed): checks the embedded data parses and the script runs to the end.
// Usage: node report_stub.mjs REPORT.html [PICKS]
// PICKS (several models): JSON {"model": K, "x": K, "y": K} of model indices chosen in the
// selects after the page loaded. Prints one JSON object (ready flag, model line, histogram
// counts, cards of page 1 with each model's score, the selects' options, the scatter).
import { readFileSync } from "node:fs";
import vm from "node:vm";

const page = readFileSync(process.argv[2], "utf8");
// As the HTML tokenizer does for script data: the element ends at the first "</script".
const open = '<script type="application/json" id="data">';
const start = page.indexOf(open) + open.length;
const end = page.toLowerCase().indexOf("</script", start);
const dataText = page.slice(start, end);
const jsStart = page.indexOf("<script>", end) + "<script>".length;
const js = page.slice(jsStart, page.lastIndexOf("</script>"));

class El {
  constructor(tag) {
    Object.assign(this, { tagName: tag, children: [], attrs: {}, dataset: {}, textContent: "",
                          value: "", hidden: false, disabled: false, listeners: {} });
  }
  get firstChild() { return this.children[0] || null; }
  setAttribute(k, v) { this.attrs[k] = String(v); }
  append(...c) { this.children.push(...c); }
  replaceChildren(...c) { this.children = c; }
  addEventListener(type, f) { (this.listeners[type] ||= []).push(f); }
  querySelector() { return (this.inner ||= new El("tbody")); }
}
const ids = {};
const document = {
  getElementById: (id) => (ids[id] ||= new El(id)),
  createElement: (t) => new El(t),
  createElementNS: (ns, t) => new El(t),
  body: new El("body"),
};
document.getElementById("sort").value = "score-desc";
document.getElementById("data").textContent = dataText;
vm.runInNewContext(js, { document, window: { scrollTo() {} }, console });
const picks = JSON.parse(process.argv[3] || "{}");
for (const [key, id] of [["x", "x-model"], ["y", "y-model"], ["model", "model-select"]]) {
  if (picks[key] === undefined) continue;
  ids[id].value = String(picks[key]);
  for (const f of ids[id].listeners.change || []) f();
}
const grid = ids.grid.children;
const text = (e) => e.children.map((c) => c.textContent);
const models = (li) => {
  const box = li.children.find((c) => c.attrs && c.attrs.class === "models");
  return box ? box.children.map((m) => ({ model: m.attrs["data-model"], text: m.textContent,
    score: m.dataset.score === undefined ? null : Number(m.dataset.score) })) : null;
};
const scatter = ids.scatter ? ids.scatter : null;
console.log(JSON.stringify({
  ready: document.body.dataset.ready || null,
  model: ids.model.textContent,
  counts: ids.hist.dataset.counts,
  shown: ids.shown.textContent,
  cards: grid.map((li) => ({ name: li.attrs["data-name"], models: models(li),
                             score: li.dataset.score === undefined ? null : Number(li.dataset.score) })),
  failures: ids.failures.inner ? ids.failures.inner.children.length : 0,
  failureRows: ids.failures.inner ? ids.failures.inner.children.map(text) : [],
  stats: ids.stats.children.length ? Object.fromEntries(ids.stats.children[0].children
    .filter((c) => c.tagName === "dd").map((d) => [d.attrs["data-stat"], d.textContent])) : {},
  modelPick: ids["model-pick"] ? !ids["model-pick"].hidden : false,
  options: ids["model-select"] ? text(ids["model-select"]) : [],
  scatterShown: ids["scatter-box"] ? !ids["scatter-box"].hidden : false,
  scatter: scatter ? { ...scatter.dataset, circles: scatter.children.filter((c) => c.tagName === "circle").length,
                       labels: scatter.children.filter((c) => c.attrs.class === "axis-name").map((c) => c.textContent) } : null,
  scatterStats: ids["scatter-stats"] ? ids["scatter-stats"].textContent : "",
}));
