// The page of `aishorts-runner serve`: a form, the queue, live stage bars. Plain JS, no build step.
"use strict";

const token = new URLSearchParams(location.search).get("token");
const tasks = new Map();      // task_id -> task object from the API
const timelines = new Map();  // task_id -> [[t, rss], ...]
let warnFraction = 0.85;

function withToken(url) {
  if (!token) return url;
  return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
}

async function api(method, url, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  if (token) options.headers["Authorization"] = "Bearer " + token;
  const response = await fetch(url, options);
  const data = await response.json().catch(() => ({ message: response.statusText }));
  if (response.status === 401) {
    document.getElementById("server-memory").textContent = "this server needs its token: open /?token=YOUR_TOKEN";
  }
  if (!response.ok) {
    throw Object.assign(new Error(data.message || response.statusText), { field: data.field, status: response.status });
  }
  return data.data;
}

function size(bytes) {
  if (bytes === null || bytes === undefined || bytes <= 0) return "-";
  const units = [["G", 2 ** 30], ["M", 2 ** 20], ["K", 2 ** 10]];
  for (const [unit, factor] of units) {
    if (bytes >= factor) return unit === "G" ? (bytes / factor).toFixed(2) + unit : Math.round(bytes / factor) + unit;
  }
  return bytes + "B";
}

// the form

function chosenWhat() {
  return document.querySelector("input[name=what]:checked").value;
}

function showWhat() {
  for (const box of document.querySelectorAll(".what")) box.hidden = !box.classList.contains("what-" + chosenWhat());
}

function formRequest() {
  const value = (id) => document.getElementById(id).value.trim();
  const request = {};
  const what = chosenWhat();
  if (what === "topic" && value("topic")) request.topic = value("topic");
  if (what === "category" && value("category")) request.category = value("category");
  if (what === "script") request.script = document.getElementById("script").value;
  const terms = value("broll_term").split(/[,，、]/).map((s) => s.trim()).filter(Boolean);
  if (terms.length) request.broll_term = terms;
  for (const field of ["platform", "language", "voice", "max_ram", "pipeline"]) {
    if (value(field)) request[field] = value(field);
  }
  request.music = document.getElementById("music").checked;
  Object.assign(request, lookAndSound());
  const limits = {};
  for (const part of value("limits").split(",").map((s) => s.trim()).filter(Boolean)) {
    const [stage, ceiling] = part.split("=").map((s) => s.trim());
    limits[stage] = ceiling === undefined ? "" : ceiling;
  }
  if (Object.keys(limits).length) request.limits = limits;
  return request;
}

// Frame, captions and sound: every input with a data-field is the schema field it names. A checkbox is sent when
// turned off (they are on by default), a list when a choice is made, a number or colour once the person changed it.
const uploaded = { music: null, folder: null, folderId: null };

function lookAndSound() {
  const request = {};
  for (const input of document.querySelectorAll("[data-field]")) {
    const name = input.dataset.field;
    if (input.type === "checkbox") {
      if (!input.checked) request[name] = false;
    } else if (input.value !== "" && (input.tagName === "SELECT" || input.dataset.changed === "1")) {
      request[name] = ["number", "range"].includes(input.type) ? Number(input.value) : input.value;
    }
  }
  if (uploaded.music) request.music_file = uploaded.music;
  if (uploaded.folder) request.broll_dir = uploaded.folder;
  return request;
}

// The person's own files go to the server (POST /api/v1/uploads, the file itself as the body) as soon as chosen;
// the request then names the track (music_file) or the folder of clips and pictures (broll_dir).
async function uploadFile(file, folderId) {
  const params = new URLSearchParams({ name: file.name });
  if (folderId) params.set("folder", folderId);
  const headers = { "Content-Type": file.type || "application/octet-stream" };
  if (token) headers["Authorization"] = "Bearer " + token;
  const response = await fetch("/api/v1/uploads?" + params, { method: "POST", headers, body: file });
  const data = await response.json().catch(() => ({ message: response.statusText }));
  if (!response.ok) throw new Error(data.message || response.statusText);
  return data.data;
}

async function uploadMusic() {
  const input = document.getElementById("music_upload");
  const status = document.getElementById("music_upload_status");
  uploaded.music = null;
  if (!input.files.length) { status.textContent = ""; return; }
  status.textContent = "uploading…";
  try {
    const data = await uploadFile(input.files[0]);
    uploaded.music = data.file;
    status.textContent = `${data.name} (${size(data.size)}) ✓`;
    status.dataset.state = "done";
  } catch (err) {
    status.textContent = "not uploaded: " + err.message;
    status.dataset.state = "failed";
  }
}

async function uploadClips() {
  const input = document.getElementById("clips_upload");
  const status = document.getElementById("clips_upload_status");
  uploaded.folder = uploaded.folderId = null;
  status.dataset.state = "";
  let count = 0;
  try {
    for (const file of input.files) {
      status.textContent = `uploading ${file.name}…`;
      const data = await uploadFile(file, uploaded.folderId);
      uploaded.folderId = data.folder_id;
      uploaded.folder = data.folder;
      count += 1;
    }
    status.textContent = count ? `${count} file${count > 1 ? "s" : ""} ✓` : "";
    status.dataset.state = "done";
  } catch (err) {
    status.textContent = "not uploaded: " + err.message;
    status.dataset.state = "failed";
  }
}

function watchLookAndSound() {
  for (const input of document.querySelectorAll("[data-field]")) {
    input.addEventListener("input", () => { input.dataset.changed = "1"; });
  }
  const volume = document.getElementById("music_volume");
  volume.addEventListener("input", () => { document.getElementById("music_volume_shown").textContent = volume.value; });
  document.getElementById("music_upload").addEventListener("change", uploadMusic);
  document.getElementById("clips_upload").addEventListener("change", uploadClips);
}

// A voice preview: the tts stage alone says one sentence (POST /api/v1/audio), the page plays it, the task goes.
const SAMPLES = {
  "en-us": "Hello! This is how I sound when I narrate your short.",
  "en-gb": "Hello! This is how I sound when I narrate your short.",
  "es": "¡Hola! Así suena mi voz cuando narro tu vídeo.",
  "fr-fr": "Bonjour ! Voici ma voix quand je raconte ta vidéo.",
  "hi": "नमस्ते! आपका वीडियो सुनाते समय मेरी आवाज़ ऐसी लगती है।",
  "it": "Ciao! Ecco come suona la mia voce quando racconto il tuo video.",
  "ja": "こんにちは。これが私の声です。",
  "pt-br": "Olá! É assim que soa a minha voz quando narro o seu vídeo.",
  "zh": "你好！这就是我为你的视频配音时的声音。",
};
const previews = new Set();

async function previewVoice() {
  const button = document.getElementById("preview-voice");
  const player = document.getElementById("voice-sample");
  const language = document.getElementById("language").value || "en-us";
  const request = { video_script: SAMPLES[language] || SAMPLES["en-us"], language, music: false };
  const voice = document.getElementById("voice").value;
  if (voice) request.voice = voice;
  button.disabled = true;
  button.textContent = "Preparing…";
  let taskId = null;
  try {
    taskId = (await api("POST", "/api/v1/audio", request)).task_id;
    previews.add(taskId);
    forget(taskId);
    let task;
    do {
      await new Promise((resolve) => setTimeout(resolve, 500));
      task = await api("GET", `/api/v1/tasks/${encodeURIComponent(taskId)}`);
    } while (task.state === 4);
    if (task.state !== 1 || !task.audio_file) throw new Error(task.message || "the narrator could not say it");
    const sample = await fetch(withToken(task.audio_file));
    player.src = URL.createObjectURL(await sample.blob());  // kept here: the task and its files go now
    player.hidden = false;
    player.play().catch(() => { /* autoplay refused: the controls are there */ });
  } catch (err) {
    const error = document.getElementById("form-error");
    error.textContent = "voice preview: " + err.message;
    error.hidden = false;
  } finally {
    if (taskId) await api("DELETE", `/api/v1/tasks/${encodeURIComponent(taskId)}`).catch(() => {});
    button.disabled = false;
    button.textContent = "Preview";
  }
}

// Script first: the theme and script stages alone write the narration (POST /api/v1/scripts); it lands in the
// script box, its b-roll terms in theirs, to be edited, and "Make the short" then renders those words.
async function writeScriptFirst() {
  const error = document.getElementById("form-error");
  const status = document.getElementById("write-status");
  const button = document.getElementById("write-script");
  error.hidden = true;
  const request = formRequest();
  delete request.pipeline;  // the product's own theme and script stages write it
  button.disabled = true;
  status.textContent = "writing the script…";
  try {
    const data = await api("POST", "/api/v1/scripts", request);
    document.getElementById("script").value = data.video_script;
    document.getElementById("broll_term").value = (data.video_terms || []).join(", ");  // to edit beside it
    document.querySelector("input[name=what][value=script]").checked = true;
    showWhat();
    status.textContent = "";
    document.getElementById("script").focus();
  } catch (err) {
    status.textContent = "";
    error.textContent = (err.field ? err.field + ": " : "") + err.message;
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
}

// Variants: the same request once per variant, each with its own seed (a topic's or category's script, and so
// its b-roll, differ); a script of the person's own is one short, whatever the count says.
const MAX_VARIANTS = 5;

function variantRequests(request) {
  const input = document.getElementById("variants");
  const count = Math.min(MAX_VARIANTS, Math.max(1, parseInt(input.value, 10) || 1));
  if (count === 1) return [request];
  if (request.script !== undefined) {
    const error = new Error("variants are written from a topic or a category; your own script makes one short");
    error.field = "variants";
    throw error;
  }
  const first = Math.floor(Math.random() * 1_000_000_000);
  return Array.from({ length: count }, (_, index) => ({ ...request, seed: first + index }));
}

async function submitForm(event) {
  event.preventDefault();
  const error = document.getElementById("form-error");
  error.hidden = true;
  for (const el of document.querySelectorAll(".invalid")) el.classList.remove("invalid");
  const button = document.getElementById("submit");
  button.disabled = true;
  try {
    for (const request of variantRequests(formRequest())) {
      const data = await api("POST", "/api/v1/videos", request);
      upsertTask(data.task);
    }
  } catch (err) {
    error.textContent = (err.field ? err.field + ": " : "") + err.message;
    error.hidden = false;
    const input = err.field && document.getElementById(err.field);
    if (input) input.classList.add("invalid");
  } finally {
    button.disabled = false;
  }
}

// the queue

function card(taskId) {
  let li = document.querySelector(`li.task[data-task-id="${CSS.escape(taskId)}"]`);
  if (!li) {
    li = document.getElementById("task-template").content.firstElementChild.cloneNode(true);
    li.dataset.taskId = taskId;
    li.querySelector(".cancel").addEventListener("click", () => act("DELETE", taskId, ""));
    li.querySelector(".delete").addEventListener("click", () => removeTask(taskId));
    const queue = document.getElementById("queue");
    queue.prepend(li);
    document.getElementById("queue-empty").hidden = true;
  }
  return li;
}

async function act(method, taskId, suffix, body) {
  try {
    upsertTask(await api(method, `/api/v1/tasks/${encodeURIComponent(taskId)}${suffix}`, body));
  } catch (err) {
    const li = card(taskId);
    li.querySelector(".message").textContent = err.message;
  }
}

// DELETE of a stopped task removes it and its files on the server; its card goes with it
async function removeTask(taskId) {
  try {
    await api("DELETE", `/api/v1/tasks/${encodeURIComponent(taskId)}`);
  } catch (err) {
    if (err.status !== 404) {
      card(taskId).querySelector(".message").textContent = err.message;
      return;
    }
  }
  forget(taskId);
}

// Deleted tasks, for a while: a list answer or an event sent before the deletion but read after it must not bring
// the card back (the script-first task is deleted while the page may be resyncing).
const gone = new Map();
const GONE_MS = 60000;

function forget(taskId) {
  gone.set(taskId, Date.now());
  tasks.delete(taskId);
  timelines.delete(taskId);
  const li = document.querySelector(`li.task[data-task-id="${CSS.escape(taskId)}"]`);
  if (li) li.remove();
  document.getElementById("queue-empty").hidden = document.querySelectorAll("li.task").length > 0;
}

function upsertTask(task) {
  if (previews.has(task.task_id)) return;  // a voice preview is not a short: no card
  if (Date.now() - (gone.get(task.task_id) || -Infinity) < GONE_MS) return;
  const previous = tasks.get(task.task_id);
  // an older view of the task (an action's answer overtaken by the event of what followed) never undoes a newer one
  if (previous && (task.revision || 0) < (previous.revision || 0)) return;
  tasks.set(task.task_id, task);
  if (task.timeline) timelines.set(task.task_id, task.timeline.map((s) => [s[0], s[1]]));
  if (previous && previous.status !== "running" && task.status === "running") timelines.set(task.task_id, []);
  if (task.warn_fraction) warnFraction = task.warn_fraction;
  render(task);
  if (previous && previous.status !== task.status && ["done", "oom", "failed", "interrupted"].includes(task.status)) {
    loadTimeline(task.task_id);
  }
}

async function loadTimeline(taskId) {
  try {
    const full = await api("GET", `/api/v1/tasks/${encodeURIComponent(taskId)}`);
    timelines.set(taskId, (full.timeline || []).map((s) => [s[0], s[1]]));
    drawTimeline(taskId);
  } catch (err) { /* the card keeps what it has */ }
}

function render(task) {
  const li = card(task.task_id);
  li.className = "task " + task.status;
  li.dataset.status = task.status;
  li.dataset.state = task.state;
  li.querySelector(".task-title").textContent = task.title;
  li.querySelector(".task-title").title = task.task_id;
  const badge = li.querySelector(".badge");
  badge.textContent = task.status;
  badge.className = "badge " + task.status;
  li.querySelector(".percent").textContent = task.progress + "%";
  li.querySelector(".progress-fill").style.width = task.progress + "%";
  li.querySelector(".cancel").hidden = !["queued", "running"].includes(task.status);
  li.querySelector(".delete").hidden = ["queued", "running"].includes(task.status);
  renderStages(li, task);
  li.querySelector(".message").textContent = task.message || "";
  renderActions(li, task);
  renderResult(li, task);
  renderSources(li, task);
  li.querySelector(".rerun").textContent = task.rerun_command ? "CLI: " + task.rerun_command : "";
  drawTimeline(task.task_id);
}

function renderStages(li, task) {
  const list = li.querySelector(".stages");
  if (list.children.length !== task.stages.length) {
    list.replaceChildren(...task.stages.map((stage) => {
      const item = document.createElement("li");
      item.className = "stage";
      item.dataset.stage = stage.name;
      item.innerHTML = '<div class="name"></div><div class="bar"><div class="fill"></div></div><div class="numbers"></div>';
      return item;
    }));
  }
  task.stages.forEach((stage, index) => updateStage(list.children[index], stage));
}

function updateStage(item, stage) {
  const live = stage.status === "running" || stage.status === "waiting";
  const rss = live ? stage.rss_bytes : stage.peak_rss_bytes;
  const ceiling = stage.ceiling_bytes;
  const share = ceiling > 0 ? Math.min(1, rss / ceiling) : 0;
  let level = "";  // an OOM is red by its status; amber marks a stage past the warning fraction of its ceiling
  if (!["oom", "failed"].includes(stage.status) && ceiling > 0 && rss >= warnFraction * ceiling) level = " warn";
  item.className = "stage " + stage.status + level;
  item.dataset.status = stage.status;
  item.dataset.rss = rss;
  item.dataset.ceiling = ceiling;
  item.querySelector(".fill").style.width = (100 * share).toFixed(1) + "%";
  // when it ran, on the run's clock: stages whose spans overlap ran side by side
  const span = stage.started_at_s == null ? "" : " · " + stage.started_at_s.toFixed(1) + "–" +
    (stage.ended_at_s == null ? "" : stage.ended_at_s.toFixed(1)) + " s";
  item.querySelector(".name").textContent = stage.name + " · " + stage.status + span;
  const detail = stage.status === "running" && stage.fraction !== null ? " · " + Math.round(100 * stage.fraction) + "%" : "";
  const label = live ? size(rss) + " / " + size(ceiling) : "peak " + size(stage.peak_rss_bytes) + " / " + size(ceiling);
  item.querySelector(".numbers").textContent = label + detail;
  item.title = stage.message || stage.detail || "";
}

function renderActions(li, task) {
  const actions = li.querySelector(".actions");
  actions.replaceChildren();
  if (!task.resumable) return;
  const button = document.createElement("button");
  button.type = "button";
  button.className = "resume";
  const stage = task.failed_stage;
  if (task.status === "oom" && Object.keys(task.suggested_limits).length) {
    const more = task.suggested_limits[stage];
    button.textContent = more ? `Resume with more memory for ${stage} (${more})` : `Resume ${stage}`;
    const body = { limits: task.suggested_limits };
    if (task.suggested_max_ram) body.max_ram = task.suggested_max_ram;
    button.addEventListener("click", () => act("POST", task.task_id, "/resume", body));
  } else {
    button.textContent = stage ? `Resume from ${stage}` : "Resume";
    button.addEventListener("click", () => act("POST", task.task_id, "/resume", {}));
  }
  actions.append(button);
}

function renderResult(li, task) {
  const result = li.querySelector(".result");
  const files = task.files || {};
  const key = task.status + "|" + Object.keys(files).join(",") + "|" + (task.videos || []).length;
  if (result.dataset.key === key) return;  // keep a playing video playing
  result.dataset.key = key;
  result.replaceChildren();
  if (task.status === "done" && files["final.mp4"]) {
    const video = document.createElement("video");
    video.controls = true;
    video.preload = "metadata";
    video.src = withToken(files["final.mp4"]);
    if (files["captions.vtt"]) {
      const track = document.createElement("track");
      // off by default: the renderer burns the captions in; the track is for players and screen readers
      Object.assign(track, { kind: "captions", label: "captions", srclang: "en" });
      track.src = withToken(files["captions.vtt"]);
      video.append(track);
    }
    if (files["thumbnail.jpg"]) video.poster = withToken(files["thumbnail.jpg"]);
    result.append(video);
  }
  for (const name of ["final.mp4", "captions.srt", "thumbnail.jpg", "memory.svg", "report.json"]) {
    if (!files[name]) continue;
    const link = document.createElement("a");
    link.href = withToken(files[name] + "?download=1");
    link.textContent = name;
    link.download = `${task.task_id}-${name}`;
    result.append(link);
  }
  // A task of several videos (MoneyPrinterTurbo's video_count, from the API): the first plays above, the others here
  (task.videos || []).slice(1).forEach((url, index) => {
    const link = document.createElement("a");
    link.href = withToken(url);
    link.textContent = `video ${index + 2}`;
    link.download = `${task.task_id}-final-${index + 2}.mp4`;
    link.className = "more-video";
    result.append(link);
  });
}

// What the script retells: "grounded in N sources" or "not grounded: facts unchecked", and each source with its
// licence and credit, as sources.txt beside the short says (shown once the script is written)
function renderSources(li, task) {
  const box = li.querySelector(".sources-box");
  const sources = task.sources || [];
  const key = (task.grounding || "") + "|" + sources.map((s) => s.origin).join("|") + "|" + !!(task.files || {})["sources.txt"];
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  box.hidden = !task.grounding;
  const line = box.querySelector(".grounding");
  line.textContent = task.grounding || "";
  line.className = "grounding " + (sources.length ? "grounded" : "not-grounded");
  box.querySelector(".sources-title").hidden = !sources.length;
  box.querySelector(".sources").replaceChildren(...sources.map((source) => {
    const item = document.createElement("li");
    item.className = "source";
    const title = document.createElement(source.url ? "a" : "span");
    title.className = "source-title";
    title.textContent = source.title;
    if (source.url) Object.assign(title, { href: source.url, target: "_blank", rel: "noopener noreferrer" });
    item.append(title);
    if (!source.url) item.append(" (" + source.origin + ")");
    if (source.licence) {
      const licence = document.createElement(source.licence_url ? "a" : "span");
      licence.className = "licence";
      licence.textContent = source.licence;
      if (source.licence_url) Object.assign(licence, { href: source.licence_url, target: "_blank", rel: "noopener noreferrer" });
      item.append(" · ", licence);
    }
    if (source.credit) {
      const credit = document.createElement("div");
      credit.className = "credit";
      credit.textContent = "Credit: " + source.credit;
      item.append(credit);
    }
    return item;
  }));
  const file = (task.files || {})["sources.txt"];
  if (file && sources.length) {
    const item = document.createElement("li");
    item.className = "sources-file";
    const link = document.createElement("a");
    link.href = withToken(file + "?download=1");
    link.textContent = "sources.txt";
    link.download = `${task.task_id}-sources.txt`;
    item.append(link);
    box.querySelector(".sources").append(item);
  }
}

function drawTimeline(taskId) {
  const li = card(taskId);
  const task = tasks.get(taskId);
  const samples = timelines.get(taskId) || [];
  const svg = li.querySelector(".timeline");
  const running = task && task.stages.find((s) => s.status === "running");
  const ceilings = task ? task.stages.map((s) => s.ceiling_bytes) : [];
  const top = Math.max(1, ...samples.map((s) => s[1]), running ? running.ceiling_bytes : 0) * 1.1;
  const end = Math.max(1, ...samples.map((s) => s[0]));
  const points = samples.map(([t, rss]) => `${(600 * t / end).toFixed(1)},${(90 - 90 * rss / top).toFixed(1)}`);
  svg.querySelector(".rss-line").setAttribute("points", points.join(" "));
  const line = svg.querySelector(".ceiling-line");
  const ceiling = running ? running.ceiling_bytes : 0;
  line.style.display = ceiling ? "" : "none";
  line.setAttribute("y1", (90 - 90 * ceiling / top).toFixed(1));
  line.setAttribute("y2", (90 - 90 * ceiling / top).toFixed(1));
  svg.style.display = samples.length || ceilings.some(Boolean) ? "" : "none";
}

// live events

function onSample(event) {
  const data = JSON.parse(event.data);
  const task = tasks.get(data.task_id);
  if (!task) return;
  const stage = task.stages.find((s) => s.name === data.stage);
  if (stage) {
    Object.assign(stage, { rss_bytes: data.rss_bytes, peak_rss_bytes: data.peak_rss_bytes, ceiling_bytes: data.ceiling_bytes });
    if (stage.status === "pending" || stage.status === "waiting") stage.status = "running";
    const item = card(data.task_id).querySelector(`.stage[data-stage="${CSS.escape(data.stage)}"]`);
    if (item) updateStage(item, stage);
  }
  const series = timelines.get(data.task_id) || [];
  series.push([data.t, data.rss_bytes]);
  timelines.set(data.task_id, series);
  drawTimeline(data.task_id);
}

function onProgress(event) {
  const data = JSON.parse(event.data);
  const task = tasks.get(data.task_id);
  if (!task) return;
  task.progress = data.progress;
  const stage = task.stages.find((s) => s.name === data.stage);
  if (stage) Object.assign(stage, { fraction: data.fraction, detail: data.detail });
  const li = card(data.task_id);
  li.querySelector(".percent").textContent = task.progress + "%";
  li.querySelector(".progress-fill").style.width = task.progress + "%";
  const item = li.querySelector(`.stage[data-stage="${CSS.escape(data.stage)}"]`);
  if (item && stage) updateStage(item, stage);
  if (data.detail) logLine(li, `${data.stage}: ${data.detail}`);
}

// The latest stage messages of a running job, newest last, beside its memory bars
const LOG_LINES = 6;

function logLine(li, text) {
  const log = li.querySelector(".log");
  if (log.lastElementChild && log.lastElementChild.textContent === text) return;
  const line = document.createElement("li");
  line.textContent = text;
  log.append(line);
  while (log.children.length > LOG_LINES) log.firstElementChild.remove();
}

const RESYNC_MS = 10000;

function listen() {
  const source = new EventSource(withToken("/api/v1/events"));
  source.addEventListener("task", (event) => upsertTask(JSON.parse(event.data)));
  source.addEventListener("sample", onSample);
  source.addEventListener("progress", onProgress);
  source.addEventListener("deleted", (event) => forget(JSON.parse(event.data).task_id));
  source.addEventListener("open", () => loadTasks());  // after a reconnect, catch up on what was missed
  // and while something runs, now and then, in case an event was lost on the way (the newest view wins anyway)
  setInterval(() => {
    if ([...tasks.values()].some((task) => ["queued", "running"].includes(task.status))) loadTasks().catch(() => {});
  }, RESYNC_MS);
}

async function loadTasks() {
  // Only a task known before the list was asked for can be missing from it because it was deleted: one submitted
  // while the answer was on its way is simply newer than the list.
  const known = new Set(tasks.keys());
  const data = await api("GET", "/api/v1/tasks?page_size=200");
  const listed = new Set(data.tasks.map((task) => task.task_id));
  for (const taskId of known) if (tasks.has(taskId) && !listed.has(taskId)) forget(taskId);  // deleted elsewhere
  for (const task of data.tasks.slice().reverse()) {
    const known = tasks.has(task.task_id);
    upsertTask(task);
    // a finished card shows its run's memory over time too, not only one watched while it ran
    if (!known && !["queued", "running"].includes(task.status)) loadTimeline(task.task_id);
  }
}

// The voices installed for each language (GET /api/v1/voices), the voice list following the language chosen.
let voicesByLanguage = new Map();

async function loadVoices() {
  try {
    voicesByLanguage = new Map((await api("GET", "/api/v1/voices")).map((lang) => [lang.code, lang]));
  } catch (err) { /* the language's own voice is still offered */ }
  showVoices();
}

function showVoices() {
  const select = document.getElementById("voice");
  const lang = voicesByLanguage.get(document.getElementById("language").value || "en-us");
  const voices = lang ? lang.voices.map((v) => v.name) : [];
  const own = lang ? `the language's own (${lang.default})` : "the language's own";
  select.replaceChildren(new Option(own, ""), ...voices.map((name) => new Option(name, name)));
}

// Each field of the request schema (GET /api/v1/schema) without its "or null": its type, enum, limits, help.
function schemaFields(schema) {
  const request = schema.$defs ? schema.$defs[schema.$ref.split("/").pop()] : schema;
  const fields = {};
  for (const [name, prop] of Object.entries(request.properties)) {
    fields[name] = (prop.anyOf || [prop]).find((p) => p.type !== "null") || prop;
  }
  return fields;
}

async function loadOptions() {
  const [schema, options] = await Promise.all([api("GET", "/api/v1/schema"), api("GET", "/api/v1/options")]);
  const fields = schemaFields(schema);
  const fill = (id, values, blank) => {
    const select = document.getElementById(id);
    select.replaceChildren(...(blank ? [new Option(blank, "")] : []), ...values.map((v) => new Option(v, v)));
  };
  // Every input of the form named after a schema field takes its help, choices and limits from the schema,
  // so the page never offers what the stages refuse.
  for (const [name, field] of Object.entries(fields)) {
    const input = document.getElementById(name);
    if (!input) continue;
    if (field.description) input.title = field.description;
    const blank = { category: "random", language: "the default (en-us)", aspect: "the default (9:16)",
                    caption_position: "the default (bottom)" }[name] || "";
    if (field.enum && input.tagName === "SELECT") fill(name, field.enum, blank);
    if (field.maxLength && "maxLength" in input) input.maxLength = field.maxLength;
    if (field.pattern && input.tagName === "INPUT") input.pattern = field.pattern;
    if (field.minimum !== undefined && "min" in input) input.min = field.minimum;
    if (field.maximum !== undefined && "max" in input) input.max = field.maximum;
  }
  if (options.pipelines.length) {
    fill("pipeline", options.pipelines, "the product's stages");
    document.getElementById("pipeline-box").hidden = false;
  }
}

async function showServer() {
  try {
    const server = await api("GET", "/api/v1/server");
    const budget = server.max_ram_bytes ? " of " + size(server.max_ram_bytes) : "";
    document.getElementById("server-memory").textContent =
      `server ${size(server.rss_bytes)} · everything ${size(server.total_rss_bytes)}${budget} · ` +
      `${server.running} running, ${server.queued} queued, ${server.jobs} at a time`;
  } catch (err) {
    if (err.field !== "token") document.getElementById("server-memory").textContent = "server unreachable: " + err.message;
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  for (const radio of document.querySelectorAll("input[name=what]")) radio.addEventListener("change", showWhat);
  document.getElementById("video-form").addEventListener("submit", submitForm);
  document.getElementById("write-script").addEventListener("click", writeScriptFirst);
  document.getElementById("preview-voice").addEventListener("click", previewVoice);
  watchLookAndSound();
  showWhat();
  await loadOptions();
  document.getElementById("language").addEventListener("change", showVoices);
  await loadVoices();
  await loadTasks();
  listen();
  showServer();
  setInterval(showServer, 2000);
});
