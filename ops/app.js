// The live operations page (GET /ops). Asks for the bearer token, keeps it
// in sessionStorage only, and once it has one polls GET /stats?top=10 and
// GET /metrics every second: charts over time (uPlot), the hot keys and a
// per-key inspector (GET /stats/keys/{key}). Bundled with uPlot by
// scripts/build.sh; loads nothing from elsewhere.
import uPlot from "uplot";
import { intervalQuantile, keyPath, parseMetrics } from "./metrics.js";

// Errors the page met, for people (the status line) and for the browser
// test, which reads this list: uncaught errors, rejected promises and
// console.error calls.
const errors = [];
window.__opsErrors = errors;
window.addEventListener("error", (e) => errors.push(`error: ${e.message}`));
window.addEventListener("unhandledrejection", (e) =>
  errors.push(`unhandled rejection: ${e.reason}`),
);
document.addEventListener("securitypolicyviolation", (e) =>
  errors.push(`blocked by the content security policy: ${e.violatedDirective} ${e.blockedURI}`),
);
const consoleError = console.error.bind(console);
console.error = (...args) => {
  errors.push(args.map(String).join(" "));
  consoleError(...args);
};

const TOKEN_KEY = "pipeline-ops-token";
const POLL_MS = 1000;
/** Points kept per chart: five minutes at one poll a second. */
const MAX_POINTS = 300;
const LAG_METRIC = "pipeline_commit_lag_seconds";

const $ = (id) => document.getElementById(id);

// What the browser test (and a curious operator) can read.
// `data` holds each chart's columns (x, then one per series).
const state = { polls: 0, refused: 0, points: {}, data: {}, key: null };
window.__ops = state;

// --- Charts ----------------------------------------------------------------

const CHARTS = {
  throughput: {
    el: "chart-throughput",
    series: [
      { label: "accepted/s", stroke: "#2f6fdd" },
      { label: "committed/s", stroke: "#2e9d52" },
    ],
  },
  coalescing: {
    el: "chart-coalescing",
    series: [{ label: "superseded / ended", stroke: "#8e44ad" }],
    range: [0, 1],
  },
  lag: {
    el: "chart-lag",
    series: [
      { label: "p50 (s)", stroke: "#2f6fdd" },
      { label: "p99 (s)", stroke: "#d35400" },
    ],
  },
  inflight: {
    el: "chart-inflight",
    series: [{ label: "in flight", stroke: "#16a085" }],
  },
  failures: {
    el: "chart-failures",
    series: [
      { label: "failed/s", stroke: "#c62828" },
      { label: "rate-limited/s", stroke: "#f39c12" },
    ],
  },
};

const charts = {};
const data = {};

function fmt(v) {
  if (v == null) return "–";
  if (Math.abs(v) >= 100 || Number.isInteger(v)) return String(Math.round(v));
  return v.toFixed(2);
}

function chartWidth(el) {
  return Math.max(200, Math.floor(el.clientWidth));
}

function chartHeight() {
  return window.innerWidth < 600 ? 170 : 200;
}

function makeCharts() {
  for (const [name, c] of Object.entries(CHARTS)) {
    if (charts[name]) continue;
    const el = $(c.el);
    data[name] = [[], ...c.series.map(() => [])];
    const opts = {
      width: chartWidth(el),
      height: chartHeight(),
      scales: {
        x: { time: true },
        y: c.range ? { range: c.range } : { range: (u, min, max) => [0, Math.max(1, max * 1.1)] },
      },
      axes: [{}, { size: 48, values: (u, vals) => vals.map(fmt) }],
      // The latest values stand in the caption (`latest`): a legend of
      // hover values says nothing on a phone.
      legend: { live: false },
      series: [
        {},
        ...c.series.map((s) => ({
          label: s.label,
          stroke: s.stroke,
          width: 2,
          value: (u, v) => fmt(v),
        })),
      ],
    };
    charts[name] = new uPlot(opts, data[name], el);
    state.points[name] = 0;
    state.data[name] = data[name];
  }
}

function resizeCharts() {
  for (const [name, chart] of Object.entries(charts)) {
    const el = $(CHARTS[name].el);
    chart.setSize({ width: chartWidth(el), height: chartHeight() });
  }
}

function push(name, x, values) {
  const d = data[name];
  d[0].push(x);
  values.forEach((v, i) => d[i + 1].push(v));
  if (d[0].length > MAX_POINTS) d.forEach((col) => col.shift());
  charts[name].setData(d);
  latest(name, values);
  state.points[name] = d[0].length;
  $(CHARTS[name].el).dataset.points = String(d[0].length);
}

/** The latest values of a chart, next to its caption. */
function latest(name, values) {
  const el = $(CHARTS[name].el).parentElement.querySelector(".latest");
  if (!el) return;
  el.textContent = CHARTS[name].series
    .map((s, i) => `${s.label} ${fmt(values[i])}`)
    .join(" · ");
}

// --- Fetching ----------------------------------------------------------------

class Refused extends Error {}

async function api(path) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) throw new Refused("no token");
  const resp = await fetch(path, {
    headers: { Authorization: `Bearer ${token}` },
    cache: "no-store",
  });
  if (resp.status === 401) throw new Refused(path);
  return resp;
}

async function errorText(resp) {
  try {
    const body = await resp.json();
    return body?.error?.message ?? body?.error?.code ?? "";
  } catch {
    return "";
  }
}

let prev = null;
let timer = null;
let generation = 0;

async function poll(gen) {
  try {
    const [statsResp, metricsResp] = await Promise.all([
      api("/stats?top=10"),
      api("/metrics"),
    ]);
    if (!statsResp.ok) throw new Error(`/stats answered ${statsResp.status} ${await errorText(statsResp)}`);
    if (!metricsResp.ok) throw new Error(`/metrics answered ${metricsResp.status} ${await errorText(metricsResp)}`);
    const stats = await statsResp.json();
    const metrics = parseMetrics(await metricsResp.text());
    if (gen !== generation) return;
    update(stats, metrics);
    if (state.key !== null) await inspect(state.key, gen);
    state.polls += 1;
    setStatus(`Live: updated ${clock(Date.now())}`);
  } catch (e) {
    if (gen !== generation) return;
    if (e instanceof Refused) {
      refused();
      return;
    }
    setStatus(`Update failed: ${e.message}`, true);
  }
  if (gen === generation) timer = setTimeout(() => poll(gen), POLL_MS);
}

const COUNTERS = {
  accepted: "pipeline_uploads_accepted_total",
  committed: "pipeline_uploads_committed_total",
  superseded: "pipeline_uploads_superseded_total",
  failed: "pipeline_uploads_failed_total",
  rateLimited: "pipeline_rate_limited_total",
  inflight: "pipeline_inflight",
};

function update(stats, metrics) {
  const now = Date.now();
  const cur = { t: now, lag: metrics.histograms[LAG_METRIC] ?? null };
  for (const [k, name] of Object.entries(COUNTERS)) cur[k] = metrics.samples[name] ?? 0;
  const x = now / 1000;
  if (prev) {
    const dt = (now - prev.t) / 1000;
    const rate = (k) => (dt > 0 ? Math.max(0, cur[k] - prev[k]) / dt : null);
    push("throughput", x, [rate("accepted"), rate("committed")]);
    const superseded = Math.max(0, cur.superseded - prev.superseded);
    const ended = superseded
      + Math.max(0, cur.committed - prev.committed)
      + Math.max(0, cur.failed - prev.failed);
    push("coalescing", x, [ended > 0 ? superseded / ended : null]);
    push("lag", x, [
      intervalQuantile(0.5, prev.lag, cur.lag),
      intervalQuantile(0.99, prev.lag, cur.lag),
    ]);
    push("failures", x, [rate("failed"), rate("rateLimited")]);
  }
  push("inflight", x, [cur.inflight]);
  prev = cur;
  renderTotals(stats);
  renderHotKeys(stats.top_keys);
}

function renderTotals(stats) {
  const dl = $("totals");
  dl.replaceChildren();
  for (const k of ["accepted", "committed", "superseded", "failed", "r2_writes", "rate_limited", "inflight"]) {
    const box = document.createElement("div");
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = stats[k] ?? "–";
    dd.dataset.total = k;
    box.append(dt, dd);
    dl.append(box);
  }
}

function renderHotKeys(top) {
  const tbody = $("hot-keys").tBodies[0];
  tbody.replaceChildren();
  if (!Array.isArray(top) || top.length === 0) {
    const tr = tbody.insertRow();
    const td = tr.insertCell();
    td.colSpan = 3;
    td.className = "muted";
    td.textContent = Array.isArray(top) ? "No writes recently." : "This Worker does not report hot keys.";
    return;
  }
  top.forEach((row, i) => {
    const tr = tbody.insertRow();
    tr.insertCell().textContent = String(i + 1);
    const key = tr.insertCell();
    key.className = "key";
    const link = document.createElement("a");
    link.href = "#";
    link.textContent = row.key;
    link.addEventListener("click", (e) => {
      e.preventDefault();
      $("key").value = row.key;
      startInspecting(row.key);
    });
    key.append(link);
    const writes = tr.insertCell();
    writes.className = "num";
    writes.textContent = String(row.writes);
  });
}

// --- Key inspector -------------------------------------------------------------

function clock(ms) {
  return new Date(ms).toISOString().slice(11, 23) + "Z";
}

function startInspecting(key) {
  state.key = key;
  $("key-msg").textContent = "Loading…";
  const gen = generation;
  inspect(key, gen).catch((e) => {
    if (e instanceof Refused) refused();
  });
}

async function inspect(key, gen) {
  const resp = await api(keyPath(key));
  if (gen !== generation || key !== state.key) return;
  if (!resp.ok) {
    $("key-view").hidden = true;
    $("key-msg").textContent = `GET ${keyPath(key)} answered ${resp.status} ${await errorText(resp)}`;
    return;
  }
  const info = await resp.json();
  if (gen !== generation || key !== state.key) return;
  renderKey(info);
}

/** Upload ids are long: the first 12 characters, the whole id on hover. */
function shortId(id) {
  return id.length > 14 ? `${id.slice(0, 12)}…` : id;
}

function renderKey(info) {
  const now = Date.now();
  $("key-msg").textContent = `Updated ${clock(now)}`;
  $("kv-key").textContent = info.key;
  const p = info.pending;
  $("kv-pending").textContent = p
    ? `${shortId(p.id)}, accepted ${clock(p.accepted_ms)} (${now - p.accepted_ms} ms ago), ${p.size} bytes`
    : "none";
  const f = info.in_flight;
  $("kv-inflight").textContent = !f
    ? "none"
    : f.started_ms == null
      ? shortId(f.id)
      : `${shortId(f.id)}, started ${clock(f.started_ms)} (${now - f.started_ms} ms ago)`;
  $("kv-waiting").textContent = info.waiting == null ? "–" : String(info.waiting);
  const next = info.next_slot_ms;
  $("kv-next").textContent = next == null || next <= now
    ? "free now"
    : `${clock(next)} (in ${next - now} ms)`;
  const tbody = $("key-commits").tBodies[0];
  tbody.replaceChildren();
  for (const c of info.recent_commits ?? []) {
    const tr = tbody.insertRow();
    tr.insertCell().textContent = clock(c.committed_ms);
    const spacing = tr.insertCell();
    spacing.className = "num";
    spacing.textContent = c.spacing_ms == null ? "–" : String(c.spacing_ms);
    if (c.spacing_ms != null) {
      tr.dataset.spacing = String(c.spacing_ms);
      if (c.spacing_ms < 1000) tr.className = "short";
    }
    const id = tr.insertCell();
    id.className = "id";
    id.textContent = shortId(c.id);
    id.title = c.id;
  }
  if ((info.recent_commits ?? []).length === 0) {
    const td = tbody.insertRow().insertCell();
    td.colSpan = 3;
    td.className = "muted";
    td.textContent = "No commits recorded.";
  }
  $("key-view").hidden = false;
}

// --- Token and page state --------------------------------------------------------

function setStatus(text, bad = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("bad", bad);
}

function stop() {
  generation += 1;
  clearTimeout(timer);
  timer = null;
  prev = null;
}

function refused() {
  stop();
  state.refused += 1;
  sessionStorage.removeItem(TOKEN_KEY);
  const msg = $("token-msg");
  msg.textContent = "token refused: enter a valid token";
  msg.hidden = false;
  showLogin("Token refused.", true);
}

function showLogin(status, bad = false) {
  $("dashboard").hidden = true;
  $("login").hidden = false;
  $("forget").hidden = true;
  setStatus(status, bad);
  $("token").value = "";
  $("token").focus();
}

function start() {
  stop();
  $("login").hidden = true;
  $("dashboard").hidden = false;
  $("forget").hidden = false;
  setStatus("Loading…");
  makeCharts();
  resizeCharts();
  poll(generation);
}

$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const token = $("token").value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token-msg").hidden = true;
  start();
});

$("forget").addEventListener("click", () => {
  stop();
  sessionStorage.removeItem(TOKEN_KEY);
  $("token-msg").hidden = true;
  showLogin("Token forgotten.");
});

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const key = $("key").value;
  if (key) startInspecting(key);
});

// On window resizes only: a ResizeObserver on the layout would also see
// the charts' own size changes.
window.addEventListener("resize", resizeCharts);

if (sessionStorage.getItem(TOKEN_KEY)) start();
else showLogin("Waiting for a token.");
