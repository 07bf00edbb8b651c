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
    // the person's own label for this image, for `visent adapt` (click again to take it back)
    this.humanLabel = null;
    this.labelButtons = {};
    const labels = el("div", {class: "targets labels", role: "group", "aria-label": "your label"}, el("span", {text: "Your label"}));
    for (const cls of CLASSES) {
      const button = el("button", {type: "button", "aria-pressed": "false", "data-label": cls, text: cls[0].toUpperCase() + cls.slice(1)});
      button.addEventListener("click", () => this.setLabel(this.humanLabel === cls ? null : cls));
      this.labelButtons[cls] = button;
      labels.append(button);
    }
    this.card.append(
      el("div", {class: "figures"},
        el("figure", {class: "thumb-fig"}, el("div", {class: "box"}, this.thumb, this.thumbWait), el("figcaption", {text: "Image"})),
        el("figure", {class: "map-fig"}, el("div", {class: "box"}, this.map, this.mapWait), this.mapCaption)),
      el("div", {class: "info"},
        el("div", {class: "title-row"}, el("h2", {class: "name", title: file.name, text: file.name}), this.badge),
        this.details, this.probs, targets, labels, this.errorText));
    this.map.addEventListener("load", () => {
      this.map.hidden = false;
      this.mapWait.hidden = true;
      this.card.dataset.state = "done";
    });
  }
  setLabel(label) {
    this.humanLabel = label;
    for (const [cls, button] of Object.entries(this.labelButtons)) button.setAttribute("aria-pressed", String(cls === label));
    if (label) this.card.dataset.human = label; else delete this.card.dataset.human;
    updateSummary();
  }
  fail(message) {
    this.setLabel(null);
    for (const button of Object.values(this.labelButtons)) button.disabled = true;  // nothing to learn from
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
  const labelled = items.filter((item) => item.humanLabel).length;
  if (labelled) parts.push(`${labelled} labelled by you`);
  $("summary").textContent = parts.join(" · ");
  $("download-labels").disabled = labelled === 0;
  $("download-labels").textContent = labelled ? `Download labels (${labelled})` : "Download labels";
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

// The labels as `visent adapt --labels` reads them: path,label, one row per labelled image, the oldest first.
function csvField(text) { return /[",\r\n]/.test(text) ? '"' + text.replaceAll('"', '""') + '"' : text; }
function labelsCsv() {
  const rows = items.filter((item) => item.humanLabel).map((item) => csvField(item.file.name) + "," + item.humanLabel);
  return ["path,label", ...rows].join("\r\n") + "\r\n";
}
$("download-labels").addEventListener("click", () => {
  const url = URL.createObjectURL(new Blob([labelsCsv()], {type: "text/csv"}));
  const link = el("a", {href: url, download: "labels.csv"});
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
});

// The labelling mode (#label): the images the server suggests, one after another, each label saved on the server
// as it is given, so a reload continues where it was. The server without a pool answers 404: the mode stays hidden.
const LABEL_KEYS = {"1": "negative", "n": "negative", "2": "neutral", "u": "neutral", "3": "positive", "p": "positive",
                    "s": "skip", " ": "skip"};
const labelling = {available: false, current: null, busy: false, shownRank: null, rows: {}};

function showMode() {
  const label = labelling.available && location.hash === "#label";
  $("label-view").hidden = !label;
  $("predict-view").hidden = label;
  $("mode-label").setAttribute("aria-selected", String(label));
  $("mode-predict").setAttribute("aria-selected", String(!label));
}

function buildLabelProbs() {
  for (const cls of CLASSES) {
    const fill = el("span", {class: "fill"});
    const value = el("span", {class: "prob-value", text: "–"});
    const row = el("li", {class: "prob " + cls}, el("span", {class: "cls", text: cls}), el("span", {class: "track"}, fill), value);
    labelling.rows[cls] = {row, fill, value};
    $("label-probs").append(row);
  }
}

function showLabelState(state) {
  const count = `${state.labelled} of ${state.total} labelled`;
  $("label-count").textContent = count;
  $("mode-count").textContent = `${state.labelled}/${state.total}`;
  $("label-bar").style.width = state.total ? (100 * state.labelled / state.total).toFixed(1) + "%" : "0";
  $("label-skipped").textContent = [state.earlier ? `${state.earlier} before this session` : "",
                                    state.skipped ? `${state.skipped} skipped` : ""].filter(Boolean).join(" · ");
  $("label-file").textContent = state.labels_file;
  $("label-file-again").textContent = state.labels_file;
  $("label-wait").hidden = true;
  if (state.status !== "ready" || !state.image) {
    labelling.current = null;
    $("label-card").hidden = true;
    $("label-done").hidden = false;
    $("label-done").textContent = `Done: ${count}${state.skipped ? `, ${state.skipped} skipped` : ""}. The labels are in ${state.labels_file}.`;
    return;
  }
  const image = state.image;
  labelling.current = image;
  $("label-done").hidden = true;
  $("label-card").hidden = false;
  $("label-card").dataset.rank = String(image.rank);
  if (labelling.shownRank !== image.rank) {
    labelling.shownRank = image.rank;
    $("label-image").src = image.url;
    $("label-image").alt = image.name;
  }
  $("label-name").textContent = image.name;
  $("label-name").title = image.name;
  $("label-guess").className = "badge " + image.predicted;
  $("label-guess").textContent = image.predicted;
  for (const cls of CLASSES) {
    const p = image.probabilities[cls];
    labelling.rows[cls].fill.style.width = (100 * p).toFixed(1) + "%";
    labelling.rows[cls].value.textContent = p.toFixed(3);
    labelling.rows[cls].row.classList.toggle("top", cls === image.predicted);
  }
  $("label-why").textContent = `Suggested #${image.rank}: ${image.why}`;
}

async function loadLabelling() {
  let response;
  try {
    response = await fetch("label/next?wait=10", {cache: "no-store"});
  } catch (error) {
    if (labelling.available) $("label-wait").textContent = "The server cannot be reached: is visent serve still running?";
    return;
  }
  if (response.status === 404) { labelling.available = false; $("modes").hidden = true; showMode(); return; }
  labelling.available = true;
  $("modes").hidden = false;
  $("footer-label").hidden = false;
  showMode();
  if (response.status === 202) {
    $("label-wait").textContent = "Choosing the images to label: the model is scoring the pool…";
    setTimeout(loadLabelling, 500);
    return;
  }
  if (!response.ok) { $("label-wait").textContent = (await errorDetail(response)).detail; return; }
  showLabelState(await response.json());
}

async function giveLabel(label) {
  if (!labelling.current || labelling.busy) return;
  labelling.busy = true;
  const button = document.querySelector(`[data-give="${label}"]`);
  button.classList.add("pressed");
  try {
    const response = await fetch("label", {method: "POST", headers: {"Content-Type": "application/json"},
                                           body: JSON.stringify({rank: labelling.current.rank, label})});
    if (!response.ok) {
      $("label-error").textContent = (await errorDetail(response)).detail;
      $("label-error").hidden = false;
      return;
    }
    $("label-error").hidden = true;
    showLabelState(await response.json());
  } catch (error) {
    $("label-error").textContent = "The server cannot be reached: this label was not saved; give it again.";
    $("label-error").hidden = false;
  } finally {
    labelling.busy = false;
    button.classList.remove("pressed");
  }
}

for (const button of document.querySelectorAll("[data-give]")) {
  button.addEventListener("click", () => { button.blur(); giveLabel(button.dataset.give); });
}
document.addEventListener("keydown", (event) => {
  if ($("label-view").hidden || event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  const target = event.target;
  if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) return;
  const label = LABEL_KEYS[event.key.toLowerCase()];
  if (!label) return;
  event.preventDefault();  // space neither scrolls nor presses a focused button
  giveLabel(label);
});
window.addEventListener("hashchange", showMode);
buildLabelProbs();
loadHealth();
loadLabelling();
