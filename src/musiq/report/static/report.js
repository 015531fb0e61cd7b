// musiq report page: stats, histogram, paged thumbnail grid with sorting and filters.
// Everything comes from the JSON in #data; no network.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("data").textContent);
  const PAGE = 100; // cards per page: a 10,000-row report builds 100 cards at a time
  const $ = (id) => document.getElementById(id);
  const fmt = (v) => (v === null || v === undefined ? "-" : Number(v).toPrecision(4));
  const el = (tag, attrs, text) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const SVG = "http://www.w3.org/2000/svg";
  const svg = (tag, attrs) => {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    return e;
  };
  // Rows come compact (null fields left out); the card's name is the path's last part.
  const orNull = (v) => (v === undefined ? null : v);
  const rows = data.rows.map((r, i) => ({
    index: i, path: r.path, name: r.path.slice(r.path.lastIndexOf("/") + 1) || r.path,
    score: orNull(r.score), error: orNull(r.error), std: orNull(r.std), dist: orNull(r.dist),
    thumb: orNull(r.thumb),
  }));
  const scored = rows.filter((r) => r.score !== null);
  const failed = rows.filter((r) => r.score === null);

  // Header and stats
  $("title").textContent = data.title;
  // A loop, not Math.min(...scores): spreading 100k+ arguments overflows the call stack.
  let smin = Infinity, smax = -Infinity;
  for (const r of scored) { if (r.score < smin) smin = r.score; if (r.score > smax) smax = r.score; }
  const range = data.range || (scored.length ? [smin, smax] : [0, 1]);
  $("model").textContent = (data.model ? `model ${data.model}` : "model not recorded") +
    (data.range ? `, scores ${data.range[0]} to ${data.range[1]}` : ", range of the data");
  $("model").dataset.range = data.range ? data.range.join(",") : "";
  const st = data.stats;
  const stats = [["images", st.count], ["scored", st.scored], ["failed", st.failed],
                 ["mean", fmt(st.mean)], ["min", fmt(st.min)], ["max", fmt(st.max)]];
  for (const [q, v] of Object.entries(st.quantiles || {})) stats.push([`${q} %`, fmt(v)]);
  const dl = el("dl");
  for (const [k, v] of stats) { dl.append(el("dt", {}, k), el("dd", { "data-stat": k }, String(v))); }
  $("stats").append(dl);

  // Histogram over the model's range (20 bins)
  const hist = $("hist");
  const W = 640, H = 200, L = 40, B = 30, BINS = 20;
  const lo = range[0], hi = range[1] > range[0] ? range[1] : range[0] + 1;
  const counts = new Array(BINS).fill(0);
  for (const r of scored) {
    const b = Math.min(BINS - 1, Math.max(0, Math.floor((r.score - lo) / (hi - lo) * BINS)));
    counts[b] += 1;
  }
  const top = Math.max(1, ...counts);
  const bw = (W - L - 10) / BINS;
  counts.forEach((c, i) => {
    const h = (H - B - 10) * c / top;
    const rect = svg("rect", { class: "bar", x: L + i * bw + 1, y: H - B - h, width: bw - 2, height: h });
    rect.append(svg("title", {}));
    rect.firstChild.textContent = `${c} image(s) in [${fmt(lo + i * (hi - lo) / BINS)}, ${fmt(lo + (i + 1) * (hi - lo) / BINS)})`;
    hist.append(rect);
  });
  hist.append(svg("line", { class: "axis", x1: L, y1: H - B, x2: W - 10, y2: H - B }));
  for (let t = 0; t <= 4; t++) {
    const x = L + t * (W - L - 10) / 4;
    const label = svg("text", { x: x, y: H - B + 16, "text-anchor": t === 0 ? "start" : t === 4 ? "end" : "middle" });
    label.textContent = fmt(lo + t * (hi - lo) / 4);
    hist.append(label);
  }
  const ymax = svg("text", { x: L - 4, y: 16, "text-anchor": "end" });
  ymax.textContent = String(top);
  hist.append(ymax);
  hist.dataset.counts = counts.join(",");

  // Failures
  $("failed-count").textContent = `(${failed.length})`;
  const tbody = $("failures").querySelector("tbody");
  const FAILURES_SHOWN = 1000; // the rest stay in the grid (sort worst first)
  for (const r of failed.slice(0, FAILURES_SHOWN)) {
    const tr = el("tr");
    tr.append(el("td", {}, r.path), el("td", {}, r.error || "no score"));
    tbody.append(tr);
  }
  if (failed.length > FAILURES_SHOWN) {
    const tr = el("tr");
    tr.append(el("td", { colspan: 2 }, `... and ${failed.length - FAILURES_SHOWN} more`));
    tbody.append(tr);
  }
  if (!failed.length) $("failures-box").hidden = true;
  $("provenance").textContent = JSON.stringify(data.provenance, null, 2);

  // Grid: filter, sort, page
  let page = 0, view = [];
  function distSvg(dist) {
    const s = svg("svg", { class: "dist", viewBox: "0 0 100 28", preserveAspectRatio: "none" });
    const m = Math.max(...dist, 1e-9);
    dist.forEach((p, i) => s.append(svg("rect", { x: i * 10 + 1, y: 28 - 26 * p / m, width: 8, height: 26 * p / m })));
    return s;
  }
  // A video's quality over time: its frame scores against time, on the model's range.
  function curveSvg(curve) {
    const s = svg("svg", { class: "curve", viewBox: "0 0 100 28", preserveAspectRatio: "none" });
    const t0 = curve[0][0], t1 = Math.max(curve[curve.length - 1][0], t0 + 1e-9);
    const pts = curve.map(([t, v]) => `${(100 * (t - t0) / (t1 - t0)).toFixed(2)},${(27 - 26 * Math.min(1, Math.max(0, (v - lo) / (hi - lo)))).toFixed(2)}`);
    s.append(svg("polyline", { points: pts.join(" "), fill: "none", stroke: "currentColor", "stroke-width": 1.5, "vector-effect": "non-scaling-stroke" }));
    s.dataset.frames = String(curve.length);
    return s;
  }
  function card(r) {
    const li = el("li", { "data-name": r.name, "data-index": r.index });
    if (r.score !== null) li.dataset.score = r.score; else li.className = "failed";
    const pic = el("div", { class: "pic" });
    if (r.thumb) pic.append(el("img", { src: r.thumb, alt: r.name, loading: "lazy" }));
    li.append(pic, el("div", { class: "score" }, r.score !== null ? fmt(r.score) : "failed"));
    if (r.curve) { li.append(curveSvg(r.curve)); li.append(el("div", { class: "name" }, `${r.curve.length} frames, ${fmt(r.curve[r.curve.length - 1][0])} s`)); }
    if (r.dist) { li.append(distSvg(r.dist)); li.append(el("div", { class: "name" }, `std ${fmt(r.std)}`)); }
    li.append(el("div", { class: "name", title: r.path }, r.name));
    if (r.error) li.append(el("div", { class: "name" }, r.error));
    return li;
  }
  function num(id) { const v = $(id).value; return v === "" ? null : Number(v); }
  function update() {
    const needle = $("name-filter").value.toLowerCase();
    const min = num("min-score"), max = num("max-score");
    view = rows.filter((r) => (!needle || r.path.toLowerCase().includes(needle)) &&
      (min === null || (r.score !== null && r.score >= min)) &&
      (max === null || (r.score !== null && r.score <= max)));
    const how = $("sort").value;
    const sc = (r, worst) => (r.score === null ? worst : r.score);
    if (how === "score-desc") view.sort((a, b) => sc(b, -Infinity) - sc(a, -Infinity) || a.index - b.index);
    else if (how === "score-asc") view.sort((a, b) => sc(a, Infinity) - sc(b, Infinity) || a.index - b.index);
    else view.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.index - b.index));
    const pages = Math.max(1, Math.ceil(view.length / PAGE));
    page = Math.min(page, pages - 1);
    const grid = $("grid");
    grid.replaceChildren(...view.slice(page * PAGE, (page + 1) * PAGE).map(card));
    $("shown").textContent = `${view.length} of ${rows.length} shown`;
    $("page").textContent = `page ${page + 1} of ${pages}`;
    $("prev").disabled = page === 0;
    $("next").disabled = page >= pages - 1;
    document.body.dataset.ready = "1";
  }
  const reset = () => { page = 0; update(); };
  for (const id of ["sort", "name-filter", "min-score", "max-score"]) {
    $(id).addEventListener("input", reset);
    $(id).addEventListener("change", reset);
  }
  $("prev").addEventListener("click", () => { page -= 1; update(); window.scrollTo(0, 0); });
  $("next").addEventListener("click", () => { page += 1; update(); window.scrollTo(0, 0); });
  update();
})();
