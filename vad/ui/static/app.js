// The review page: the events list from /api/events, then every new event from /api/stream (SSE).
"use strict";

const MAX_ROWS = 500;
const rows = new Map(); // event_id -> the latest row of that episode
const cameras = new Map(); // camera_id -> {state, snapshot, ...}
let selected = null;
let source = null;

const $ = (sel) => document.querySelector(sel);

function fmtTime(ms) {
  return ms == null ? "" : new Date(ms).toISOString().replace("T", " ").slice(0, 19);
}

function fmtDuration(ms) {
  return ms == null ? "" : (ms / 1000).toFixed(1) + " s";
}

function keep(row) {
  // Events of one episode can come twice (the list and the stream overlap): the higher seq wins.
  const cur = rows.get(row.event_id);
  if (cur && cur.seq > row.seq) return false;
  if (cur && row.acked === undefined) row.acked = cur.acked;
  rows.set(row.event_id, row);
  return true;
}

function noteCamera(row) {
  const cam = cameras.get(row.camera_id) || { camera_id: row.camera_id, snapshot: false };
  if (!cam.ts_ms || row.ts_ms >= cam.ts_ms) {
    cam.state = row.phase === "close" ? "normal" : "anomaly";
    cam.ts_ms = row.ts_ms;
    cam.last_event_id = row.event_id;
  }
  cameras.set(row.camera_id, cam);
}

function option(select, value) {
  if (![...select.options].some((o) => o.value === value)) {
    const o = document.createElement("option");
    o.value = o.textContent = value;
    select.appendChild(o);
  }
}

function renderCameras() {
  const ul = $("#cameras");
  ul.replaceChildren();
  for (const cam of [...cameras.values()].sort((a, b) => a.camera_id.localeCompare(b.camera_id))) {
    const li = document.createElement("li");
    li.dataset.camera = cam.camera_id;
    li.className = cam.state || "unknown";
    li.textContent = cam.camera_id;
    const st = document.createElement("span");
    st.className = "state";
    st.textContent = cam.state || "no events";
    li.appendChild(st);
    li.onclick = () => { $("#camera-filter").value = cam.camera_id; renderRows(); };
    ul.appendChild(li);
    option($("#camera-filter"), cam.camera_id);
  }
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function renderRows() {
  const camera = $("#camera-filter").value;
  const kind = $("#kind-filter").value;
  const all = [...rows.values()].sort((a, b) => b.ts_ms - a.ts_ms || (a.event_id < b.event_id ? 1 : -1));
  for (const r of all.slice(MAX_ROWS)) rows.delete(r.event_id);
  const shown = all.slice(0, MAX_ROWS).filter((r) => (!camera || r.camera_id === camera) && (!kind || r.kind === kind));
  const body = $("#events tbody");
  body.replaceChildren();
  for (const r of shown) {
    const tr = document.createElement("tr");
    Object.assign(tr.dataset, { eventId: r.event_id, seq: r.seq, camera: r.camera_id, kind: r.kind, phase: r.phase });
    tr.dataset.acked = r.acked ? "true" : "false";
    if (r.acked) tr.classList.add("acked");
    if (r.event_id === selected) tr.classList.add("selected");
    cell(tr, r.event_id.slice(0, 12), "id").title = r.event_id;
    cell(tr, r.camera_id);
    cell(tr, r.kind);
    cell(tr, r.phase, "phase-" + r.phase);
    cell(tr, fmtTime(r.start_ts_ms));
    cell(tr, r.peak_score == null ? "" : r.peak_score.toFixed(3));
    cell(tr, fmtDuration(r.duration_ms));
    const td = cell(tr, "");
    const b = document.createElement("button");
    b.className = "ack";
    b.textContent = r.acked ? "acked" : "ack";
    b.disabled = !!r.acked;
    b.onclick = (ev) => { ev.stopPropagation(); ack(r.event_id); };
    td.appendChild(b);
    tr.onclick = () => select(r.event_id);
    body.appendChild(tr);
  }
  $("#count").textContent = `${shown.length} of ${rows.size} events`;
}

function colour(v) {
  // Low scores transparent blue-ish, high ones opaque red.
  const t = Math.max(0, Math.min(1, v));
  return `rgba(${Math.round(255 * t)}, ${Math.round(80 * (1 - t))}, ${Math.round(255 * (1 - t))}, ${0.15 + 0.6 * t})`;
}

function drawHeatmap(r) {
  const canvas = $("#heatmap");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const img = $("#snapshot");
  const cam = cameras.get(r.camera_id);
  if (cam && cam.snapshot) {
    img.src = "/api/snapshot?camera=" + encodeURIComponent(r.camera_id);
    img.hidden = false;
  } else {
    img.hidden = true;
    img.removeAttribute("src");
  }
  $("#hm-title").textContent = `${r.camera_id} · ${r.event_id.slice(0, 8)}`;
  const hm = r.heatmap || [];
  if (!hm.length || !hm[0].length) {
    $("#hm-note").textContent = "this event has no cell scores";
    return;
  }
  const rowsN = hm.length, colsN = hm[0].length;
  const max = Math.max(1e-9, ...hm.flat());
  const w = canvas.width / colsN, h = canvas.height / rowsN;
  for (let i = 0; i < rowsN; i++) {
    for (let j = 0; j < colsN; j++) {
      ctx.fillStyle = colour(hm[i][j] / max);
      ctx.fillRect(j * w, i * h, w, h);
    }
  }
  ctx.strokeStyle = "rgba(255,255,255,0.25)";
  for (let j = 0; j <= colsN; j++) { ctx.beginPath(); ctx.moveTo(j * w, 0); ctx.lineTo(j * w, canvas.height); ctx.stroke(); }
  for (let i = 0; i <= rowsN; i++) { ctx.beginPath(); ctx.moveTo(0, i * h); ctx.lineTo(canvas.width, i * h); ctx.stroke(); }
  $("#hm-note").textContent = `${rowsN}x${colsN} cells, peak cell ${max.toFixed(3)}` + (cam && cam.snapshot ? ", over the camera's snapshot" : "");
}

function select(eventId) {
  selected = eventId;
  const r = rows.get(eventId);
  if (r) drawHeatmap(r);
  renderRows();
}

async function ack(eventId) {
  const res = await fetch(`/api/events/${eventId}/ack`, { method: "POST" });
  if (!res.ok) return;
  const body = await res.json();
  const r = rows.get(eventId);
  if (r) r.acked = body.acked;
  renderRows();
}

function status(text, cls) {
  const s = $("#status");
  s.textContent = text;
  s.className = "status " + cls;
}

function follow(cursor) {
  source = new EventSource("/api/stream?cursor=" + encodeURIComponent(cursor));
  source.onopen = () => status("live", "live");
  source.onerror = () => status("reconnecting", "down");
  source.addEventListener("event", (msg) => {
    const r = JSON.parse(msg.data);
    noteCamera(r);
    for (const sel of ["#kind-filter"]) option($(sel), r.kind);
    if (keep(r)) {
      renderCameras();
      renderRows();
      if (r.event_id === selected) drawHeatmap(r);
    }
  });
}

async function start() {
  const [camRes, evRes] = await Promise.all([fetch("/api/cameras"), fetch("/api/events")]);
  const cams = (await camRes.json()).cameras;
  for (const c of cams) cameras.set(c.camera_id, c);
  const body = await evRes.json();
  for (const r of body.events.slice().reverse()) {
    keep(r);
    option($("#kind-filter"), r.kind);
  }
  renderCameras();
  renderRows();
  $("#camera-filter").onchange = renderRows;
  $("#kind-filter").onchange = renderRows;
  follow(body.cursor);
  // The cameras' own state (a camera's hash) now and then, for what the stream does not carry.
  setInterval(async () => {
    try {
      const res = await fetch("/api/cameras");
      for (const c of (await res.json()).cameras) cameras.set(c.camera_id, { ...cameras.get(c.camera_id), ...c });
      renderCameras();
    } catch (e) { /* the stream's status shows the outage */ }
  }, 10000);
}

start().catch((e) => status("error: " + e, "down"));
