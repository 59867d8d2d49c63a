// The glimpse search page: plain JS, no build step, talks only to this server's /api.
"use strict";

const PAGE = 24;
const DEBOUNCE_MS = 250;
const $ = (id) => document.getElementById(id);

// What the grid currently shows; `run` increments so answers to superseded searches are dropped.
const state = { mode: null, q: "", image: null, similarId: null, offset: 0, more: false, loading: false, run: 0,
                lang: "en", features: {} };

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (response.status === 204) return null;
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) {
    if (response.status === 401) showLogin();
    throw new ApiError(response.status, body.error || response.statusText);
  }
  return body;
}

function filters() {
  const params = new URLSearchParams({ k: PAGE, offset: state.offset, lang: state.lang });
  if ($("folder").value) params.set("folder", $("folder").value);
  if (state.features.tags && $("tag").value) params.append("tag", $("tag").value);
  return params;
}

function request() {
  const params = filters();
  if (state.mode === "text") {
    params.set("q", state.q);
    return api(`/api/search?${params}`);
  }
  if (state.mode === "similar") return api(`/api/similar/${state.similarId}?${params}`);
  const form = new FormData();
  form.append("file", state.image);
  return api(`/api/search/image?${params}`, { method: "POST", body: form });
}

function setMessage(text, isError = false) {
  $("message").textContent = text;
  $("message").classList.toggle("error", isError);
}

async function loadPage() {
  if (!state.mode || state.loading) return;
  state.loading = true;
  const run = state.run;
  try {
    const page = await request();
    if (run !== state.run) return;
    renderHits(page.results);
    state.offset += page.results.length;
    state.more = page.more;
    const shown = $("results").children.length;
    setMessage(shown ? `${shown} result${shown === 1 ? "" : "s"}${state.more ? ", scroll for more" : ""}`
                     : "No results.");
  } catch (error) {
    if (run === state.run) setMessage(error.message, true);
  } finally {
    if (run === state.run) state.loading = false;
  }
  if (run === state.run && state.more && sentinelVisible()) loadPage();
}

function startSearch(mode, values) {
  Object.assign(state, { mode, q: "", image: null, similarId: null, ...values, offset: 0, more: false, loading: false });
  state.run += 1;
  $("results").replaceChildren();
  setMessage("Searching…");
  loadPage();
}

function renderHits(hits) {
  const list = $("results");
  for (const hit of hits) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "hit";
    button.dataset.id = hit.id;
    const img = document.createElement("img");
    img.src = hit.thumbnail;
    img.loading = "lazy";
    img.alt = describe(hit);
    const meta = document.createElement("span");
    meta.className = "meta";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = hit.name;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = hit.score.toFixed(3);
    meta.append(name, score);
    button.append(img, meta);
    button.setAttribute("aria-label", `${describe(hit)}, score ${hit.score.toFixed(3)}`);
    button.addEventListener("click", () => openViewer(hit.id));
    item.append(button);
    list.append(item);
  }
}

function describe(hit) {
  const tags = (hit.tags || []).slice(0, 5).map((t) => t.label || t.tag).join(", ");
  return tags ? `${hit.name}: ${tags}` : hit.name;
}

// -- large view ---------------------------------------------------------------------------------------
async function openViewer(id) {
  let info;
  try {
    info = await api(`/api/images/${id}?lang=${state.lang}`);
  } catch (error) {
    setMessage(error.message, true);
    return;
  }
  $("viewer-title").textContent = info.name;
  $("viewer-image").src = info.file;
  $("viewer-image").alt = describe(info);
  $("viewer-path").textContent = info.path;
  $("viewer-size").textContent = info.width && info.height ? `${info.width} × ${info.height}` : "unknown";
  const tags = info.tags || [];
  for (const el of document.querySelectorAll(".tags-row")) el.hidden = !state.features.tags;
  $("viewer-tags").replaceChildren(...tags.map((t) => {
    const span = document.createElement("span");
    span.className = "tag";
    span.textContent = t.label || t.tag;
    return span;
  }));
  $("viewer-open").href = info.file;
  $("more-like-this").dataset.id = id;
  if (!$("viewer").open) $("viewer").showModal();
}

// -- library status and indexing ------------------------------------------------------------------------
async function refreshStatus() {
  let status;
  try {
    status = await api("/api/status");
  } catch (error) {
    $("status-line").textContent = error.status === 401 ? "Log in to see the library." : error.message;
    return;
  }
  state.features = status.features || {};
  $("status-line").textContent =
    `${status.images} images · ${status.errors} failed · model ${status.model_key || status.model} · ` +
    `${status.roots.length} folder${status.roots.length === 1 ? "" : "s"}`;
  $("reindex").hidden = status.roots.length === 0;
  if (status.job && status.job.state === "running") followJob(status.job.id);
  await Promise.all([loadFolders(), loadTags()]);
}

async function loadFolders() {
  const folders = await api("/api/folders").catch(() => []);
  const select = $("folder");
  const current = select.value;
  select.replaceChildren(new Option("All folders", ""),
    ...folders.map((f) => new Option(`${f.folder} (${f.count})`, f.folder)));
  select.value = current;
}

async function loadTags() {
  const answer = await api(`/api/tags?lang=${state.lang}`).catch(() => ({ available: false, tags: [] }));
  $("tag-filter").hidden = !answer.available;
  $("lang-toggle").hidden = !answer.available;
  if (!answer.available) return;
  const select = $("tag");
  const current = select.value;
  select.replaceChildren(new Option("Any tag", ""), ...answer.tags.map((t) => new Option(`${t.label || t.tag} (${t.count})`, t.tag)));
  select.value = current;
}

let following = null;
function followJob(id) {
  if (following === id) return;
  following = id;
  $("job").hidden = false;
  const source = new EventSource(`/api/jobs/${id}/events`);
  source.addEventListener("progress", (event) => {
    const job = JSON.parse(event.data);
    const progress = $("job-progress");
    if (job.total) { progress.max = job.total; progress.value = job.done; } else { progress.removeAttribute("value"); }
    $("job-label").textContent = job.total ? `Indexing ${job.done} / ${job.total}` : "Indexing: scanning…";
    if (job.state === "done" || job.state === "failed") {
      source.close();
      following = null;
      $("job").hidden = true;
      setMessage(job.state === "failed" ? `Indexing failed: ${job.error}` : "Indexing finished.", job.state === "failed");
      refreshStatus();
    }
  });
  source.onerror = () => { source.close(); following = null; $("job").hidden = true; };
}

async function reindex() {
  try {
    const job = await api("/api/index", { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    followJob(job.id);
  } catch (error) {
    setMessage(error.message, true);
  }
}

// -- login --------------------------------------------------------------------------------------------
function showLogin() {
  $("login").hidden = false;
  $("token").focus();
}

async function login(event) {
  event.preventDefault();
  try {
    await api("/api/login", { method: "POST", headers: { "content-type": "application/json" },
                              body: JSON.stringify({ token: $("token").value }) });
    $("login").hidden = true;
    $("login-error").textContent = "";
    refreshStatus();
  } catch (error) {
    $("login-error").textContent = error.message;
  }
}

// -- wiring -------------------------------------------------------------------------------------------
function sentinelVisible() {
  const rect = $("sentinel").getBoundingClientRect();
  return rect.top < window.innerHeight + 400;
}

function searchByImage(file) {
  if (!file || !file.type.startsWith("image/")) {
    setMessage("That is not an image file.", true);
    return;
  }
  const note = $("query-note");
  const preview = document.createElement("img");
  preview.src = URL.createObjectURL(file);
  preview.alt = `query image ${file.name}`;
  note.replaceChildren("Images like ", preview);
  startSearch("image", { image: file });
}

function rerun() {
  if (state.mode) startSearch(state.mode, { q: state.q, image: state.image, similarId: state.similarId });
}

function init() {
  let timer = null;
  $("q").addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const q = $("q").value.trim();
      if (!q) return;
      $("query-note").replaceChildren();
      startSearch("text", { q });
    }, DEBOUNCE_MS);
  });
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(timer);
    const q = $("q").value.trim();
    if (q) startSearch("text", { q });
  });
  $("image-input").addEventListener("change", (event) => searchByImage(event.target.files[0]));
  const zone = document.body;
  zone.addEventListener("dragover", (event) => { event.preventDefault(); $("drop-zone").classList.add("dragging"); });
  zone.addEventListener("dragleave", () => $("drop-zone").classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    $("drop-zone").classList.remove("dragging");
    searchByImage(event.dataTransfer.files[0]);
  });
  $("more-like-this").addEventListener("click", () => {
    const id = $("more-like-this").dataset.id;
    $("viewer").close();
    $("query-note").textContent = `Images like #${id}`;
    startSearch("similar", { similarId: id });
  });
  $("folder").addEventListener("change", rerun);
  $("tag").addEventListener("change", rerun);
  for (const radio of document.querySelectorAll("input[name=lang]")) {
    radio.addEventListener("change", () => { state.lang = radio.value; loadTags(); rerun(); });
  }
  $("reindex").addEventListener("click", reindex);
  $("login").addEventListener("submit", login);
  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && state.more) loadPage();
  }, { rootMargin: "400px" }).observe($("sentinel"));
  refreshStatus();
}

document.addEventListener("DOMContentLoaded", init);
