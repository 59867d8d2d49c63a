// The glimpse search page: plain JS, no build step, talks only to this server's /api.
"use strict";

const PAGE = 24;
const DEBOUNCE_MS = 250;
const $ = (id) => document.getElementById(id);

let placeholder = ""; // the query box's own hint (from the page), put back when the box holds a text query

// What the grid currently shows (mode: recent, text, similar or image); `run` increments so answers to
// superseded searches are dropped.
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
  // The date inputs give a day; the API's --before is exclusive, so "until" a day means before the next one.
  if ($("after").value) params.set("after", $("after").value);
  if ($("before").value) params.set("before", nextDay($("before").value));
  if ($("camera").value.trim()) params.set("camera", $("camera").value.trim());
  if ($("type").value) params.set("type", $("type").value);
  return params;
}

function nextDay(isoDate) {
  const day = new Date(`${isoDate}T00:00:00Z`);
  day.setUTCDate(day.getUTCDate() + 1);
  return day.toISOString().slice(0, 10);
}

function request() {
  if (state.mode === "recent") {
    return api(`/api/recent?${new URLSearchParams({ k: PAGE, offset: state.offset, lang: state.lang })}`);
  }
  const params = filters();
  if (state.mode === "text") {
    params.set("q", state.q);
    if ($("sort").value !== "score") params.set("sort", $("sort").value);
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
    const what = state.mode === "recent" ? "image" : "result";
    const empty = state.mode === "recent" ? "No images indexed yet: re-index, or run `glimpse index FOLDER`."
                                          : "No results.";
    setMessage(shown ? `${shown} ${what}${shown === 1 ? "" : "s"}${state.more ? ", scroll for more" : ""}` : empty);
  } catch (error) {
    // 401: the login form is shown instead of an error line.
    if (run === state.run) setMessage(error.status === 401 ? "" : error.message, error.status !== 401);
  } finally {
    if (run === state.run) state.loading = false;
  }
  if (run === state.run && state.more && sentinelVisible()) loadPage();
}

function startSearch(mode, values) {
  Object.assign(state, { mode, q: "", image: null, similarId: null, ...values, offset: 0, more: false, loading: false });
  state.run += 1;
  $("results").replaceChildren();
  setMessage(mode === "recent" ? "Loading…" : "Searching…");
  loadPage();
}

// -- the view in the URL --------------------------------------------------------------------------------
// The URL names the view: / (recent images), /?q=TEXT (a text search), /?like=ID (more like an image), so
// a search can be shared and reloaded, and the back button returns to the previous one. An image search
// keeps its picked file in the history entry (it has no URL of its own).
let typing = false; // the current history entry was made by typing: further keystrokes replace it

function currentView() {
  const params = new URLSearchParams(location.search);
  const saved = history.state || {};
  const q = (params.get("q") || "").trim();
  if (q) return { mode: "text", q };
  const like = params.get("like") || "";
  if (/^[0-9]{1,18}$/.test(like)) return { mode: "similar", similarId: like, name: saved.similarId === like ? saved.name : null };
  if (saved.mode === "image" && saved.image instanceof Blob) return { mode: "image", image: saved.image };
  return { mode: "recent" };
}

function urlOf(view) {
  if (view.mode === "text") return `/?${new URLSearchParams({ q: view.q })}`;
  if (view.mode === "similar") return `/?${new URLSearchParams({ like: view.similarId })}`;
  return "/";
}

// Show `view` and record it in the history (a new entry unless `replace`, or the URL is unchanged).
function navigate(view, { replace = false } = {}) {
  const entry = { mode: view.mode, q: view.q || "", similarId: view.similarId || null, name: view.name || null };
  if (view.mode === "image") entry.image = view.image;
  const url = urlOf(view);
  const same = view.mode !== "image" && url === location.pathname + location.search;
  const method = replace || same ? "replaceState" : "pushState";
  try {
    history[method](entry, "", url);
  } catch {
    delete entry.image; // a file the browser cannot keep in its history: the entry still records the view
    history[method](entry, "", url);
  }
  show(view);
}

function show(view) {
  startSearch(view.mode, view);
  const box = $("q");
  const note = $("query-note");
  box.placeholder = placeholder;
  if (view.mode === "text") {
    if (box.value.trim() !== view.q) box.value = view.q; // not while typing: that would move the caret
    note.replaceChildren();
    document.title = `${view.q} · glimpse`;
  } else {
    box.value = "";
    document.title = "glimpse";
  }
  if (view.mode === "recent") {
    // The recent list is not filtered (yet): say so rather than seem to ignore the filters.
    const filtered = $("folder").value || (state.features.tags && $("tag").value);
    note.textContent = filtered ? "Recently indexed images (the filters apply to searches)" : "Recently indexed images";
  }
  if (view.mode === "similar") labelSimilar(view.similarId, view.name);
  if (view.mode === "image") {
    const preview = document.createElement("img");
    preview.src = URL.createObjectURL(view.image);
    preview.alt = `query image ${view.image.name || ""}`.trim();
    note.replaceChildren("Images like ", preview);
    if (view.image.name) {
      note.append(nameLabel(view.image.name));
      box.placeholder = `More like ${view.image.name}`;
    }
  }
}

function nameLabel(name) {
  const label = document.createElement("span");
  label.className = "name";
  label.textContent = name;
  return label;
}

// "Images like NAME" above the results and in the query box, NAME being the image's file name.
async function labelSimilar(id, name) {
  const preview = document.createElement("img");
  preview.src = `/api/images/${id}/thumbnail`;
  preview.alt = "";
  $("query-note").replaceChildren("Images like ", preview);
  if (!name) {
    try {
      name = (await api(`/api/images/${id}`)).name;
    } catch {
      name = "this image";
    }
  }
  if (state.mode !== "similar" || state.similarId !== id) return; // another view took over meanwhile
  $("query-note").replaceChildren("Images like ", preview, nameLabel(name));
  $("q").placeholder = `More like ${name}`;
  document.title = `like ${name} · glimpse`;
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
    meta.append(name);
    if (state.mode !== "recent") { // the recent list has no scores
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = hit.score.toFixed(3);
      meta.append(score);
    }
    button.append(img, meta);
    if (hit.kind === "video") { // a video hit: where its best frame is; the viewer plays from there
      const at = document.createElement("span");
      at.className = "video-time";
      at.textContent = `▶ ${clock(hit.time || 0)}`;
      button.append(at);
    }
    if (hit.snippet) { // found (also) by the text in it: show the line that matched
      const snippet = document.createElement("span");
      snippet.className = "snippet";
      snippet.textContent = `“${hit.snippet}”`;
      button.append(snippet);
    }
    button.setAttribute("aria-label", state.mode === "recent" ? describe(hit) : `${describe(hit)}, score ${hit.score.toFixed(3)}`);
    button.addEventListener("click", () => openViewer(hit.id, hit.time));
    item.append(button);
    list.append(item);
  }
}

// 75.5 -> "1:15.5", 3725 -> "1:02:05": a time into a video as players show it.
function clock(seconds) {
  const tenths = Math.round(seconds * 10);
  const whole = Math.floor(tenths / 10);
  const h = Math.floor(whole / 3600), m = Math.floor((whole % 3600) / 60), s = whole % 60;
  const base = h ? `${h}:${String(m).padStart(2, "0")}:${String(s).padStart(2, "0")}` : `${m}:${String(s).padStart(2, "0")}`;
  return tenths % 10 ? `${base}.${tenths % 10}` : base;
}

function describe(hit) {
  const tags = (hit.tags || []).slice(0, 5).map((t) => t.label || t.tag).join(", ");
  return tags ? `${hit.name}: ${tags}` : hit.name;
}

// -- large view ---------------------------------------------------------------------------------------
async function openViewer(id, time = null) {
  let info;
  try {
    info = await api(`/api/images/${id}?lang=${state.lang}`);
  } catch (error) {
    setMessage(error.message, true);
    return;
  }
  $("viewer-title").textContent = info.name;
  showPicture(info, time);
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
  showMeta(info.meta || {});
  if (info.kind === "video") {
    $("viewer-boxes").replaceChildren();
    for (const el of document.querySelectorAll(".text-row")) el.hidden = true;
  } else {
    showText(id, info);
  }
  $("viewer-open").href = info.file;
  $("more-like-this").dataset.id = id;
  $("more-like-this").dataset.name = info.name;
  $("more-like-this").dataset.frames = JSON.stringify(info.kind === "video" ? (info.frames || []) : []);
  if (!$("viewer").open) $("viewer").showModal();
}

// A photo in the <img>; a video in the <video>, playing from ``time`` (its best frame), its frames listed below
// as thumbnails that seek to their time.
function showPicture(info, time) {
  const video = $("viewer-video"), image = $("viewer-image");
  const isVideo = info.kind === "video";
  video.hidden = !isVideo;
  image.hidden = isVideo;
  $("viewer-frames").replaceChildren();
  for (const el of document.querySelectorAll(".frames-row")) el.hidden = !isVideo || !(info.frames || []).length;
  showRow("duration", isVideo && info.meta && info.meta.duration != null ? clock(info.meta.duration) : "");
  if (!isVideo) {
    video.removeAttribute("src");
    video.load();
    image.src = info.file;
    image.alt = describe(info);
    return;
  }
  const start = time || 0;
  video.src = `${info.file}#t=${start}`;
  video.dataset.start = String(start);
  video.addEventListener("loadedmetadata", () => { video.currentTime = Number(video.dataset.start); }, { once: true });
  $("viewer-frames").replaceChildren(...(info.frames || []).map((frame) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "frame";
    button.dataset.time = String(frame.time);
    const thumb = document.createElement("img");
    thumb.src = frame.thumbnail;
    thumb.loading = "lazy";
    thumb.alt = `${info.name} at ${clock(frame.time)}`;
    const label = document.createElement("span");
    label.textContent = clock(frame.time);
    button.append(thumb, label);
    button.addEventListener("click", () => { video.currentTime = frame.time; });
    li.append(button);
    return li;
  }));
}

function showRow(name, text) {
  for (const el of document.querySelectorAll(`.${name}-row`)) el.hidden = !text;
  if (text) $(`viewer-${name}`).textContent = text;
}

function showMeta(meta) {
  const taken = meta.taken_local ? meta.taken_local.replace("T", " ") : "";
  const offset = meta.utc_offset == null ? "" : ` (UTC${meta.utc_offset >= 0 ? "+" : "−"}${
    String(Math.floor(Math.abs(meta.utc_offset) / 60)).padStart(2, "0")}:${String(Math.abs(meta.utc_offset) % 60).padStart(2, "0")})`;
  showRow("taken", taken && `${taken}${offset}${meta.taken_source === "mtime" ? " — file date, no capture date" : ""}`);
  showRow("camera", [meta.camera, meta.lens].filter(Boolean).join(" · "));
  showRow("place", meta.latitude == null ? "" : `${meta.latitude.toFixed(5)}, ${meta.longitude.toFixed(5)}`);
}

// The recognised lines beside the picture, and their boxes drawn over it (an SVG in image pixels, scaled with
// the picture by its viewBox).
async function showText(id, info) {
  const svg = $("viewer-boxes");
  svg.replaceChildren();
  $("viewer-text").replaceChildren();
  for (const el of document.querySelectorAll(".text-row")) el.hidden = true;
  let text;
  try {
    text = await api(`/api/images/${id}/text`);
  } catch (error) {
    return; // the picture and its facts stand without the text
  }
  if ($("more-like-this").dataset.id !== String(id) || !text.lines || !text.lines.length) return;
  if (info.width && info.height) svg.setAttribute("viewBox", `0 0 ${info.width} ${info.height}`);
  const ns = "http://www.w3.org/2000/svg";
  for (const line of text.lines) {
    const polygon = document.createElementNS(ns, "polygon");
    polygon.setAttribute("points", line.box.map(([x, y]) => `${x},${y}`).join(" "));
    polygon.setAttribute("class", "text-box");
    const title = document.createElementNS(ns, "title");
    title.textContent = line.text;
    polygon.append(title);
    svg.append(polygon);
    const item = document.createElement("li");
    item.textContent = line.text;
    item.title = `confidence ${line.confidence.toFixed(2)}`;
    $("viewer-text").append(item);
  }
  for (const el of document.querySelectorAll(".text-row")) el.hidden = false;
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
    `${status.images} images · ${status.videos && status.videos.videos ? `${status.videos.videos} videos · ` : ""}` +
    `${status.errors} failed · model ${status.model_key || status.model} · ` +
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
    $("job-label").textContent = (job.total ? `Indexing ${job.done} / ${job.total}` : "Indexing: scanning…") +
      (job.activity ? ` (${job.activity})` : "");
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
    if (state.mode === "recent" || !$("results").children.length) show(currentView());
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
  typing = false;
  navigate({ mode: "image", image: file });
}

function rerun() {
  if (state.mode === "recent") show({ mode: "recent" });
  else if (state.mode) startSearch(state.mode, { q: state.q, image: state.image, similarId: state.similarId });
}

function init() {
  placeholder = $("q").placeholder;
  let timer = null;
  $("q").addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const q = $("q").value.trim();
      if (!q || (state.mode === "text" && q === state.q)) return;
      navigate({ mode: "text", q }, { replace: typing });
      typing = true; // one history entry per typed query, not per pause while typing it
    }, DEBOUNCE_MS);
  });
  $("q").addEventListener("blur", () => { typing = false; });
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(timer);
    const q = $("q").value.trim();
    if (q) navigate({ mode: "text", q }, { replace: typing });
    typing = false;
  });
  window.addEventListener("popstate", () => {
    clearTimeout(timer);
    typing = false;
    if ($("viewer").open) $("viewer").close();
    show(currentView());
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
    let { id, name } = $("more-like-this").dataset;
    const frames = JSON.parse($("more-like-this").dataset.frames || "[]");
    if (frames.length) { // a video: more like the frame nearest the time it is at
      const now = $("viewer-video").currentTime || 0;
      id = frames.reduce((best, f) => (Math.abs(f.time - now) < Math.abs(best.time - now) ? f : best)).id;
    }
    $("viewer").close();
    typing = false;
    navigate({ mode: "similar", similarId: String(id), name });
  });
  $("folder").addEventListener("change", rerun);
  $("tag").addEventListener("change", rerun);
  for (const id of ["after", "before", "sort", "type"]) $(id).addEventListener("change", rerun);
  $("camera").addEventListener("change", rerun);
  for (const radio of document.querySelectorAll("input[name=lang]")) {
    radio.addEventListener("change", () => { state.lang = radio.value; loadTags(); rerun(); });
  }
  $("reindex").addEventListener("click", reindex);
  $("login").addEventListener("submit", login);
  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && state.more) loadPage();
  }, { rootMargin: "400px" }).observe($("sentinel"));
  refreshStatus();
  show(currentView()); // /?q=dog runs that search; a plain visit shows the recent images
}

document.addEventListener("DOMContentLoaded", init);
