// styler ui: plain JavaScript over the server's JSON and image API (styler/ui/app.py).
"use strict";

const $ = (selector) => document.querySelector(selector);
const state = { photos: [], current: null, renders: 0, jobs: new Map(), polling: false };

function element(tag, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

// One line for any failure: the server's {"error": ...} or what the browser knows. X-Styler marks
// the request as the page's own: the server refuses changes without it (styler/ui/guard.py).
async function call(url, options = {}) {
  const response = await fetch(url, { ...options, headers: { ...(options.headers || {}), "X-Styler": "1" } });
  const json = (response.headers.get("content-type") || "").includes("json") ? await response.json() : null;
  if (!response.ok) throw new Error((json && json.error) || `${response.status} ${response.statusText}`);
  return json === null ? response : json;
}

function say(where, error) {
  $(where).textContent = error ? String(error.message || error) : "";
}

function send(url, file) {
  return call(url, { method: "POST", body: file, headers: { "X-Filename": encodeURIComponent(file.name) } });
}

function showTab(name) {
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  document.querySelectorAll("main > section").forEach((s) => { s.hidden = s.id !== name; });
  if (name === "styles") loadStyles();
}

// --- Try ---------------------------------------------------------------------------------------------

async function addPhotos(files) {
  say("#try-error", "");
  for (const file of files) {
    try {
      const photo = await send("/api/photos", file);
      state.photos.push(photo);
      drawRow(photo);
    } catch (error) {
      say("#try-error", error);
    }
  }
}

function figure(src, label, onPick) {
  const node = element("figure", {}, [element("img", { src, alt: label }), element("figcaption", { textContent: label })]);
  node.dataset.style = label;
  if (onPick) {
    node.classList.add("pick");
    node.addEventListener("click", () => onPick(node));
  }
  return node;
}

function drawRow(photo) {
  const row = element("div", { className: "row" }, [figure(`/api/photos/${photo.id}/original`, photo.label)]);
  row.dataset.photo = photo.id;
  for (const cell of photo.cells) row.append(figure(cell.src, cell.style, (node) => openDetail(photo, cell.style, node)));
  $("#grid").append(row);
  if (photo.failures.length) say("#try-error", photo.failures.map((f) => `skipped ${f.style}: ${f.reason}`).join("; "));
}

function settings() {
  return new URLSearchParams({
    strength: $("#strength").value,
    stroke_scale: String(2 ** Number($("#stroke").value)),
    preserve_color: $("#preserve").checked ? "1" : "0",
  });
}

function openDetail(photo, style, node) {
  document.querySelectorAll(".pick.chosen").forEach((n) => n.classList.remove("chosen"));
  node.classList.add("chosen");
  state.current = { photo, style };
  $("#detail").hidden = false;
  $("#detail-original").src = `/api/photos/${photo.id}/original`;
  $("#detail-caption").textContent = style;
  render();
  $("#detail").scrollIntoView({ behavior: "smooth", block: "nearest" });
}

// The preview follows the sliders; an answer that arrives after a newer request is dropped.
async function render() {
  $("#strength-value").textContent = $("#strength").value;
  $("#stroke-value").textContent = `${2 ** Number($("#stroke").value)}\u00d7`;
  const { photo, style } = state.current;
  const query = settings();
  query.set("style", style);
  const zip = new URLSearchParams(settings());
  state.photos.forEach((p) => zip.append("photo", p.id));
  $("#zip").href = `/api/zip?${zip}`;
  $("#download").href = `/api/photos/${photo.id}/render?${query}&full=1`;
  const ticket = ++state.renders;
  try {
    const blob = await (await call(`/api/photos/${photo.id}/render?${query}`)).blob();
    if (ticket !== state.renders) return;
    const img = $("#detail-result");
    if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(blob);
    img.dataset.query = query.toString();
    say("#try-error", "");
  } catch (error) {
    say("#try-error", error);
  }
}

let renderTimer = null;
function renderSoon() {
  clearTimeout(renderTimer);
  renderTimer = setTimeout(render, 120);
}

// --- Train -------------------------------------------------------------------------------------------

async function submitTraining(event) {
  event.preventDefault();
  const form = event.target;
  say("#train-error", "");
  try {
    $("#train-status").textContent = "uploading the painting";
    const painting = await send("/api/uploads", form.painting.files[0]);
    const photos = [];
    for (const file of form.photos.files) {
      $("#train-status").textContent = `uploading photo ${photos.length + 1} of ${form.photos.files.length}`;
      photos.push((await send("/api/uploads", file)).id);
    }
    const length = form.how_long.value === "steps" ? { steps: form.steps.value } : { budget: Number(form.how_long.value) };
    const body = { name: form.style_name.value, painting: painting.id, photos, folder: form.folder.value,
                   features: form.features.value, ...length };
    await call("/api/train", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    ["style_name", "painting", "photos"].forEach((field) => { form[field].value = ""; });  // ready for the next one
    pollJobs();
  } catch (error) {
    say("#train-error", error);
  } finally {
    $("#train-status").textContent = "";
  }
}

function duration(seconds) {
  const s = Math.round(seconds);
  return s >= 60 ? `${Math.floor(s / 60)} min` + (s % 60 ? ` ${s % 60} s` : "") : `${s} s`;
}

function describe(job) {
  switch (job.state) {
    case "queued": return `waiting: ${job.ahead} job${job.ahead === 1 ? "" : "s"} ahead`;
    case "preparing": return "preparing: reading the photos and the loss network";
    case "running": return `step ${job.step} of ${job.steps}` + (job.eta === null ? "" : `, ${duration(job.eta)} left`)
                           + (job.budget ? ` (budget ${duration(job.budget)})` : "");
    case "stopping": return `stopping after step ${job.step}`;
    case "finished": return `finished after ${job.step} steps: the style "${job.name}" is ready`;
    case "stopped": return `stopped at step ${job.step}: the best generator so far is saved as "${job.name}"`;
    case "failed": return `failed: ${job.error}`;
    default: return job.state;
  }
}

function curve(points) {
  if (points.length < 2) return "";
  const steps = points.map((p) => p[0]), losses = points.map((p) => p[1]);
  const [x0, x1] = [Math.min(...steps), Math.max(...steps)], [y0, y1] = [Math.min(...losses), Math.max(...losses)];
  return points.map(([x, y]) => `${(300 * (x - x0) / (x1 - x0 || 1) + 10).toFixed(1)},` +
                                `${(100 - 90 * (y - y0) / (y1 - y0 || 1)).toFixed(1)}`).join(" ");
}

function drawJob(job) {
  let card = state.jobs.get(job.id);
  if (!card) {
    const stop = element("button", { type: "button", className: "stop", textContent: "Stop" });
    stop.addEventListener("click", () => call(`/api/jobs/${job.id}/stop`, { method: "POST" }).then(pollJobs, (e) => say("#train-error", e)));
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 320 110");
    svg.append(document.createElementNS("http://www.w3.org/2000/svg", "polyline"));
    card = element("div", { className: "job" }, [
      element("div", {}, [element("h3", { textContent: job.name }), element("p", { className: "state" }), stop,
                          element("p", { className: "best" }), svg]),
      element("img", { className: "preview", alt: "latest preview: photos and their stylized versions" })]);
    card.dataset.job = job.id;
    state.jobs.set(job.id, card);
    $("#jobs").prepend(card);
  }
  card.dataset.state = job.state;
  card.querySelector(".state").textContent = describe(job);
  card.querySelector(".stop").hidden = !["queued", "preparing", "running"].includes(job.state);
  const last = job.losses.length ? `loss ${job.losses[job.losses.length - 1][1].toPrecision(4)}` : "";
  const best = job.best ? `best validation loss ${job.best[1].toPrecision(4)} at step ${job.best[0]}` : "";
  card.querySelector(".best").textContent = [last, best].filter(Boolean).join("; ");
  card.querySelector("polyline").setAttribute("points", curve(job.losses));
  const preview = card.querySelector(".preview");
  preview.hidden = !job.preview;
  if (job.preview && preview.dataset.shown !== job.preview) {
    preview.src = `/api/jobs/${job.id}/preview?${job.preview}`;
    preview.dataset.shown = job.preview;
  }
}

async function pollJobs() {
  if (state.polling) return;
  state.polling = true;
  try {
    for (;;) {
      const { jobs } = await call("/api/jobs");
      const ended = jobs.some((j) => ["finished", "stopped"].includes(j.state) && state.jobs.has(j.id)
                                     && !["finished", "stopped"].includes(state.jobs.get(j.id).dataset.state));
      jobs.forEach(drawJob);
      if (ended) loadStyles();
      if (!jobs.some((j) => ["queued", "preparing", "running", "stopping"].includes(j.state))) break;
      await new Promise((resolve) => setTimeout(resolve, 700));
    }
  } catch (error) {
    say("#train-error", error);
  } finally {
    state.polling = false;
  }
}

// --- Styles ------------------------------------------------------------------------------------------

async function changeStyle(name, action, body) {
  say("#styles-error", "");
  try {
    const options = { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}) };
    drawStyles(await call(`/api/styles/${encodeURIComponent(name)}/${action}`, options));
  } catch (error) {
    say("#styles-error", error);
  }
}

function actions(style) {
  if (style.source !== "yours") return [];  // ./weights is only read; bundled styles ship with styler
  const field = element("input", { value: style.name, size: 14, className: "new-name" });
  const rename = element("button", { type: "button", textContent: "Rename", className: "rename" });
  rename.addEventListener("click", () => changeStyle(style.name, "rename", { to: field.value }));
  const remove = element("button", { type: "button", textContent: "Delete", className: "delete" });
  remove.addEventListener("click", () => {
    if (remove.dataset.armed) changeStyle(style.name, "delete");
    else Object.assign(remove, { textContent: "Really delete?" }).dataset.armed = "1";
  });
  return [field, rename, remove];
}

function drawStyles({ weights_dir, styles }) {
  $("#styles-where").textContent = `Yours are in ${weights_dir}; bundled styles come with styler and cannot be deleted.`;
  $("#style-rows").replaceChildren(...styles.map((style) => {
    const thumb = element("img", { src: `/api/styles/${encodeURIComponent(style.name)}/painting`, alt: "" });
    thumb.addEventListener("error", () => thumb.replaceWith("no painting on file"));
    const source = style.hidden ? `${style.source}, hidden by another of that name` : style.source;
    const cells = style.error ? [`unreadable: ${style.error}`, "", ""]
      : [style.features, style.best_step === null ? `${style.steps}` : `${style.steps} (${style.best_step})`,
         (style.created || "").slice(0, 10)];
    const row = element("tr", {}, [element("td", {}, [thumb]), element("td", { textContent: style.name }),
      element("td", { textContent: source }), ...cells.map((text) => element("td", { textContent: text })),
      element("td", {}, actions(style))]);
    row.dataset.style = style.name;
    return row;
  }));
}

async function loadStyles() {
  try {
    drawStyles(await call("/api/styles"));
  } catch (error) {
    say("#styles-error", error);
  }
}

// --- wiring ------------------------------------------------------------------------------------------

async function start() {
  document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
  const drop = $("#drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); addPhotos([...e.dataTransfer.files]); });
  $("#photo-input").addEventListener("change", (e) => { addPhotos([...e.target.files]); e.target.value = ""; });
  ["#strength", "#stroke", "#preserve"].forEach((id) => $(id).addEventListener("input", renderSoon));
  $("#train-form").addEventListener("submit", submitTraining);
  const info = await call("/api/info");
  const form = $("#train-form");
  form.steps.value = info.steps;
  form.steps.max = info.max_steps;
  const lengths = info.budgets.map((b) => element("option", { value: b, textContent: duration(b), selected: b === info.default_budget }));
  form.how_long.replaceChildren(...lengths, element("option", { value: "steps", textContent: "a number of steps" }));
  form.how_long.addEventListener("change", () => { $("#steps-label").hidden = form.how_long.value !== "steps"; });
  form.features.replaceChildren(...info.features.map((f) => element("option", { value: f, textContent: f, selected: f === info.default_features })));
  document.body.dataset.ready = "1";
  pollJobs();
}

start().catch((error) => say("#try-error", error));
