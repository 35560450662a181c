// The edgewire dashboard: boards, live charts and the latest samples.
// History comes from /api/readings, live samples from the SSE feed
// /api/stream (EventSource reconnects by itself and resumes with
// Last-Event-ID, so nothing is missed across a cloud restart).
"use strict";

const POINTS = 300;          // points kept per chart
const LATEST_ROWS = 30;      // rows in the latest-samples table
const HISTORY_S = 600;       // history drawn on load
const series = new Map();    // "device/metric" -> {ts: [], v: [], el}
let liveCount = 0;

function fmtTime(ts) {
  return new Date(ts * 1000).toLocaleTimeString();
}

function chartFor(device, metric) {
  const key = device + "/" + metric;
  let s = series.get(key);
  if (!s) {
    const el = document.createElement("div");
    el.className = "chart";
    el.dataset.series = key;
    el.innerHTML = '<div class="title"><span></span><span class="value"></span></div><canvas></canvas>';
    el.querySelector(".title span").textContent = key;
    const charts = document.getElementById("charts");
    const after = [...charts.children].find((c) => c.dataset.series > key);
    charts.insertBefore(el, after || null);
    s = { ts: [], v: [], el, dirty: true };
    series.set(key, s);
  }
  return s;
}

function addPoint(device, metric, ts, value) {
  const s = chartFor(device, metric);
  s.ts.push(ts);
  s.v.push(typeof value === "boolean" ? (value ? 1 : 0) : value);
  if (s.ts.length > POINTS) { s.ts.shift(); s.v.shift(); }
  s.dirty = true;
}

function draw() {
  for (const s of series.values()) {
    if (!s.dirty) continue;
    s.dirty = false;
    const canvas = s.el.querySelector("canvas");
    const w = canvas.width = canvas.clientWidth * devicePixelRatio;
    const h = canvas.height = canvas.clientHeight * devicePixelRatio;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, w, h);
    if (s.v.length === 0) continue;
    s.el.querySelector(".value").textContent = String(s.v[s.v.length - 1]);
    const lo = Math.min(...s.v), hi = Math.max(...s.v);
    const t0 = s.ts[0], t1 = s.ts[s.ts.length - 1];
    const x = (t) => (t1 === t0 ? w : ((t - t0) / (t1 - t0)) * w);
    const y = (v) => (hi === lo ? h / 2 : h - 4 - ((v - lo) / (hi - lo)) * (h - 8));
    ctx.strokeStyle = getComputedStyle(document.body).getPropertyValue("--line");
    ctx.lineWidth = 1.5 * devicePixelRatio;
    ctx.beginPath();
    s.v.forEach((v, i) => (i ? ctx.lineTo(x(s.ts[i]), y(v)) : ctx.moveTo(x(s.ts[i]), y(v))));
    ctx.stroke();
  }
  requestAnimationFrame(draw);
}

function addLatest(sample) {
  const body = document.querySelector("#samples tbody");
  const row = document.createElement("tr");
  row.dataset.device = sample.device;
  row.dataset.seq = String(sample.seq);
  const values = Object.entries(sample.m).map(([k, v]) => k + "=" + v).join("  ");
  for (const text of [sample.id, sample.device, sample.boot + "/" + sample.seq, fmtTime(sample.ts), values]) {
    const td = document.createElement("td");
    td.textContent = String(text);
    row.appendChild(td);
  }
  body.insertBefore(row, body.firstChild);
  while (body.children.length > LATEST_ROWS) body.removeChild(body.lastChild);
}

async function loadDevices() {
  const response = await fetch("api/devices");
  if (!response.ok) return;
  const body = document.querySelector("#devices tbody");
  body.replaceChildren();
  for (const d of await response.json()) {
    const row = document.createElement("tr");
    row.dataset.device = d.id;
    const cells = [d.id, d.status, d.last_seen ? fmtTime(d.last_seen) : "—", d.samples, d.metrics.join(", ")];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = String(text);
      if (i === 1) td.className = "status-" + d.status;
      if (i === 3) td.className = "num";
      row.appendChild(td);
    });
    body.appendChild(row);
  }
}

async function loadHistory() {
  const since = Date.now() / 1000 - HISTORY_S;
  const response = await fetch("api/readings?limit=20000&since=" + since);
  if (!response.ok) return;
  for (const r of await response.json()) addPoint(r.device, r.metric, r.ts, r.value);
}

function connect() {
  const state = document.getElementById("feed-state");
  const source = new EventSource("api/stream");
  source.onopen = () => { state.dataset.state = "live"; state.textContent = "live"; };
  source.onerror = () => { state.dataset.state = "down"; state.textContent = "reconnecting…"; };
  source.addEventListener("sample", (event) => {
    const sample = JSON.parse(event.data);
    liveCount += 1;
    document.getElementById("sample-count").textContent = String(liveCount);
    for (const [metric, value] of Object.entries(sample.m)) addPoint(sample.device, metric, sample.ts, value);
    addLatest(sample);
  });
  source.addEventListener("status", () => loadDevices());
  source.addEventListener("overflow", () => { source.close(); setTimeout(connect, 1000); });
}

loadHistory().finally(() => {
  connect();
  requestAnimationFrame(draw);
});
loadDevices();
setInterval(loadDevices, 5000);
