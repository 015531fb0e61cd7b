// musiq web page: choose or drop images, POST them to /v1/score, show them best first.
// One model served: its scores. Several: every file is scored by all of them in one request
// (?model=all), each card shows every model's score, and the list is ranked by the model
// chosen in the select.
"use strict";

const state = { models: [], limits: null, key: sessionStorage.getItem("musiq-key") || "",
                byModel: {}, rows: [] };
const $ = (id) => document.getElementById(id);

function headers() {
  return state.key ? { "Authorization": "Bearer " + state.key } : {};
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function currentModel() {
  return state.models.find((m) => m.name === $("model").value) || state.models[0];
}

// Several models served: uploads are scored by all of them, and the select ranks.
function several() {
  return state.models.length > 1;
}

function fmt(x, model) {
  const m = model || currentModel();
  const span = m && m.score_range ? m.score_range[1] - m.score_range[0] : 100;
  return x.toFixed(span <= 1 ? 4 : span <= 10 ? 3 : 2);
}

function describeRange() {
  const m = currentModel();
  if (!m) return;
  const r = m.score_range ? `scores from ${m.score_range[0]} to ${m.score_range[1]}` :
    "score range unknown";
  const what = { mos: "mean opinion score", distribution: "mean of a 1-10 rating distribution",
                 imagenet: "top-1 class probability" }[m.kind] || m.kind;
  $("range").textContent = `${what}, ${r}, higher is better`;
  $("range").dataset.range = m.score_range ? m.score_range.join(",") : "";
}

async function loadModels() {
  const resp = await fetch("/v1/models", { headers: headers() });
  if (resp.status === 401) {
    const body = await resp.json().catch(() => ({}));
    $("key-box").hidden = false;
    $("range").textContent = body.detail || "this server needs an API key";
    return;
  }
  if (!resp.ok) { setStatus(`could not load models (${resp.status})`, true); return; }
  const body = await resp.json();
  $("key-box").hidden = true;
  state.models = body.models;
  state.limits = body.limits;
  const select = $("model");
  select.replaceChildren(...body.models.map((m) => new Option(m.name, m.name)));
  select.value = body.default;
  select.disabled = body.models.length < 2;
  $("model-label").textContent = several() ? "Rank by" : "Model";
  describeRange();
  const l = body.limits;
  $("limits").textContent = `Up to ${l.max_files} files and ` +
    `${(l.max_upload_bytes / 1048576).toFixed(0)} MiB per upload; JPEG, PNG, WebP, TIFF, BMP, GIF.`;
}

function resultsOf(model) {
  const key = model ? model.name : "";
  if (!state.byModel[key]) state.byModel[key] = [];
  return state.byModel[key];
}

// What a card shows for the ranking model: the entry itself (one model), or the row's
// result of that model with the row's file name, thumbnail and every model's result.
function view(r, m) {
  if (!r.models) return r;
  const own = (m && r.models[m.name]) || { score: null, error: r.error || "not scored" };
  return { ...own, filename: r.filename, url: r.url, decoded: r.error === null, row: r };
}

function allScores(row) {
  const box = document.createElement("div");  // not a list: "#results li" is one card
  box.className = "models";
  for (const m of state.models) {
    const res = row.models[m.name];
    if (!res) continue;
    const line = document.createElement("div");
    line.className = m.name === currentModel().name ? "model-score current" : "model-score";
    line.dataset.model = m.name;
    const name = document.createElement("span");
    name.className = "model-name";
    name.textContent = m.name;
    name.title = m.name;
    const value = document.createElement("span");
    value.className = "model-value";
    if (res.score === null) {
      value.textContent = "\u2715";
      value.title = res.error || "";
    } else {
      line.dataset.score = String(res.score);
      value.textContent = fmt(res.score, m);
    }
    line.append(name, value);
    box.append(line);
  }
  return box;
}

function render() {
  const list = $("results");
  const m = currentModel();
  const shown = (several() ? state.rows : resultsOf(m)).map((r) => view(r, m));
  const ok = shown.filter((r) => r.score !== null).sort((a, b) => b.score - a.score);
  // Failed last; with several models, images another model scored before unreadable files.
  const bad = shown.filter((r) => r.score === null).sort((a, b) => !!b.decoded - !!a.decoded);
  const range = m && m.score_range;
  const items = [...ok, ...bad].map((r, i) => {
    const li = document.createElement("li");
    li.className = r.score === null ? "result failed" : "result";
    li.dataset.filename = r.filename;
    let img;
    if (r.score === null && !r.decoded) {
      img = document.createElement("div");
      img.className = "placeholder";
      img.textContent = "\u2715";
    } else {
      img = document.createElement("img");
      img.src = r.url;
      img.alt = r.filename;
    }
    const info = document.createElement("div");
    info.className = "info";
    const name = document.createElement("div");
    name.className = "name";
    name.textContent = r.filename;
    name.title = r.filename;
    const score = document.createElement("div");
    score.className = "score";
    if (r.score === null) {
      score.textContent = r.error;
    } else {
      li.dataset.score = String(r.score);
      const rank = document.createElement("span");
      rank.className = "rank";
      rank.textContent = `#${i + 1}`;
      score.append(rank, fmt(r.score));
    }
    info.append(name, score);
    const top1 = r.score !== null && r.top5 && r.top5[0];
    if (top1) {  // ImageNet: the score is this class's probability
      const label = document.createElement("div");
      label.className = "top1";
      label.textContent = top1.name || `class ${top1.class}`;
      label.title = (r.top5 || []).map((t) => `${t.name || t.class}: ` +
        `${(100 * t.probability).toFixed(1)}%`).join("\n");
      info.append(label);
    }
    if (r.score !== null && range) {
      const [lo, hi] = range;
      const bar = document.createElement("div");
      bar.className = "bar";
      const fill = document.createElement("span");
      const frac = Math.min(1, Math.max(0, (r.score - lo) / (hi - lo || 1)));
      fill.style.width = `${(frac * 100).toFixed(1)}%`;
      bar.append(fill);
      info.append(bar);
    }
    if (r.row && r.decoded) info.append(allScores(r.row));  // else: one error for all
    li.append(img, info);
    return li;
  });
  list.replaceChildren(...items);
  $("clear").hidden = shown.length === 0;
}

function chunks(files) {
  const l = state.limits || { max_files: 16, max_upload_bytes: 32 * 1048576 };
  const out = [];
  let cur = [];
  let size = 0;
  for (const f of files) {
    if (cur.length && (cur.length >= l.max_files || size + f.size + 1024 > l.max_upload_bytes)) {
      out.push(cur);
      cur = [];
      size = 0;
    }
    cur.push(f);
    size += f.size + 1024;
  }
  if (cur.length) out.push(cur);
  return out;
}

async function scoreFiles(fileList) {
  const files = Array.from(fileList);
  if (!files.length) return;
  const model = currentModel();
  const query = several() ? "?model=all" : model ? `?model=${encodeURIComponent(model.name)}` : "";
  let done = 0;
  for (const group of chunks(files)) {
    setStatus(`scoring ${files.length - done} image(s)…`);
    const form = new FormData();
    for (const f of group) form.append("file", f, f.name);
    let resp;
    try {
      resp = await fetch("/v1/score" + query, { method: "POST", body: form, headers: headers() });
    } catch (e) {
      setStatus(`upload failed: ${e.message}`, true);
      return;
    }
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      const wait = resp.headers.get("Retry-After");
      setStatus(`${resp.status}: ${body.detail || resp.statusText}` +
                (wait ? ` (retry in ${wait} s)` : ""), true);
      if (resp.status === 401) $("key-box").hidden = false;
      return;
    }
    // Several: every model's results; one: the model chosen when the upload started.
    const results = several() ? state.rows : resultsOf(model);
    body.results.forEach((r, i) => {
      results.push({ ...r, url: URL.createObjectURL(group[i]) });
    });
    done += group.length;
    render();
  }
  if (several()) { setStatus(rowsStatus()); return; }
  const all = resultsOf(model);
  const failed = all.filter((r) => r.score === null).length;
  setStatus(`${all.length - failed} image(s) scored by ` +
            `${model ? model.name : "the model"}` +
            (failed ? `, ${failed} could not be scored` : ""));
}

function rowsStatus() {
  const rows = state.rows;
  const failed = rows.filter((r) => r.error !== null).length;
  const partly = rows.filter((r) => r.error === null &&
    Object.values(r.models).some((res) => res.score === null)).length;
  return `${rows.length - failed} image(s) scored by ${state.models.length} models, ` +
    `ranked by ${currentModel().name}` +
    (failed ? `, ${failed} could not be scored` : "") +
    (partly ? `, ${partly} not scored by every model` : "");
}

function shownResults() {
  return several() ? state.rows : resultsOf(currentModel());
}

function setup() {
  const drop = $("drop");
  $("files").addEventListener("change", (e) => { scoreFiles(e.target.files); e.target.value = ""; });
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (e) => { e.preventDefault(); scoreFiles(e.dataTransfer.files); });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter") $("files").click(); });
  $("model").addEventListener("change", () => {
    // Several models: the same images, every model's scores, ranked by the model chosen.
    describeRange();
    render();
    setStatus(several() && state.rows.length ? rowsStatus() : "");
  });
  $("clear").addEventListener("click", () => {
    shownResults().forEach((r) => URL.revokeObjectURL(r.url));
    shownResults().length = 0;
    render();
    setStatus("");
  });
  $("key-save").addEventListener("click", () => {
    state.key = $("api-key").value;
    sessionStorage.setItem("musiq-key", state.key);
    loadModels();
  });
  loadModels();
}

document.addEventListener("DOMContentLoaded", setup);
