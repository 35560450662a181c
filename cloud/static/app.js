// The edgewire dashboard: the fleet, a chart per series, the latest samples.
//
// Charts are uPlot (vendor/, fetched at set-up: the page needs no internet).
// History comes from /api/readings: the last few minutes as raw readings,
// longer ranges downsampled by the cloud (`every=`, min/mean/max per
// bucket), so a week draws as fast as ten minutes. Live samples come from
// the SSE feed /api/stream (EventSource reconnects by itself and resumes
// with Last-Event-ID, so nothing is missed across a cloud restart).
// Commands go to a board through POST /api/devices/<id>/cmd; their states
// (queued, at_edge, delivered, acked, failed, expired) arrive on the same feed.
"use strict";

const RANGES = { "10m": 600, "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400 };
const BUCKETS = 600;         // points a chart gets for a long range
const RAW_UP_TO_S = 600;     // ranges up to this are drawn from raw readings
const LATEST_ROWS = 30;      // rows in the latest-samples table
const COMMAND_ROWS = 20;     // rows in the commands table
const series = new Map();    // "device/metric" -> {ts: [], v: [], el, plot, dirty}
let rangeS = RANGES["10m"];
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
    el.innerHTML = '<div class="title"><span></span><span class="value"></span></div><div class="plot"></div>';
    el.querySelector(".title span").textContent = key;
    const charts = document.getElementById("charts");
    const after = [...charts.children].find((c) => c.dataset.series > key);
    charts.insertBefore(el, after || null);
    s = { ts: [], v: [], el, plot: null, dirty: true };
    series.set(key, s);
  }
  return s;
}

function makePlot(s) {
  const target = s.el.querySelector(".plot");
  const line = getComputedStyle(document.body).getPropertyValue("--line").trim();
  const dim = getComputedStyle(document.body).getPropertyValue("--dim").trim();
  const axis = { stroke: dim, grid: { stroke: "#222b35" }, ticks: { stroke: "#222b35" } };
  s.plot = new uPlot({
    width: Math.max(240, target.clientWidth),
    height: 120,
    legend: { show: false },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true } },
    axes: [axis, { ...axis, size: 50 }],
    series: [{}, { stroke: line, width: 1.5, points: { show: false } }],
  }, [s.ts, s.v], target);
}

function addPoint(device, metric, ts, value) {
  const s = chartFor(device, metric);
  const v = typeof value === "boolean" ? (value ? 1 : 0) : value;
  // uPlot needs x in order; history pages and live samples can interleave.
  let at = s.ts.length;
  if (at && ts < s.ts[at - 1]) {
    let lo = 0;
    while (lo < at) { const mid = (lo + at) >> 1; if (s.ts[mid] <= ts) lo = mid + 1; else at = mid; }
  }
  s.ts.splice(at, 0, ts);
  s.v.splice(at, 0, v);
  const oldest = Date.now() / 1000 - rangeS;
  while (s.ts.length > 1 && s.ts[0] < oldest) { s.ts.shift(); s.v.shift(); }
  s.dirty = true;
}

function draw() {
  for (const s of series.values()) {
    if (!s.dirty) continue;
    s.dirty = false;
    if (!s.plot) makePlot(s);
    s.plot.setData([s.ts, s.v]);
    if (s.v.length) s.el.querySelector(".value").textContent = String(s.v[s.v.length - 1]);
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

// "pi-1 · 0 buffered", or how far behind it is while it holds a backlog.
function edgeText(d) {
  if (!d.edge) return "—";
  if (d.edge_buffered === null || d.edge_buffered === undefined) return d.edge;
  const behind = d.edge_buffered > 0 ? ", oldest " + Math.round(d.edge_oldest_age_s) + " s" : "";
  return d.edge + " · " + d.edge_buffered + " buffered" + behind;
}

async function loadDevices() {
  const response = await fetch("api/devices");
  if (!response.ok) return;
  const devices = await response.json();
  boardChoices(devices);
  const body = document.querySelector("#devices tbody");
  body.replaceChildren();
  for (const d of devices) {
    const row = document.createElement("tr");
    row.dataset.device = d.id;
    const cells = [d.id, d.status, d.last_seen ? fmtTime(d.last_seen) : "—", d.samples, d.metrics.join(", "), edgeText(d)];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = String(text);
      if (i === 1) td.className = "status-" + d.status;
      if (i === 3) td.className = "num";
      if (i === 5) { td.className = "edge"; td.dataset.buffered = String(d.edge_buffered ?? ""); }
      row.appendChild(td);
    });
    body.appendChild(row);
  }
  return response;
}

function boardChoices(devices) {
  const picker = document.getElementById("cmd-device");
  const chosen = picker.value;
  picker.replaceChildren();
  for (const d of devices) {
    const option = document.createElement("option");
    option.value = d.id;
    option.textContent = d.id + (d.status === "online" ? "" : " (" + d.status + ")");
    picker.appendChild(option);
  }
  if (chosen) picker.value = chosen;
}

// One row per command, newest on top, updated in place as its state moves.
function showCommand(c) {
  const body = document.querySelector("#commands tbody");
  let row = body.querySelector('tr[data-id="' + CSS.escape(c.id) + '"]');
  if (!row) {
    row = document.createElement("tr");
    row.dataset.id = c.id;
    for (let i = 0; i < 6; i++) row.appendChild(document.createElement("td"));
    body.insertBefore(row, body.firstChild);
    while (body.children.length > COMMAND_ROWS) body.removeChild(body.lastChild);
  }
  row.dataset.state = c.state;
  const cells = [c.id, c.device_id || c.device, JSON.stringify(c.command), c.state,
    fmtTime(c.at || c.updated_at), c.error || ""];
  cells.forEach((text, i) => { row.children[i].textContent = String(text); });
  row.children[3].className = "cmd-" + c.state;
}

function commandFromForm() {
  const kind = document.getElementById("cmd-kind").value;
  const value = document.getElementById("cmd-value").value.trim();
  if (kind === "interval") return { set: { interval_s: Number(value) } };
  if (kind === "reboot") return { reboot: true };
  return { [kind]: value };
}

async function sendCommand(event) {
  event.preventDefault();
  const result = document.getElementById("cmd-result");
  const device = document.getElementById("cmd-device").value;
  const ttl = document.getElementById("cmd-ttl").value;
  const response = await fetch("api/devices/" + encodeURIComponent(device) + "/cmd?ttl=" + ttl, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(commandFromForm()),
  });
  const answer = await response.json();
  result.textContent = response.ok ? "queued " + answer.id : answer.error;
  result.className = response.ok ? "" : "error";
  if (response.ok) showCommand(answer);
}

async function loadCommands(devices) {
  const lists = await Promise.all(devices.map((d) =>
    fetch("api/devices/" + encodeURIComponent(d.id) + "/cmd?limit=" + COMMAND_ROWS)
      .then((r) => (r.ok ? r.json() : []))));
  const newest = lists.flat().sort((a, b) => a.created_at - b.created_at).slice(-COMMAND_ROWS);
  for (const c of newest) showCommand(c);
}

// The chosen range for every known series: raw readings for short ranges,
// the cloud's per-bucket means for long ones (one query per series, since
// a bucket query is fastest for one series).
async function loadHistory() {
  const until = Date.now() / 1000;
  const since = until - rangeS;
  const devices = await (await fetch("api/devices")).json();
  const every = Math.max(1, Math.round(rangeS / BUCKETS));
  for (const s of series.values()) { s.ts = []; s.v = []; s.dirty = true; }
  const queries = [];
  for (const d of devices) {
    for (const metric of d.metrics) {
      const base = "api/readings?device=" + encodeURIComponent(d.id) + "&metric=" + metric + "&since=" + since;
      const url = rangeS <= RAW_UP_TO_S ? base + "&limit=20000" : base + "&limit=2000&every=" + every + "s";
      queries.push(fetch(url).then((r) => (r.ok ? r.json() : [])).then((rows) => {
        for (const r of rows) {
          // A bucket is drawn at its middle, but never after now (the last one is still filling).
          if ("mean" in r) addPoint(r.device, r.metric, Math.min(r.start + every / 2, until), r.mean);
          else addPoint(r.device, r.metric, r.ts, r.value);
        }
      }));
    }
  }
  await Promise.all(queries);
  document.getElementById("range").dataset.loaded = String(rangeS);
}

function pickRange() {
  const picker = document.getElementById("range");
  for (const name of Object.keys(RANGES)) {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = "last " + name;
    picker.appendChild(option);
  }
  picker.addEventListener("change", () => {
    rangeS = RANGES[picker.value];
    loadHistory();
  });
}

function connect() {
  const state = document.getElementById("feed-state");
  const source = new EventSource("api/stream");
  source.onopen = () => { state.dataset.state = "live"; state.textContent = "live"; };
  source.onerror = () => {
    state.dataset.state = "down";
    state.textContent = "reconnecting…";
    // EventSource retries a dropped connection by itself, but not one the
    // cloud answered with an error: its token was removed (the cloud ends
    // such feeds), or the cloud answers 5xx while it starts.
    if (source.readyState === EventSource.CLOSED) {
      fetch("api/devices").then((response) => {
        if (response.status === 401 || response.status === 403) {
          askForToken("this token no longer works: log in again");
        } else {
          setTimeout(connect, 2000);
        }
      }).catch(() => setTimeout(connect, 2000));
    }
  };
  source.addEventListener("sample", (event) => {
    const sample = JSON.parse(event.data);
    liveCount += 1;
    document.getElementById("sample-count").textContent = String(liveCount);
    for (const [metric, value] of Object.entries(sample.m)) addPoint(sample.device, metric, sample.ts, value);
    addLatest(sample);
  });
  source.addEventListener("status", () => loadDevices());
  source.addEventListener("command", (event) => showCommand(JSON.parse(event.data)));
  source.addEventListener("overflow", () => { source.close(); setTimeout(connect, 1000); });
}

window.addEventListener("resize", () => {
  for (const s of series.values()) {
    if (s.plot) s.plot.setSize({ width: Math.max(240, s.el.querySelector(".plot").clientWidth), height: 120 });
  }
});

// A cloud with API tokens answers 401 until the browser holds the login
// cookie; the token goes to the cloud once, in a POST, and the cookie it
// sets is HttpOnly, so this script never keeps it.
function askForToken(message) {
  const form = document.getElementById("login");
  form.hidden = false;
  document.getElementById("login-result").textContent = message || "";
  document.getElementById("feed-state").textContent = "log in";
}

async function logIn(event) {
  event.preventDefault();
  const field = document.getElementById("login-token");
  const response = await fetch("api/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ token: field.value }),
  });
  field.value = "";
  if (!response.ok) { askForToken((await response.json()).error); return; }
  document.getElementById("login").hidden = true;
  if (started) connect();  // logged in again after a token was removed
  else start();
}

let started = false;

function start() {
  started = true;
  pickRange();
  document.getElementById("command-form").addEventListener("submit", sendCommand);
  fetch("api/devices").then((r) => r.json()).then(loadCommands)
    .catch((error) => console.warn("commands not loaded:", error));
  loadHistory().catch((error) => console.warn("history not loaded:", error)).finally(() => {
    connect();
    requestAnimationFrame(draw);
  });
  loadDevices();
  setInterval(loadDevices, 5000);
}

document.getElementById("login").addEventListener("submit", logIn);
fetch("api/devices").then((response) => {
  if (response.status === 401) askForToken();
  else start();
}).catch(() => start());  // the cloud is down: start, and the feed reconnects
