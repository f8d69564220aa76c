// The build orchestrator's web page: sign in, upload, watch builds live. No build step.
const TOKEN_KEY = "wob-token";
const SKIP_DIRS = new Set(["node_modules", ".git"]);
const STEP_NAMES = { extract: "extracting files", install: "installing dependencies",
  lifecycle: "running the project's install scripts", typecheck: "type checking",
  serve: "starting the development server" };
const STOP_REASONS = { idle: "nobody used it for a while", expired: "it reached its maximum lifetime",
  replaced: "a newer build of this website is live", deleted: "its website was deleted",
  gc: "its container had stopped", "slept-out": "it slept longer than sleeping previews are kept",
  "disk-quota": "it wrote more than its disk quota", "engine-restart": "its container stopped and did not start again" };
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/g;

const $ = (sel, root = document) => root.querySelector(sel);
const view = $("#view");
let stopWatching = () => {};

const token = () => sessionStorage.getItem(TOKEN_KEY);

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options, headers: { ...(options.headers || {}), Authorization: `Bearer ${token()}` },
  });
  if (response.status === 401) { signOut(); throw new Error("Your token is no longer valid."); }
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) throw new Error(body?.detail || `${response.status} ${response.statusText}`);
  return body;
}

function show(templateId) {
  stopWatching();
  view.replaceChildren($(`#${templateId}`).content.cloneNode(true));
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  location.hash = "#/";
  route();
}

function seconds(value) {
  if (value == null) return "";
  const s = Math.max(0, Math.round(value));
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

function badge(el, status) {
  el.className = `badge ${status || ""}`;
  el.textContent = status || "unknown";
}

// -- sign in --------------------------------------------------------------------------

function renderSignIn() {
  show("sign-in");
  $("#sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const candidate = $("#token").value.trim();
    const box = $("#sign-in-error");
    box.hidden = true;
    let response = null;
    try {
      response = await fetch("/api/websites", { headers: { Authorization: `Bearer ${candidate}` } });
    } catch (error) { /* reported below */ }
    if (response?.ok) {
      sessionStorage.setItem(TOKEN_KEY, candidate);
      route();
      return;
    }
    box.textContent = response?.status === 401
      ? "That token was not accepted: check it and try again."
      : "The server could not be reached: try again in a moment.";
    box.hidden = false;
  });
}

// -- home: upload and the list --------------------------------------------------------

async function filesFromEntry(entry, path = "") {
  if (entry.isFile) {
    const file = await new Promise((ok, bad) => entry.file(ok, bad));
    return [{ file, path: path + file.name }];
  }
  if (SKIP_DIRS.has(entry.name)) return [];
  const reader = entry.createReader();
  const children = [];
  for (;;) {
    const batch = await new Promise((ok, bad) => reader.readEntries(ok, bad));
    if (!batch.length) break;
    children.push(...batch);
  }
  const nested = await Promise.all(children.map((c) => filesFromEntry(c, `${path}${entry.name}/`)));
  return nested.flat();
}

function keep(path) {
  return !path.split("/").some((part) => SKIP_DIRS.has(part));
}

function upload(items) {
  const state = $("#upload-state"), bar = $("#upload-bar"), text = $("#upload-text"), error = $("#upload-error");
  error.hidden = true;
  const files = items.filter((item) => keep(item.path));
  if (!files.length) { error.textContent = "Nothing to upload."; error.hidden = false; return; }
  const form = new FormData();
  for (const item of files) form.append("files", item.file, item.path);
  const name = $("#site-name").value.trim();
  if (name) form.append("name", name);
  const request = new XMLHttpRequest();
  request.open("POST", "/api/websites");
  request.setRequestHeader("Authorization", `Bearer ${token()}`);
  request.upload.onprogress = (event) => {
    if (!event.lengthComputable) return;
    const percent = Math.round((event.loaded / event.total) * 100);
    bar.style.width = `${percent}%`;
    text.textContent = `Uploading ${files.length} file${files.length > 1 ? "s" : ""}… ${percent}%`;
  };
  request.onload = () => {
    const body = JSON.parse(request.responseText || "{}");
    if (request.status !== 202) {
      state.hidden = true;
      error.textContent = body.detail || `Upload failed (${request.status})`;
      error.hidden = false;
      return;
    }
    location.hash = `#/builds/${body.website.buildJobId}`;
  };
  request.onerror = () => { state.hidden = true; error.textContent = "Upload failed: the server could not be reached."; error.hidden = false; };
  state.hidden = false;
  bar.style.width = "0";
  text.textContent = "Uploading…";
  request.send(form);
}

async function renderHome() {
  show("home");
  const drop = $("#drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", async (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const entries = [...event.dataTransfer.items].map((i) => i.webkitGetAsEntry?.()).filter(Boolean);
    const found = entries.length
      ? (await Promise.all(entries.map((e) => filesFromEntry(e)))).flat()
      : [...event.dataTransfer.files].map((file) => ({ file, path: file.name }));
    upload(found);
  });
  $("#pick-zip").addEventListener("change", (e) => upload([...e.target.files].map((file) => ({ file, path: file.name }))));
  $("#pick-folder").addEventListener("change", (e) =>
    upload([...e.target.files].map((file) => ({ file, path: file.webkitRelativePath || file.name }))));

  const list = $("#sites");
  try {
    const sites = await api("/api/websites");
    list.replaceChildren();
    if (!sites.length) list.innerHTML = '<li class="muted">No websites yet: upload one above.</li>';
    for (const site of sites) {
      const li = document.createElement("li");
      const link = document.createElement("a");
      link.href = `#/builds/${site.buildJobId}`;
      link.textContent = site.name;
      const meta = document.createElement("span");
      meta.className = "muted";
      meta.textContent = `${site.type} · ${new Date(site.createdAt).toLocaleString()}`;
      const status = document.createElement("span");
      badge(status, site.status);
      const left = document.createElement("div");
      left.append(link, document.createElement("br"), meta);
      li.append(left, status);
      list.append(li);
    }
  } catch (error) {
    list.innerHTML = "";
    const li = document.createElement("li");
    li.className = "error";
    li.textContent = error.message;
    list.append(li);
  }
}

// -- a build, live --------------------------------------------------------------------

// Server-Sent Events over fetch, so that the token travels in a header, never in a URL.
async function followEvents(jobId, onEvent, signal) {
  let lastId = null;
  for (let attempt = 0; attempt < 20 && !signal.aborted; attempt++) {
    try {
      const headers = { Authorization: `Bearer ${token()}` };
      if (lastId) headers["Last-Event-ID"] = lastId;
      const response = await fetch(`/api/builds/${jobId}/events`, { headers, signal });
      if (!response.ok) throw new Error(`events: ${response.status}`);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;  // the server ends the stream after the final status
        buffer += value.replace(/\r\n/g, "\n");
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const event = { type: "message", data: "" };
          for (const line of block.split("\n")) {
            const [field, ...rest] = line.split(":");
            const text = rest.join(":").replace(/^ /, "");
            if (field === "event") event.type = text;
            else if (field === "data") event.data += text;
            else if (field === "id") lastId = text;
          }
          if (event.data) onEvent(event.type, JSON.parse(event.data));
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      await new Promise((ok) => setTimeout(ok, 1000 * Math.min(attempt + 1, 5)));
    }
  }
}

async function renderBuild(jobId) {
  show("build");
  const controller = new AbortController();
  let timer = null;
  stopWatching = () => { controller.abort(); clearInterval(timer); };
  const log = $("#b-log"), bar = $("#b-bar");
  let stickToBottom = true;
  log.addEventListener("scroll", () => {
    stickToBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
    $("#b-follow").textContent = stickToBottom ? "" : "scrolled up: not following";
  });
  const appendLines = (lines) => {
    log.append(document.createTextNode(lines.map((l) => l.replace(ANSI, "")).join("\n") + "\n"));
    if (stickToBottom) log.scrollTop = log.scrollHeight;
  };

  let state;
  try {
    state = await api(`/api/builds/${jobId}/status`);
  } catch (error) {
    view.innerHTML = "";
    const p = document.createElement("p");
    p.className = "error card";
    p.textContent = error.message;
    view.append(p);
    return;
  }
  const record = await api(`/api/builds/${jobId}`);
  const site = await api(`/api/websites/${state.websiteId}`);
  $("#b-name").textContent = site.name;
  $("#b-meta").textContent = `${state.projectType} · build ${jobId.slice(0, 8)} · ${new Date(state.createdAt).toLocaleString()}`;
  $("#b-rebuild").addEventListener("click", async () => {
    $("#b-rebuild").disabled = true;
    try {
      const body = await api(`/api/websites/${state.websiteId}/rebuild`, { method: "POST" });
      location.hash = `#/builds/${body.website.buildJobId}`;
    } catch (error) { alert(error.message); $("#b-rebuild").disabled = false; }
  });

  $("#b-delete").addEventListener("click", async () => {
    if (!confirm(`Delete ${site.name}? Its preview stops and its files are removed; its builds stay in the history.`)) return;
    try {
      await api(`/api/websites/${state.websiteId}`, { method: "DELETE" });
      location.hash = "#/";
    } catch (error) { alert(error.message); }
  });

  $("#b-cancel").addEventListener("click", async () => {
    $("#b-cancel").disabled = true;
    try {
      Object.assign(state, await api(`/api/builds/${jobId}/cancel`, { method: "POST" }));
      paint();
    } catch (error) { alert(error.message); }
    $("#b-cancel").disabled = false;
  });

  const paint = () => {
    badge($("#b-badge"), state.status);
    $("#b-cancel").hidden = !["pending", "queued", "building"].includes(state.status);
    const wait = $("#b-wait");
    wait.hidden = !(state.status === "queued" && state.waitReason);
    wait.textContent = state.waitReason ? `${state.waitReason[0].toUpperCase()}${state.waitReason.slice(1)}` : "";
    bar.style.width = `${state.progress}%`;
    bar.parentElement.classList.toggle("done", state.status === "running");
    bar.parentElement.classList.toggle("failed", state.status === "failed");
    let step = state.currentStep || "";
    if (state.status === "queued" && state.queuePosition) step = `Queued: position ${state.queuePosition} in the queue`;
    $("#b-step strong").textContent = `${step} · ${state.progress}%`;
    const since = new Date(state.startedAt || state.createdAt);
    const end = state.completedAt ? new Date(state.completedAt) : new Date();
    let time = `elapsed ${seconds((end - since) / 1000)}`;
    if (!state.completedAt && state.estimatedTimeRemaining != null) time += ` · about ${seconds(state.estimatedTimeRemaining)} left`;
    $("#b-time").textContent = time;
    if (state.status === "cancelled") {
      $("#b-failure").hidden = false;
      $("#b-failure-title").textContent = "Build cancelled";
      $("#b-error").textContent = state.error || "";
      $("#b-failure-lines").textContent = "";
    }
    if (state.status === "failed") {
      $("#b-failure").hidden = false;
      const stepName = STEP_NAMES[state.errorStep] || state.errorStep || "the build";
      $("#b-failure-title").textContent = `Build failed while ${stepName}`;
      $("#b-error").textContent = state.error || "";
      $("#b-failure-lines").textContent = log.textContent.trimEnd().split("\n").slice(-15).join("\n");
    }
    if (state.status === "stopped") {
      $("#b-stopped").hidden = false;
      const why = STOP_REASONS[state.stopReason] || state.stopReason || "";
      $("#b-stopped-text").textContent = `This build's preview was stopped${why ? `: ${why}` : ""}. Rebuild to bring it back.`;
    }
    $("#b-sleeping").hidden = state.status !== "sleeping";
    if (state.status === "sleeping" && state.websiteUrl) {
      const wake = $("#b-wake-link");
      wake.href = wake.textContent = state.websiteUrl;
    }
    if (state.status === "running" && state.previewUrl) {
      $("#b-success").hidden = false;
      const link = $("#b-link");
      link.href = link.textContent = state.previewUrl;
      const site = $("#b-site-link");
      if (state.websiteUrl) site.href = site.textContent = state.websiteUrl;
      if ($("#b-frame").getAttribute("src") !== state.previewUrl) $("#b-frame").src = state.previewUrl;
      const check = state.editCheck;
      $("#b-check").hidden = !(check && ["failed", "error"].includes(check.status));
      if (check && !$("#b-check").hidden) {
        $("#b-check-title").textContent = `The type check of live edit ${check.edit} failed (the preview stays up)`;
        $("#b-check-lines").textContent = (check.errors || []).join("\n");
      }
    }
  };

  appendLines(record.logs);
  paint();
  let tick = 0;
  timer = setInterval(async () => {
    // a waiting build's place and reason change without events: ask every 3 s
    if (state.status === "queued" && ++tick % 3 === 0) {
      try { Object.assign(state, await api(`/api/builds/${jobId}/status`)); } catch (error) { /* next tick */ }
    }
    paint();
  }, 1000);
  if (["running", "sleeping", "failed", "cancelled", "stopped"].includes(state.status)) { clearInterval(timer); return; }

  let seenLog = false;
  await followEvents(jobId, (type, data) => {
    if (type === "log") {
      if (!seenLog) { log.textContent = ""; seenLog = true; }  // the stream replays the whole log
      appendLines([data.line]);
    } else if (type === "progress") {
      Object.assign(state, { progress: data.progress, currentStep: data.currentStep });
    } else if (type === "status") {
      Object.assign(state, data);
    }
    paint();
  }, controller.signal);
  if (controller.signal.aborted) return;
  // The stream has ended (or could not be followed): show the record as it is now.
  clearInterval(timer);
  state = await api(`/api/builds/${jobId}/status`);
  const final = await api(`/api/builds/${jobId}`);
  log.textContent = "";
  appendLines(final.logs);
  paint();
}

// -- routing --------------------------------------------------------------------------

function route() {
  $("#sign-out").hidden = !token();
  if (!token()) return renderSignIn();
  const build = location.hash.match(/^#\/builds\/([\w-]+)/);
  return build ? renderBuild(build[1]) : renderHome();
}

$("#sign-out").addEventListener("click", signOut);
window.addEventListener("hashchange", route);
route();
