// Run a musiq report page's script under node with a minimal stand-in for the DOM (no
// browser needed): checks the embedded data parses and the script runs to the end.
// Usage: node report_stub.mjs REPORT.html
// Prints one JSON object (ready flag, model line, histogram counts, cards of page 1).
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
const grid = ids.grid.children;
console.log(JSON.stringify({
  ready: document.body.dataset.ready || null,
  model: ids.model.textContent,
  counts: ids.hist.dataset.counts,
  shown: ids.shown.textContent,
  cards: grid.map((li) => ({ name: li.attrs["data-name"],
                             score: li.dataset.score === undefined ? null : Number(li.dataset.score) })),
  failures: ids.failures.inner ? ids.failures.inner.children.length : 0,
}));
