// musiq report page: stats, histogram, paged thumbnail grid with sorting and filters;
// with several models, the model to rank by and a scatter of two models' scores.
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
  // Several models (data.models): each row has one score per model; the page shows the
  // picked model's as the row's score (ranking, filters, stats, histogram) and every
  // model's on the card. Model names are only ever text (textContent, attribute values).
  const multi = Array.isArray(data.models);
  const at = (list, k) => (list ? orNull(list[k]) : null);
  const rows = data.rows.map((r, i) => ({
    index: i, path: r.path, name: r.path.slice(r.path.lastIndexOf("/") + 1) || r.path,
    score: orNull(r.score), error: orNull(r.error), std: orNull(r.std), dist: orNull(r.dist),
    thumb: orNull(r.thumb), curve: orNull(r.curve), scores: r.scores || null,
    errors: r.errors || null, stds: r.stds || null, dists: r.dists || null,
    curves: r.curves || null, rowError: orNull(r.error),
  }));
  // Why a row failed: its own error (decoding), else each failing model's.
  const failure = (r) => r.rowError || (r.errors || []).map((e, k) => (e ? `${data.models[k]}: ${e}` : null)).filter((e) => e).join("; ") || null;
  let picked = 0, scored = rows, lo = 0, hi = 1;
  function pick(k) {
    picked = k;
    if (multi) {
      for (const r of rows) {
        r.score = at(r.scores, k); r.std = at(r.stds, k); r.dist = at(r.dists, k);
        r.curve = at(r.curves, k); r.error = r.rowError || at(r.errors, k);
      }
      data.model = data.models[k]; data.range = data.ranges[k]; data.stats = data.model_stats[k];
    }
    scored = rows.filter((r) => r.score !== null);
    drawHeader();
    drawHist();
  }

  // Header and stats
  $("title").textContent = data.title;
  function drawHeader() {
    const what = multi ? `models ${data.models.join(", ")}; ranked by ${data.model}` :
      (data.model ? `model ${data.model}` : "model not recorded");
    $("model").textContent = what +
      (data.range ? `, scores ${data.range[0]} to ${data.range[1]}` : ", range of the data");
    $("model").dataset.range = data.range ? data.range.join(",") : "";
    const st = data.stats;
    const stats = [["images", st.count], ["scored", st.scored], ["failed", st.failed],
                   ["mean", fmt(st.mean)], ["min", fmt(st.min)], ["max", fmt(st.max)]];
    for (const [q, v] of Object.entries(st.quantiles || {})) stats.push([`${q} %`, fmt(v)]);
    const dl = el("dl");
    for (const [k, v] of stats) { dl.append(el("dt", {}, k), el("dd", { "data-stat": k }, String(v))); }
    $("stats").replaceChildren(dl);
  }
  // A loop, not Math.min(...scores): spreading 100k+ arguments overflows the call stack.
  function extent(values) {
    let a = Infinity, b = -Infinity;
    for (const v of values) { if (v !== null) { if (v < a) a = v; if (v > b) b = v; } }
    return a <= b ? [a, b] : [0, 1];
  }

  // Histogram over the model's range (20 bins)
  function drawHist() {
    const hist = $("hist");
    hist.replaceChildren();
    const W = 640, H = 200, L = 40, B = 30, BINS = 20;
    const range = data.range || extent(scored.map((r) => r.score));
    lo = range[0]; hi = range[1] > range[0] ? range[1] : range[0] + 1;
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
  }
  pick(0);

  // Failures (several models: a row where any model failed, with each one's reason)
  const failed = rows.filter((r) => (multi ? failure(r) !== null : r.score === null));
  $("failed-count").textContent = `(${failed.length})`;
  const tbody = $("failures").querySelector("tbody");
  const FAILURES_SHOWN = 1000; // the rest stay in the grid (sort worst first)
  for (const r of failed.slice(0, FAILURES_SHOWN)) {
    const tr = el("tr");
    tr.append(el("td", {}, r.path), el("td", {}, (multi ? failure(r) : r.error) || "no score"));
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
    if (multi) li.append(modelScores(r));
    li.append(el("div", { class: "name", title: r.path }, r.name));
    if (r.error) li.append(el("div", { class: "name" }, r.error));
    return li;
  }
  // Every model's score on a card; the picked one marked.
  function modelScores(r) {
    const box = el("div", { class: "models" });
    data.models.forEach((m, k) => {
      const v = at(r.scores, k);
      const line = el("div", { class: k === picked ? "m picked" : "m", "data-model": m },
        `${m} ${v !== null ? fmt(v) : "failed"}`);
      if (v !== null) line.dataset.score = v;
      box.append(line);
    });
    return box;
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

  // Several models: the model to rank by, and a scatter of two models' scores.
  function options(select, value) {
    select.replaceChildren(...data.models.map((m, k) => el("option", { value: String(k) }, m)));
    select.value = String(value);
  }
  function setupModels() {
    $("model-pick").hidden = false;
    options($("model-select"), 0);
    const repick = () => { pick(Number($("model-select").value) || 0); reset(); };
    $("model-select").addEventListener("change", repick);
    $("model-select").addEventListener("input", repick);
    if (data.models.length < 2) return;
    $("scatter-box").hidden = false;
    options($("x-model"), 0);
    options($("y-model"), 1);
    for (const id of ["x-model", "y-model"]) {
      $(id).addEventListener("change", drawScatter);
      $(id).addEventListener("input", drawScatter);
    }
    drawScatter();
  }
  // Ranks with ties averaged (for Spearman's correlation).
  function ranks(v) {
    const order = v.map((_, i) => i).sort((a, b) => v[a] - v[b]);
    const out = new Array(v.length);
    for (let i = 0; i < order.length;) {
      let j = i;
      while (j + 1 < order.length && v[order[j + 1]] === v[order[i]]) j++;
      for (let t = i; t <= j; t++) out[order[t]] = (i + j) / 2;
      i = j + 1;
    }
    return out;
  }
  function pearson(a, b) {
    const n = a.length, ma = a.reduce((s, v) => s + v, 0) / n, mb = b.reduce((s, v) => s + v, 0) / n;
    let sab = 0, saa = 0, sbb = 0;
    for (let i = 0; i < n; i++) { sab += (a[i] - ma) * (b[i] - mb); saa += (a[i] - ma) ** 2; sbb += (b[i] - mb) ** 2; }
    return saa > 0 && sbb > 0 ? sab / Math.sqrt(saa * sbb) : null;
  }
  const SCATTER_POINTS = 5000; // more pairs: an even subset is drawn (the stats use all)
  function drawScatter() {
    const xi = Number($("x-model").value) || 0, yi = Number($("y-model").value) || 0;
    const sc = $("scatter");
    sc.replaceChildren();
    const pairs = rows.filter((r) => at(r.scores, xi) !== null && at(r.scores, yi) !== null);
    const xs = pairs.map((r) => r.scores[xi]), ys = pairs.map((r) => r.scores[yi]);
    const W = 480, H = 360, L = 50, B = 40, T = 10, R = 10;
    const span = (k, v) => { const g = data.ranges[k] || extent(v); return [g[0], g[1] > g[0] ? g[1] : g[0] + 1]; };
    const [x0, x1] = span(xi, xs), [y0, y1] = span(yi, ys);
    const px = (v) => L + (W - L - R) * (v - x0) / (x1 - x0), py = (v) => H - B - (H - B - T) * (v - y0) / (y1 - y0);
    sc.append(svg("rect", { class: "frame", x: L, y: T, width: W - L - R, height: H - B - T }));
    for (let t = 0; t <= 4; t++) {
      const tx = svg("text", { x: px(x0 + t * (x1 - x0) / 4), y: H - B + 14, "text-anchor": "middle" });
      tx.textContent = fmt(x0 + t * (x1 - x0) / 4);
      const ty = svg("text", { x: L - 4, y: py(y0 + t * (y1 - y0) / 4) + 4, "text-anchor": "end" });
      ty.textContent = fmt(y0 + t * (y1 - y0) / 4);
      sc.append(tx, ty);
    }
    const xl = svg("text", { class: "axis-name", x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle" });
    xl.textContent = data.models[xi];
    const yl = svg("text", { class: "axis-name", x: 12, y: (T + H - B) / 2, "text-anchor": "middle", transform: `rotate(-90 12 ${(T + H - B) / 2})` });
    yl.textContent = data.models[yi];
    sc.append(xl, yl);
    const step = Math.max(1, Math.ceil(pairs.length / SCATTER_POINTS));
    let drawn = 0;
    for (let i = 0; i < pairs.length; i += step) {
      const r = pairs[i];
      const c = svg("circle", { class: "pt", cx: px(xs[i]).toFixed(1), cy: py(ys[i]).toFixed(1), r: 3 });
      c.append(svg("title", {}));
      c.firstChild.textContent = `${r.name}: ${data.models[xi]} ${fmt(xs[i])}, ${data.models[yi]} ${fmt(ys[i])}`;
      c.addEventListener("click", () => { $("name-filter").value = r.path; reset(); });
      sc.append(c);
      drawn += 1;
    }
    const plcc = pairs.length > 1 ? pearson(xs, ys) : null;
    const srcc = pairs.length > 1 ? pearson(ranks(xs), ranks(ys)) : null;
    Object.assign(sc.dataset, { x: data.models[xi], y: data.models[yi], pairs: String(pairs.length),
                                points: String(drawn), plcc: String(plcc), srcc: String(srcc) });
    $("scatter-stats").textContent = `${pairs.length} image(s) scored by both` +
      (drawn < pairs.length ? ` (${drawn} drawn)` : "") + `, SRCC ${fmt(srcc)}, PLCC ${fmt(plcc)}`;
  }

  for (const id of ["sort", "name-filter", "min-score", "max-score"]) {
    $(id).addEventListener("input", reset);
    $(id).addEventListener("change", reset);
  }
  $("prev").addEventListener("click", () => { page -= 1; update(); window.scrollTo(0, 0); });
  $("next").addEventListener("click", () => { page += 1; update(); window.scrollTo(0, 0); });
  if (multi) setupModels();
  update();
})();
