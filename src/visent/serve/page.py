"""The web page of ``visent serve`` (``GET /``): one self-contained HTML document.

Styles and script are inline and nothing is loaded from elsewhere (visent often runs on machines without
internet access): the page calls only ``health``, ``predict`` and ``explain`` on the server that sent it.
"""

PAGE_HTML = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>visent · image sentiment</title>
<link rel="icon" href="data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'%3E%3Ccircle cx='16' cy='16' r='14' fill='%23334155'/%3E%3Cpath d='M16 2a14 14 0 0 1 0 28z' fill='%232f9e6e'/%3E%3C/svg%3E">
<style>
:root {
  --bg: #f6f7f9; --panel: #ffffff; --ink: #1f2430; --muted: #667085; --line: #e3e6eb; --accent: #2f5bd3;
  --negative: #d14343; --neutral: #8a94a6; --positive: #23945f;
  --radius: 10px; --shadow: 0 1px 2px rgba(16, 24, 40, .06), 0 1px 3px rgba(16, 24, 40, .08);
}
* { box-sizing: border-box; }
[hidden] { display: none !important; }
html, body { margin: 0; }
body {
  background: var(--bg); color: var(--ink);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  -webkit-font-smoothing: antialiased;
}
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
.topbar {
  display: flex; align-items: center; justify-content: space-between; gap: 16px;
  padding: 0 24px; height: 52px; background: #1c2230; color: #e8ebf1;
}
.brand { display: flex; align-items: center; gap: 10px; font-weight: 650; font-size: 17px; letter-spacing: .2px; }
.brand svg { width: 22px; height: 22px; }
.brand .sub { font-weight: 400; color: #98a2b3; font-size: 13px; }
.topbar .meta { font-size: 13px; color: #c0c6d2; display: flex; gap: 14px; align-items: center; }
.topbar .meta a { color: #c9d6ff; }
.model-chip {
  display: inline-flex; align-items: center; gap: 6px; padding: 3px 10px; border-radius: 999px;
  background: rgba(255, 255, 255, .08); border: 1px solid rgba(255, 255, 255, .12);
}
.dot { width: 7px; height: 7px; border-radius: 50%; background: #98a2b3; }
.dot.ok { background: #3ccf8e; }
.dot.down { background: #f26b6b; }
main { max-width: 1080px; margin: 0 auto; padding: 28px 24px 48px; }
.intro h1 { font-size: 22px; margin: 0 0 4px; font-weight: 650; }
.intro p { margin: 0 0 18px; color: var(--muted); }
.drop {
  display: flex; flex-direction: column; align-items: center; justify-content: center; gap: 6px;
  padding: 30px 20px; border: 2px dashed #c5cbd6; border-radius: var(--radius); background: var(--panel);
  text-align: center; cursor: pointer; transition: border-color .15s, background .15s;
}
.drop:hover, .drop:focus-visible { border-color: var(--accent); outline: none; }
.drop.over { border-color: var(--accent); background: #eef3ff; }
.drop svg { width: 34px; height: 34px; color: #98a2b3; }
.drop strong { font-size: 16px; font-weight: 600; }
.drop .choose { color: var(--accent); font-weight: 600; }
.drop small { color: var(--muted); font-size: 12.5px; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
.toolbar { display: flex; align-items: center; justify-content: space-between; margin: 22px 0 10px; color: var(--muted); font-size: 13.5px; }
.toolbar[hidden] { display: none; }
button {
  font: inherit; font-size: 13px; color: var(--ink); background: var(--panel); border: 1px solid var(--line);
  border-radius: 7px; padding: 5px 11px; cursor: pointer;
}
button:hover { border-color: #b9c0cc; }
.results { display: grid; gap: 14px; }
.card {
  display: grid; grid-template-columns: auto 1fr; gap: 20px; padding: 16px; background: var(--panel);
  border: 1px solid var(--line); border-radius: var(--radius); box-shadow: var(--shadow);
}
.figures { display: flex; gap: 12px; }
figure { margin: 0; }
figcaption { font-size: 12px; color: var(--muted); margin-top: 5px; text-align: center; }
.box {
  width: 210px; height: 210px; border-radius: 8px; background: #eef0f3; overflow: hidden;
  display: flex; align-items: center; justify-content: center; position: relative;
}
.box img { max-width: 100%; max-height: 100%; display: block; }
.box .wait { font-size: 12px; color: var(--muted); padding: 10px; text-align: center; }
.card.wide { grid-template-columns: 1fr; }
.card.wide .figures { flex-wrap: wrap; }
.card.wide .thumb-fig { display: none; }
.card.wide .map-fig { flex: 1 1 100%; }
.card.wide .map-fig .box { width: 100%; height: auto; min-height: 210px; background: #fff; }
.info { min-width: 0; display: flex; flex-direction: column; gap: 10px; }
.title-row { display: flex; align-items: baseline; gap: 10px; justify-content: space-between; }
.name { font-size: 15px; font-weight: 600; margin: 0; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.details { font-size: 12.5px; color: var(--muted); }
.badge {
  flex: none; font-size: 12.5px; font-weight: 600; padding: 2px 10px; border-radius: 999px; color: #fff;
  background: var(--neutral); text-transform: capitalize;
}
.badge.negative { background: var(--negative); }
.badge.positive { background: var(--positive); }
.badge.pending { background: #e4e7ec; color: var(--muted); text-transform: none; }
.badge.error { background: #fde8e8; color: #b42318; text-transform: none; }
.probs { list-style: none; margin: 2px 0 0; padding: 0; display: grid; gap: 8px; }
.prob { display: grid; grid-template-columns: 74px 1fr 52px; align-items: center; gap: 10px; font-size: 13.5px; }
.prob .cls { text-transform: capitalize; color: #344054; }
.track { height: 10px; border-radius: 5px; background: #eef0f3; overflow: hidden; }
.fill { display: block; height: 100%; width: 0; border-radius: 5px; transition: width .35s ease; }
.prob.negative .fill { background: var(--negative); }
.prob.neutral .fill { background: var(--neutral); }
.prob.positive .fill { background: var(--positive); }
.prob-value { font-variant-numeric: tabular-nums; text-align: right; color: #344054; }
.prob.top .cls, .prob.top .prob-value { font-weight: 650; color: var(--ink); }
.targets { display: flex; gap: 6px; flex-wrap: wrap; align-items: center; font-size: 12.5px; color: var(--muted); }
.targets button { padding: 3px 9px; font-size: 12.5px; }
.targets button[aria-pressed="true"] { background: #1c2230; border-color: #1c2230; color: #fff; }
.targets button:disabled { opacity: .5; cursor: default; }
.error-text { margin: 0; color: #b42318; font-size: 13.5px; background: #fef3f2; border: 1px solid #fecdca; border-radius: 7px; padding: 8px 10px; }
.error-text[hidden] { display: none; }
.empty { text-align: center; color: var(--muted); font-size: 13.5px; margin-top: 26px; }
footer { max-width: 1080px; margin: 0 auto; padding: 0 24px 28px; color: #98a2b3; font-size: 12.5px; }
footer code { font-size: 12px; }
@media (max-width: 760px) {
  .card { grid-template-columns: 1fr; }
  .box { width: 44vw; height: 44vw; }
}
</style>
</head>
<body>
<header class="topbar">
  <div class="brand">
    <svg viewBox="0 0 32 32" aria-hidden="true"><circle cx="16" cy="16" r="14" fill="#475467"/><path d="M16 2a14 14 0 0 1 0 28z" fill="#3ccf8e"/></svg>
    visent <span class="sub">image sentiment</span>
  </div>
  <div class="meta">
    <span class="model-chip" title="the model this server runs"><span class="dot" id="health-dot"></span>model <strong id="model-name">…</strong></span>
    <a href="docs">API docs</a>
  </div>
</header>
<main>
  <section class="intro">
    <h1>How does this image feel?</h1>
    <p>Drop photos to see the sentiment the model predicts — negative, neutral or positive — and where in the image it sees it.</p>
  </section>
  <label id="drop-zone" class="drop" for="file-input" tabindex="0">
    <svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="1.6" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true"><rect x="3" y="4" width="18" height="16" rx="2"/><circle cx="8.5" cy="9.5" r="1.6"/><path d="M21 16l-5.2-5.2a1 1 0 0 0-1.4 0L6 19"/></svg>
    <strong>Drop images here</strong>
    <span>or <span class="choose">choose files</span> · paste works too</span>
    <small id="limits">JPEG, PNG, GIF, WEBP or BMP</small>
    <input id="file-input" class="visually-hidden" type="file" accept="image/*" multiple>
  </label>
  <div class="toolbar" id="toolbar" hidden>
    <span id="summary"></span>
    <button type="button" id="clear">Clear results</button>
  </div>
  <section id="results" class="results" aria-live="polite"></section>
  <p class="empty" id="empty">Images stay on this server: they are scored and forgotten, nothing is fetched from elsewhere.</p>
</main>
<footer>
  visent <span id="version"></span> · <code>POST /predict</code> · <code>POST /explain</code> · <code>GET /health</code> · <a href="openapi.json">openapi.json</a>
</footer>
<script>
"use strict";
const CLASSES = ["negative", "neutral", "positive"];
const TARGETS = [...CLASSES, "all"];
let limits = {max_files: 10, max_upload_bytes: 20 * 1024 * 1024, max_pixels: 25000000, formats: ["JPEG", "PNG", "GIF", "WEBP", "BMP"]};
const items = [];
let explainQueue = Promise.resolve();

const $ = (id) => document.getElementById(id);
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}
function megabytes(bytes) {
  if (bytes < 1048576) return Math.max(1, Math.round(bytes / 1024)) + " KB";
  return (bytes / 1048576).toFixed(bytes < 10485760 ? 1 : 0) + " MB";
}
function listFormats(formats) { return formats.length > 1 ? formats.slice(0, -1).join(", ") + " or " + formats.at(-1) : formats[0]; }

async function loadHealth() {
  try {
    const response = await fetch("health");
    const health = await response.json();
    limits = health.limits;
    $("model-name").textContent = health.model;
    $("model-name").parentElement.title = health.model_dir || health.model;
    $("version").textContent = health.visent_version;
    $("health-dot").classList.add("ok");
    $("limits").textContent = `${listFormats(limits.formats)} · up to ${limits.max_files} images and ${megabytes(limits.max_upload_bytes)} per upload · ${(limits.max_pixels / 1e6).toFixed(0)} megapixels per image`;
  } catch (error) {
    $("model-name").textContent = "unreachable";
    $("health-dot").classList.add("down");
  }
}

async function errorDetail(response) {
  try {
    const body = await response.json();
    return {detail: typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail), problems: body.problems || []};
  } catch (error) {
    return {detail: `the server answered ${response.status} ${response.statusText}`, problems: []};
  }
}

class Item {
  constructor(file) {
    this.file = file;
    this.thumbUrl = URL.createObjectURL(file);
    this.mapUrl = null;
    this.target = null;
    this.card = el("article", {class: "card", "data-state": "predicting"});
    this.thumb = el("img", {class: "thumb", alt: file.name, src: this.thumbUrl});
    this.thumbWait = el("div", {class: "wait", text: "no preview", hidden: ""});
    this.thumb.addEventListener("error", () => { this.thumb.hidden = true; this.thumbWait.hidden = false; });
    this.map = el("img", {class: "map", alt: "sentiment map of " + file.name, hidden: ""});
    this.mapWait = el("div", {class: "wait", text: "waiting for the prediction…"});
    this.mapCaption = el("figcaption", {text: "Sentiment map"});
    this.badge = el("span", {class: "badge pending", text: "scoring…"});
    this.details = el("div", {class: "details", text: megabytes(file.size)});
    this.errorText = el("p", {class: "error-text", hidden: ""});
    this.probs = el("ul", {class: "probs"});
    this.rows = {};
    for (const cls of CLASSES) {
      const fill = el("span", {class: "fill"});
      const value = el("span", {class: "prob-value", text: "–"});
      const row = el("li", {class: "prob " + cls}, el("span", {class: "cls", text: cls}), el("span", {class: "track"}, fill), value);
      this.rows[cls] = {row, fill, value};
      this.probs.append(row);
    }
    this.buttons = {};
    const targets = el("div", {class: "targets", role: "group", "aria-label": "map of"}, el("span", {text: "Map of"}));
    for (const target of TARGETS) {
      const button = el("button", {type: "button", "aria-pressed": "false", "data-target": target, disabled: "", text: target === "all" ? "All three" : target[0].toUpperCase() + target.slice(1)});
      button.addEventListener("click", () => this.explain(target));
      this.buttons[target] = button;
      targets.append(button);
    }
    this.card.append(
      el("div", {class: "figures"},
        el("figure", {class: "thumb-fig"}, el("div", {class: "box"}, this.thumb, this.thumbWait), el("figcaption", {text: "Image"})),
        el("figure", {class: "map-fig"}, el("div", {class: "box"}, this.map, this.mapWait), this.mapCaption)),
      el("div", {class: "info"},
        el("div", {class: "title-row"}, el("h2", {class: "name", title: file.name, text: file.name}), this.badge),
        this.details, this.probs, targets, this.errorText));
    this.map.addEventListener("load", () => {
      this.map.hidden = false;
      this.mapWait.hidden = true;
      this.card.dataset.state = "done";
    });
  }
  fail(message) {
    this.card.dataset.state = "error";
    this.badge.className = "badge error";
    this.badge.textContent = "rejected";
    this.errorText.textContent = message;
    this.errorText.hidden = false;
    this.mapWait.textContent = "no map";
    updateSummary();
  }
  showPrediction(prediction) {
    this.prediction = prediction;
    this.card.dataset.state = "predicted";
    this.card.dataset.label = prediction.label;
    this.badge.className = "badge " + prediction.label;
    this.badge.textContent = prediction.label;
    this.details.textContent = `${prediction.format} · ${prediction.width} × ${prediction.height} px · ${megabytes(this.file.size)}`;
    for (const cls of CLASSES) {
      const p = prediction.probabilities[cls];
      this.rows[cls].fill.style.width = (100 * p).toFixed(1) + "%";
      this.rows[cls].value.textContent = p.toFixed(3);
      this.rows[cls].row.classList.toggle("top", cls === prediction.label);
    }
    for (const button of Object.values(this.buttons)) button.disabled = false;
    this.mapWait.textContent = "drawing the map…";
    updateSummary();
    this.explain(prediction.label);
  }
  explain(target) {
    for (const [name, button] of Object.entries(this.buttons)) button.setAttribute("aria-pressed", String(name === target));
    this.card.classList.toggle("wide", target === "all");
    this.target = target;
    explainQueue = explainQueue.then(() => this.fetchMap(target));
    return explainQueue;
  }
  async fetchMap(target) {
    if (this.target !== target || !this.card.isConnected) return;  // superseded while waiting in the queue
    this.mapWait.hidden = false;
    this.mapWait.textContent = "drawing the map…";
    const form = new FormData();
    form.append("file", this.file, this.file.name);
    try {
      const response = await fetch("explain?target=" + encodeURIComponent(target), {method: "POST", body: form});
      if (!response.ok) {
        const {detail} = await errorDetail(response);
        this.mapWait.textContent = "no map";
        this.errorText.textContent = detail;
        this.errorText.hidden = false;
        return;
      }
      const blob = await response.blob();
      if (this.mapUrl) URL.revokeObjectURL(this.mapUrl);
      this.mapUrl = URL.createObjectURL(blob);
      const method = response.headers.get("X-Visent-Method") || "";
      this.mapCaption.textContent = target === "all" ? `The image and the map of each class${method ? " · " + method : ""}`
                                                    : `Sentiment map · ${target}${method ? " · " + method : ""}`;
      this.map.src = this.mapUrl;
    } catch (error) {
      this.mapWait.textContent = "no map: the server cannot be reached";
    }
  }
  dispose() {
    URL.revokeObjectURL(this.thumbUrl);
    if (this.mapUrl) URL.revokeObjectURL(this.mapUrl);
    this.card.remove();
  }
}

function updateSummary() {
  const counts = {negative: 0, neutral: 0, positive: 0};
  let rejected = 0;
  for (const item of items) {
    if (item.card.dataset.state === "error") rejected += 1;
    else if (item.prediction) counts[item.prediction.label] += 1;
  }
  const parts = [`${items.length} image${items.length === 1 ? "" : "s"}`];
  for (const cls of CLASSES) if (counts[cls]) parts.push(`${counts[cls]} ${cls}`);
  if (rejected) parts.push(`${rejected} rejected`);
  $("summary").textContent = parts.join(" · ");
  $("toolbar").hidden = items.length === 0;
  $("empty").hidden = items.length > 0;
}

async function predictBatch(batch) {
  const form = new FormData();
  for (const item of batch) form.append("files", item.file, item.file.name);
  let response;
  try {
    response = await fetch("predict", {method: "POST", body: form});
  } catch (error) {
    for (const item of batch) item.fail("the server cannot be reached: is visent serve still running?");
    return;
  }
  if (response.ok) {
    const body = await response.json();
    body.predictions.forEach((prediction, i) => batch[i].showPrediction(prediction));
    return;
  }
  const {detail, problems} = await errorDetail(response);
  if (batch.length === 1) { batch[0].fail(detail); return; }
  // One bad file rejects its whole request: mark the files the server named, send the others again.
  const named = new Set(problems.map((problem) => problem.index));
  for (const problem of problems) batch[problem.index].fail(problem.detail);
  const rest = batch.filter((_, i) => !named.has(i));
  if (named.size) { if (rest.length) await predictBatch(rest); return; }
  for (const item of rest) await predictBatch([item]);
}

async function addFiles(fileList) {
  const files = Array.from(fileList || []);
  if (!files.length) return;
  const fresh = files.map((file) => new Item(file));
  items.push(...fresh);
  $("results").prepend(...fresh.map((item) => item.card));  // the newest upload on top, in the order chosen
  updateSummary();
  const budget = limits.max_upload_bytes - 4096;  // room for the multipart framing
  const batches = [];
  let batch = [], size = 0;
  for (const item of fresh) {
    if (item.file.size > budget) {
      item.fail(`'${item.file.name}' is ${megabytes(item.file.size)}; this server accepts at most ${megabytes(limits.max_upload_bytes)} per upload: choose a smaller file`);
      continue;
    }
    if (batch.length && (batch.length >= limits.max_files || size + item.file.size + 512 * batch.length > budget)) {
      batches.push(batch); batch = []; size = 0;
    }
    batch.push(item); size += item.file.size;
  }
  if (batch.length) batches.push(batch);
  for (const next of batches) await predictBatch(next);
}

const zone = $("drop-zone");
const input = $("file-input");
input.addEventListener("change", () => { addFiles(input.files); input.value = ""; });
zone.addEventListener("keydown", (event) => { if (event.key === "Enter" || event.key === " ") { event.preventDefault(); input.click(); } });
for (const type of ["dragenter", "dragover"]) zone.addEventListener(type, (event) => { event.preventDefault(); zone.classList.add("over"); });
zone.addEventListener("dragleave", (event) => { if (!zone.contains(event.relatedTarget)) zone.classList.remove("over"); });
zone.addEventListener("drop", (event) => {
  event.preventDefault(); event.stopPropagation(); zone.classList.remove("over"); addFiles(event.dataTransfer.files);
});
// A file dropped beside the zone is taken too, instead of the browser leaving the page to show it.
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => { event.preventDefault(); if (event.dataTransfer) addFiles(event.dataTransfer.files); });
document.addEventListener("paste", (event) => {
  const files = Array.from(event.clipboardData ? event.clipboardData.files : []).filter((file) => file.type.startsWith("image/"));
  if (files.length) addFiles(files);
});
$("clear").addEventListener("click", () => { while (items.length) items.pop().dispose(); updateSummary(); });
loadHealth();
</script>
</body>
</html>
"""
