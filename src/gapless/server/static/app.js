// The gapless dashboard: plain JavaScript, no library, no network access beyond this control plane.
// The admin token is kept in sessionStorage and sent as a bearer token (as ?token= for EventSource,
// which cannot send headers). Live data comes from GET /api/v1/stream (server-sent events); the
// per-revision series are polled from /api/v1/rollouts/NAME/series every second.
"use strict";

const COLORS = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2"];
const WINDOW = 300; // seconds of series shown
const $ = (id) => document.getElementById(id);
const state = { source: null, timers: [], events: [], series: null, status: null, spec: null, name: null };

function token() { return sessionStorage.getItem("gapless-token") || ""; }

async function api(method, path, body) {
  const init = { method, headers: { Authorization: "Bearer " + token() } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  if (r.status === 401) { logout("the token was refused; log in again"); throw new Error("401"); }
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || ("HTTP " + r.status));
  return data;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

function stop() {
  if (state.source) { state.source.close(); state.source = null; }
  state.timers.forEach(clearInterval);
  state.timers = [];
  setLive(false);
}

function setLive(on) {
  $("live").className = "live " + (on ? "on" : "off");
  $("live").textContent = on ? "live" : "offline";
}

function show(section) {
  for (const id of ["login", "list", "rollout"]) $(id).hidden = id !== section;
  $("logout").hidden = section === "login";
}

function logout(message) {
  stop();
  sessionStorage.removeItem("gapless-token");
  show("login");
  $("login-error").textContent = message || "";
}

function stream(params, onStatus, onEvents) {
  const q = new URLSearchParams(params);
  q.set("token", token());
  const source = new EventSource("/api/v1/stream?" + q.toString());
  source.addEventListener("status", (m) => { setLive(true); onStatus(JSON.parse(m.data)); });
  if (onEvents) source.addEventListener("events", (m) => onEvents(JSON.parse(m.data).items));
  source.onerror = () => setLive(false);
  state.source = source;
}

function fmtWeights(w) {
  if (!w) return "even";
  return Object.entries(w).map(([rev, n]) => "rev " + rev + ": " + n + "%").join(", ");
}

function health(status) {
  const c = (status.conditions || []).find((x) => x.type === "Available");
  if (!c) return ["unknown", ""];
  return c.status === "True" ? ["available", "ok"] : ["unavailable", "bad"];
}

// -- rollouts list ---------------------------------------------------------------------------------

function renderList(data) {
  const body = $("rollouts");
  body.replaceChildren();
  for (const r of data.items || []) {
    const [h, cls] = health(r);
    const tr = el("tr", { "data-rollout": r.name },
      el("td", {}, el("a", { href: "#/rollouts/" + encodeURIComponent(r.name), text: r.name })),
      el("td", { class: "phase-cell", text: r.phase || "" }),
      el("td", { class: cls, text: h }),
      el("td", { text: r.currentRevision == null ? "" : String(r.currentRevision) }),
      el("td", { text: r.stableRevision == null ? "" : String(r.stableRevision) }),
      el("td", { text: fmtWeights((r.strategy || {}).weights) }),
      el("td", { text: (r.readyReplicas || 0) + "/" + (r.replicas || 0) }),
      el("td", { class: "muted", text: r.message || "" }));
    body.append(tr);
  }
  if (!body.children.length) body.append(el("tr", {}, el("td", { colspan: "8", class: "muted", text: "no rollouts" })));
}

function openList() {
  stop();
  show("list");
  stream({}, renderList);
}

// -- one rollout -------------------------------------------------------------------------------------

function renderStatus(data) {
  if (data.missing) { $("r-message").textContent = "this rollout does not exist (any more)"; return; }
  const s = data.status, spec = data.spec || {};
  state.status = s;
  state.spec = spec;
  $("r-name").textContent = data.name;
  $("r-phase").textContent = s.phase || "";
  $("r-phase").className = "phase " + (s.phase || "");
  $("r-message").textContent = s.message || "";
  const strategy = s.strategy || {};
  // steps
  const steps = ((spec.spec || {}).strategy || {}).canary ? spec.spec.strategy.canary.steps || [] : [];
  const ol = $("steps");
  ol.replaceChildren();
  if (!steps.length) ol.append(el("li", { class: "muted", text: strategy.type || "rolling update" }));
  steps.forEach((step, i) => {
    const cls = strategy.stepIndex == null ? "" : i < strategy.stepIndex ? "done" : i === strategy.stepIndex ? "current" : "";
    let text = JSON.stringify(step);
    if (step.setWeight != null) text = "setWeight " + step.setWeight + "%";
    else if (step.pause) text = step.pause.duration == null ? "pause (until promoted)" : "pause " + step.pause.duration + "s";
    else if (step.analysis) text = "analysis";
    if (cls === "current" && strategy.waitingForPromote) text += " - waiting for promote";
    ol.append(el("li", { class: cls, "data-step": String(i), text }));
  });
  // weights
  const weights = strategy.weights;
  const bar = el("div", { class: "bar", id: "weights-bar" });
  const entries = weights ? Object.entries(weights) : [[String(s.currentRevision || ""), 100]];
  const total = entries.reduce((a, [, n]) => a + n, 0) || 1;
  entries.forEach(([rev, n]) => {
    if (!n) return;
    const d = el("div", { "data-revision": rev, text: "rev " + rev + " " + Math.round((100 * n) / total) + "%" });
    d.style.width = (100 * n) / total + "%";
    d.style.background = colorOf(rev);
    bar.append(d);
  });
  $("weights").replaceChildren(bar, el("p", { class: "muted", text: weights ? "" : "all traffic to the current revision" }));
  renderInstances();
}

function renderInstances() {
  const s = state.status;
  if (!s) return;
  const usage = (state.series && state.series.instances) || {};
  const body = $("instances");
  body.replaceChildren();
  for (const i of s.instances || []) {
    const u = usage[i.id] || {};
    body.append(el("tr", { "data-instance": i.id },
      el("td", { text: i.id }),
      el("td", { text: i.revision == null ? "" : String(i.revision) }),
      el("td", { text: i.state }),
      el("td", { class: i.ready ? "ok" : "bad", text: i.ready ? "yes" : "no" }),
      el("td", { text: String(i.restarts || 0) }),
      el("td", { text: u.cpu == null ? "" : (100 * u.cpu).toFixed(1) + "%" }),
      el("td", { text: u.rssBytes == null ? "" : (u.rssBytes / 1048576).toFixed(1) + " MiB" })));
  }
}

function addEvents(items) {
  for (const e of items) {
    state.events.push(e);
    const li = el("li", { "data-type": e.type, text: new Date(e.time * 1000).toLocaleTimeString() + "  " + e.type + "  " + e.message });
    $("events").prepend(li);
  }
  while ($("events").children.length > 200) $("events").lastChild.remove();
  drawCharts();
}

const revisionColors = {};
function colorOf(rev) {
  if (!(rev in revisionColors)) revisionColors[rev] = COLORS[Object.keys(revisionColors).length % COLORS.length];
  return revisionColors[rev];
}

function drawChart(id, lines, format, floor) {
  const root = $(id);
  root.replaceChildren();
  const W = 900, H = 180, L = 54, R = 8, T = 8, B = 22;
  const now = Date.now() / 1000;
  let tmin = now - WINDOW;
  const all = lines.flatMap((l) => l.points);
  if (all.length) tmin = Math.max(tmin, Math.min(...all.map((p) => p[0])));
  const tmax = Math.max(now, tmin + 10);
  let vmax = Math.max(0, ...all.map((p) => p[1]));
  vmax = Math.max(vmax, floor || 0);
  if (vmax <= 0) vmax = 1;
  vmax *= 1.1;
  const x = (t) => L + ((t - tmin) / (tmax - tmin)) * (W - L - R);
  const y = (v) => H - B - (v / vmax) * (H - T - B);
  for (let k = 0; k <= 4; k++) {
    const v = (vmax * k) / 4;
    root.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    const t = svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" });
    t.textContent = format(v);
    root.append(t);
  }
  root.append(svg("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  for (const frac of [0, 0.5, 1]) {
    const t = tmin + frac * (tmax - tmin);
    const label = svg("text", { x: x(t), y: H - 6, "text-anchor": frac === 0 ? "start" : frac === 1 ? "end" : "middle" });
    label.textContent = new Date(t * 1000).toLocaleTimeString();
    root.append(label);
  }
  for (const line of lines) {
    const pts = line.points.filter((p) => p[0] >= tmin && p[1] != null);
    if (!pts.length) continue;
    const d = pts.map((p, i) => (i ? "L" : "M") + x(p[0]).toFixed(1) + " " + y(p[1]).toFixed(1)).join(" ");
    root.append(svg("path", {
      class: "series", d, stroke: colorOf(line.revision), "stroke-dasharray": line.dash || "",
      "data-revision": line.revision, "data-label": line.label, "data-points": String(pts.length),
    }));
  }
  for (const e of state.events) {
    if (e.time < tmin || e.time > tmax) continue;
    const text = new Date(e.time * 1000).toLocaleTimeString() + " " + e.type + ": " + e.message;
    const marker = svg("line", { class: "event-marker", x1: x(e.time), x2: x(e.time), y1: T, y2: H - B, "data-type": e.type, "data-id": String(e.id) });
    const hit = svg("line", { class: "event-hit", x1: x(e.time), x2: x(e.time), y1: T, y2: H - B });
    const title = svg("title", {});
    title.textContent = text;
    hit.append(title);
    hit.addEventListener("mousemove", (ev) => tooltip(ev, text));
    hit.addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
    root.append(marker, hit);
  }
}

function tooltip(ev, text) {
  const t = $("tooltip");
  t.textContent = text;
  t.style.left = ev.clientX + 12 + "px";
  t.style.top = ev.clientY + 12 + "px";
  t.hidden = false;
}

function drawCharts() {
  const revs = (state.series && state.series.revisions) || {};
  const rate = [], errors = [], latency = [];
  const legend = $("legend");
  legend.replaceChildren();
  for (const [rev, s] of Object.entries(revs)) {
    const p = s.points;
    rate.push({ revision: rev, label: "rps", points: p.map((q) => [q.t, q.rps]) });
    errors.push({ revision: rev, label: "errors", points: p.map((q) => [q.t, q.errorRate]) });
    latency.push({ revision: rev, label: "p50", points: p.map((q) => [q.t, q.p50 == null ? null : q.p50 * 1000]) });
    latency.push({ revision: rev, label: "p95", dash: "6 3", points: p.map((q) => [q.t, q.p95 == null ? null : q.p95 * 1000]) });
    latency.push({ revision: rev, label: "p99", dash: "2 3", points: p.map((q) => [q.t, q.p99 == null ? null : q.p99 * 1000]) });
    const sw = el("i");
    sw.style.background = colorOf(rev);
    legend.append(el("span", {}, sw, "revision " + rev));
  }
  legend.append(el("span", { class: "muted", text: "latency: solid P50, dashed P95, dotted P99; orange lines: events" }));
  drawChart("chart-rate", rate, (v) => v.toFixed(v < 10 ? 1 : 0));
  drawChart("chart-errors", errors, (v) => (100 * v).toFixed(v < 0.1 ? 1 : 0) + "%", 0.05);
  drawChart("chart-latency", latency, (v) => v.toFixed(v < 10 ? 1 : 0));
}

async function pollSeries() {
  if (!state.name) return;
  try {
    state.series = await api("GET", "/api/v1/rollouts/" + encodeURIComponent(state.name) + "/series");
    drawCharts();
    renderInstances();
  } catch (e) { /* the next poll retries; a refused token logs out */ }
}

async function pollAnalysis() {
  if (!state.name) return;
  try {
    const data = await api("GET", "/api/v1/rollouts/" + encodeURIComponent(state.name) + "/analysis");
    const box = $("analysis");
    box.replaceChildren();
    const runs = (data.items || []).slice(-3).reverse();
    if (!runs.length) { box.textContent = "no analysis runs"; return; }
    for (const run of runs) {
      const table = el("table", {}, el("tr", {}, el("th", { text: "metric" }), el("th", { text: "phase" }), el("th", { text: "ok/failed/inconclusive" }), el("th", { text: "last measurement" })));
      for (const m of run.metrics || []) {
        table.append(el("tr", {},
          el("td", { text: m.name }),
          el("td", { class: m.phase === "Failed" ? "bad" : m.phase === "Successful" ? "ok" : "", text: m.phase }),
          el("td", { text: m.successful + "/" + m.failed + "/" + m.inconclusive }),
          el("td", { class: "muted", text: m.last ? JSON.stringify(m.last).slice(0, 160) : "" })));
      }
      box.append(el("p", { text: "revision " + run.revision + " - " + run.name + ": " + run.phase + (run.message ? " (" + run.message + ")" : "") }), table);
    }
  } catch (e) { /* shown on the next poll */ }
}

const ACTIONS = {
  promote: { path: "promote", body: {}, ask: "Promote: go to the next step of the rollout?" },
  abort: { path: "abort", body: {}, ask: "Abort: send all traffic back to the stable revision?" },
  undo: { path: "undo", body: {}, ask: "Undo: roll back to the previous revision?" },
  pause: { path: "pause", body: {}, ask: "Pause the rollout?" },
  resume: { path: "resume", body: {}, ask: "Resume the rollout?" },
};

async function act(name) {
  const a = ACTIONS[name];
  if (!state.name || !window.confirm(a.ask + " (" + state.name + ")")) return;
  const out = $("action-result");
  try {
    await api("POST", "/api/v1/rollouts/" + encodeURIComponent(state.name) + "/" + a.path, a.body);
    out.className = "ok";
    out.textContent = name + ": done";
  } catch (e) {
    out.className = "error";
    out.textContent = name + ": " + e.message;
  }
}

function openRollout(name) {
  stop();
  Object.assign(state, { name, events: [], series: null, status: null });
  $("events").replaceChildren();
  $("action-result").textContent = "";
  show("rollout");
  stream({ rollout: name, since: "0" }, renderStatus, addEvents);
  pollSeries();
  pollAnalysis();
  state.timers.push(setInterval(pollSeries, 1000), setInterval(pollAnalysis, 5000));
}

function route() {
  if (!token()) { stop(); show("login"); return; }
  const m = location.hash.match(/^#\/rollouts\/(.+)$/);
  if (m) openRollout(decodeURIComponent(m[1])); else { state.name = null; openList(); }
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const t = $("token").value.trim();
  const r = await fetch("/api/v1/rollouts", { headers: { Authorization: "Bearer " + t } });
  if (!r.ok) { $("login-error").textContent = r.status === 401 ? "wrong token" : "HTTP " + r.status; return; }
  sessionStorage.setItem("gapless-token", t);
  $("token").value = "";
  $("login-error").textContent = "";
  route();
});
$("logout").addEventListener("click", () => logout());
document.querySelectorAll("[data-action]").forEach((b) => b.addEventListener("click", () => act(b.dataset.action)));
window.addEventListener("hashchange", route);
route();
