// The gapless dashboard: plain JavaScript, no library, no network access beyond this control plane.
// The admin token is kept in sessionStorage and sent as a bearer token (as ?token= for EventSource,
// which cannot send headers). Live data comes from GET /api/v1/stream (server-sent events: statuses,
// events and backfill progress); the per-revision series are polled from /api/v1/rollouts/NAME/series
// every second.
// The Flags view talks to the flag service mounted at /flags with a flag admin token: the one typed at
// login, else the control plane's own (GET /api/v1/dashboard/session). It listens to the project's
// change stream (/flags/api/v1/projects/P/changes, server-sent events) and reads the project again on
// every change; while that stream is down it polls every 30 seconds. It also reads the flag list once a
// minute, because "last evaluated" and the stale badges change without any change to a flag (SDK
// usage reports, lifetimes running out); the rows are redrawn only when something differs.
"use strict";

const WINDOW = 300; // seconds of series shown
const $ = (id) => document.getElementById(id);
const state = { source: null, timers: [], events: [], series: null, status: null, spec: null, name: null, view: 0, fallback: null };
const FLAGS_FALLBACK_MS = 30000; // polling of the Flags view while its change stream is down
const FLAGS_USAGE_MS = 60000; // re-reading of the flag list for "last evaluated" and stale badges

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
  state.fallback = null;
  state.view += 1; // callbacks of the view left behind check this and do nothing
  setLive(false);
}

function setLive(on) {
  $("live").className = "live " + (on ? "on" : "off");
  $("live").textContent = on ? "live" : "offline";
}

function show(section) {
  for (const id of ["login", "list", "rollout", "flags", "migrations", "releases"]) $(id).hidden = id !== section;
  $("logout").hidden = section === "login";
  $("nav").hidden = section === "login";
  $("nav-flags").className = section === "flags" ? "active" : "";
  $("nav-migrations").className = section === "migrations" ? "active" : "";
  $("nav-releases").className = section === "releases" ? "active" : "";
  $("nav-rollouts").className = section === "list" || section === "rollout" ? "active" : "";
}

function logout(message) {
  stop();
  sessionStorage.removeItem("gapless-token");
  sessionStorage.removeItem("gapless-flags-token");
  show("login");
  $("login-error").textContent = message || "";
}

function stream(params, onStatus, onEvents, onProgress) {
  const q = new URLSearchParams(params);
  q.set("token", token());
  const source = new EventSource("/api/v1/stream?" + q.toString());
  source.addEventListener("status", (m) => { setLive(true); onStatus(JSON.parse(m.data)); });
  if (onEvents) source.addEventListener("events", (m) => onEvents(JSON.parse(m.data).items));
  if (onProgress) source.addEventListener("progress", (m) => onProgress(JSON.parse(m.data).items));
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

// Schema gating: the schema the current revision needs, a hold, the point of no app rollback.
function renderSchema(s) {
  const box = $("r-schema"), schema = s.schema;
  box.hidden = !schema;
  if (!schema) return;
  let text = "schema " + (schema.requires || "-") + (s.schemaHold ? " (held)" : "");
  const point = schema.pointOfNoRollback;
  if (point) {
    text += "; no rollback past " + point.migration + " (" + point.phase + ")";
    const gone = schema.unrunnableRevisions || [];
    if (gone.length) text += ": revisions " + gone.join(", ") + " cannot run again";
  }
  if (schema.error) text += "; " + schema.source + ": " + schema.error;
  box.textContent = text;
  box.dataset.unrunnable = (schema.unrunnableRevisions || []).join(",");
}

function renderStatus(data) {
  if (data.missing) { $("r-message").textContent = "this rollout does not exist (any more)"; return; }
  const s = data.status, spec = data.spec || {};
  state.status = s;
  state.spec = spec;
  $("r-name").textContent = data.name;
  $("r-phase").textContent = s.phase || "";
  $("r-phase").className = "phase " + (s.phase || "");
  $("r-message").textContent = s.message || "";
  renderSchema(s);
  const strategy = s.strategy || {};
  // steps
  const steps = ((spec.spec || {}).strategy || {}).canary ? spec.spec.strategy.canary.steps || [] : [];
  const ol = $("steps");
  ol.replaceChildren();
  if (!steps.length) ol.append(el("li", { class: "muted", text: strategy.type || "rolling update" }));
  steps.forEach((step, i) => {
    const cls = strategy.stepIndex == null ? "" : i < strategy.stepIndex ? "done" : i === strategy.stepIndex ? "current" : "";
    let text = Object.keys(step).join(", ");
    if (step.setWeight != null) text = "setWeight " + step.setWeight + "%";
    else if (step.pause) text = step.pause.duration == null ? "pause (until promoted)" : "pause " + step.pause.duration + "s";
    else if (step.analysis) text = "analysis (" + ((step.analysis.templates || []).map((t) => t.templateName).join(", ")) + ")";
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

// A revision's colour comes from the revision itself (its number), never from its place in a legend:
// the same revision has the same colour in every chart, the weights bar and after every refresh, and
// two consecutive revisions (the usual stable and canary) always differ.
const PALETTE = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];
function colorOf(rev) {
  const n = Number(rev);
  if (Number.isInteger(n) && n > 0) return PALETTE[(n - 1) % PALETTE.length];
  let h = 0;
  for (const c of String(rev)) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return PALETTE[h % PALETTE.length];
}

// The revisions that hold traffic (a weight above 0) or instances (not stopped) now, by number,
// with their weight and instance count: the only ones charts and legends show.
function liveRevisions(s) {
  const live = {};
  const add = (rev) => (live[rev] = live[rev] || { weight: null, instances: 0 });
  const weights = (s && s.strategy && s.strategy.weights) || null;
  if (weights) for (const [rev, n] of Object.entries(weights)) if (n > 0) add(rev).weight = n;
  for (const i of (s && s.instances) || []) if (i.state !== "stopped" && i.revision != null) add(String(i.revision)).instances += 1;
  return live;
}

// Axis ticks on round numbers: a step of 1, 2 or 5 x 10^n, the fewest ticks above `max` in at most
// `count` steps; the axis ends on its last tick. (tests/e2e/test_dashboard_charts.py holds the same rule
// in Python, checks its properties, and checks this function against it in Chromium.)
function niceTicks(max, count) {
  if (!(max > 0) || !Number.isFinite(max)) max = 1;
  const raw = max / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  let step = 10 * mag;
  for (const m of [1, 2, 5]) if (m * mag >= raw * (1 - 1e-9)) { step = m * mag; break; }
  const n = Math.ceil(max / step - 1e-9);
  const ticks = [];
  for (let k = 0; k <= n; k++) ticks.push(Number((k * step).toPrecision(12)));
  return ticks;
}

// Time ticks at round clock times (every 1, 2, 5, 10, 15 or 30 s, 1, 2, 5 or 10 min), at most `count`.
const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600];
function timeTicks(tmin, tmax, count) {
  const step = TIME_STEPS.find((s) => (tmax - tmin) / s <= count) || 600;
  const ticks = [];
  let t = Math.ceil(tmin / step) * step;
  if (t < tmin) t += step; // tmin / step rounded down to a multiple below tmin
  for (; t <= tmax; t += step) ticks.push(t);
  return ticks;
}

function clock(t) {
  const d = new Date(t * 1000);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((x) => String(x).padStart(2, "0")).join(":");
}

// `tmin`: where the shown revisions' data starts (the same for every chart, so they line up).
function drawChart(id, lines, format, floor, tmin) {
  const root = $(id);
  root.replaceChildren();
  const W = 900, H = 180, L = 54, R = 8, T = 8, B = 22;
  const now = Date.now() / 1000;
  const all = lines.flatMap((l) => l.points.filter((p) => p[0] >= tmin && p[1] != null));
  if (!all.length) {
    const t = svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" });
    t.textContent = "no data yet";
    root.append(t);
    root.dataset.tmin = "";
    return;
  }
  const tmax = Math.max(now, tmin + 10);
  const ticks = niceTicks(Math.max(...all.map((p) => p[1]), floor || 0), 4);
  const vmax = ticks[ticks.length - 1];
  root.dataset.tmin = String(tmin);
  root.dataset.ticks = ticks.join(",");
  const x = (t) => L + ((t - tmin) / (tmax - tmin)) * (W - L - R);
  const y = (v) => H - B - (v / vmax) * (H - T - B);
  for (const v of ticks) {
    root.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    const t = svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", class: "tick" });
    t.textContent = format(v, vmax);
    root.append(t);
  }
  root.append(svg("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  root.append(svg("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }));
  for (const t of timeTicks(tmin, tmax, 6)) {
    const label = svg("text", { x: x(t), y: H - 6, "text-anchor": "middle", class: "time-tick" });
    label.textContent = clock(t);
    root.append(svg("line", { class: "axis", x1: x(t), x2: x(t), y1: H - B, y2: H - B + 4 }), label);
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
    const text = clock(e.time) + " " + e.type + ": " + e.message;
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
  t.style.left = Math.min(ev.clientX + 12, window.innerWidth - 300) + "px";
  t.style.top = ev.clientY + 12 + "px";
  t.hidden = false;
}

// Tick labels with as many decimals as the step needs (0.5, 1, 1.5 / 0.02, 0.04).
function decimals(vmax) {
  const step = vmax / 4;
  return step >= 1 ? 0 : Math.min(6, Math.ceil(-Math.log10(step) + 1e-9));
}

function drawCharts() {
  const revs = (state.series && state.series.revisions) || {};
  const live = liveRevisions(state.status);
  const rate = [], errors = [], latency = [];
  const legend = $("legend");
  legend.replaceChildren();
  const shown = Object.keys(revs).filter((rev) => rev in live).sort((a, b) => Number(a) - Number(b));
  for (const rev of shown) {
    const p = revs[rev].points;
    rate.push({ revision: rev, label: "rps", points: p.map((q) => [q.t, q.rps]) });
    errors.push({ revision: rev, label: "errors", points: p.map((q) => [q.t, q.errorRate == null ? null : 100 * q.errorRate]) });
    latency.push({ revision: rev, label: "p50", points: p.map((q) => [q.t, q.p50 == null ? null : q.p50 * 1000]) });
    latency.push({ revision: rev, label: "p95", dash: "6 3", points: p.map((q) => [q.t, q.p95 == null ? null : q.p95 * 1000]) });
    latency.push({ revision: rev, label: "p99", dash: "2 3", points: p.map((q) => [q.t, q.p99 == null ? null : q.p99 * 1000]) });
  }
  for (const rev of Object.keys(live).sort((a, b) => Number(a) - Number(b))) {
    const sw = el("i");
    sw.style.background = colorOf(rev);
    const info = live[rev], parts = [];
    if (info.weight != null) parts.push(info.weight + "%");
    if (info.instances) parts.push(info.instances + (info.instances === 1 ? " instance" : " instances"));
    legend.append(el("span", { "data-revision": rev, "data-color": colorOf(rev) }, sw, "revision " + rev + (parts.length ? " (" + parts.join(", ") + ")" : "")));
  }
  legend.append(el("span", { class: "muted", text: "latency: solid P50, dashed P95, dotted P99; orange lines: events" }));
  // The time axis starts where the shown data does (at most WINDOW seconds back) and ends now.
  const since = Date.now() / 1000 - WINDOW;
  const times = shown.flatMap((rev) => revs[rev].points.map((q) => q.t).filter((t) => t >= since));
  const tmin = times.length ? Math.min(...times) : since;
  const fixed = (v, vmax) => v.toFixed(decimals(vmax));
  drawChart("chart-rate", rate, fixed, 0, tmin);
  drawChart("chart-errors", errors, (v, vmax) => fixed(v, vmax) + "%", 1, tmin);
  drawChart("chart-latency", latency, fixed, 0, tmin);
}

async function pollSeries() {
  if (!state.name) return;
  try {
    state.series = await api("GET", "/api/v1/rollouts/" + encodeURIComponent(state.name) + "/series");
    drawCharts();
    renderInstances();
  } catch (e) { /* the next poll retries; a refused token logs out */ }
}

// A sparkline of a check's recent values, with its limit (dashed) when it has one.
function sparkline(check) {
  const W = 120, H = 28, P = 2;
  const pts = check.series || [];
  const box = svg("svg", { class: "spark", viewBox: "0 0 " + W + " " + H, width: W, height: H, "data-points": String(pts.length) });
  const title = svg("title", {});
  title.textContent = check.quantity + ": the last " + pts.length + " measurements" + (check.against === "limit" && check.reference != null ? "; dashed: the limit" : "");
  box.append(title);
  if (pts.length < 2) return box;
  const t0 = pts[0][0], t1 = pts[pts.length - 1][0];
  const values = pts.map((p) => p[1]);
  if (check.against === "limit" && check.reference != null) values.push(check.reference);
  const lo = Math.min(0, ...values), hi = Math.max(...values);
  const span = hi - lo || 1;
  const x = (t) => P + ((t - t0) / (t1 - t0 || 1)) * (W - 2 * P);
  const y = (v) => H - P - ((v - lo) / span) * (H - 2 * P);
  if (check.against === "limit" && check.reference != null) {
    box.append(svg("line", { class: "limit", x1: P, x2: W - P, y1: y(check.reference), y2: y(check.reference) }));
  }
  box.append(svg("polyline", { points: pts.map((p) => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" ") }));
  return box;
}

const VERDICT_WORDS = { pass: "pass", fail: "fail", inconclusive: "inconclusive", running: "running", error: "error" };

// One metric as people read it: verdict, each value with its unit against the limit or the baseline
// (computed by the control plane: gapless.analysis.readings), each with a sparkline of its recent values.
function renderReading(r, counts, finished) {
  const checks = el("div", { class: "checks" });
  for (const c of r.checks || []) {
    checks.append(el("div", { class: "check", "data-quantity": c.quantity, "data-unit": c.unit },
      el("span", { class: "check-text", text: c.text }), sparkline(c)));
  }
  if (!(r.checks || []).length) checks.append(el("div", { class: "check muted", text: r.measured + " measurements" }));
  if (r.verdict !== "pass" && r.message) checks.append(el("div", { class: "why muted", text: r.message }));
  let verdict = VERDICT_WORDS[r.verdict] || "error";
  if (finished && verdict === "running") verdict = "stopped"; // its run ended (another metric decided)
  return el("div", { class: "reading", "data-metric": r.metric, "data-verdict": verdict },
    el("span", { class: "verdict " + verdict, text: verdict }),
    el("span", { class: "metric-name", text: r.metric }),
    checks,
    el("span", { class: "counts muted", text: counts }));
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
      const verdict = VERDICT_WORDS[{ successful: "pass", failed: "fail" }[run.phase] || run.phase] || "error";
      const head = el("p", { class: "run", "data-run": run.id },
        el("span", { class: "verdict " + verdict, text: verdict }),
        " revision " + run.revision + ", " + run.name + (run.message && verdict !== "pass" ? ": " + run.message : ""));
      const list = el("div", { class: "readings" });
      const byName = {};
      for (const m of run.metrics || []) byName[m.name] = m;
      for (const r of run.readings || []) {
        const m = byName[r.metric] || {};
        const counts = (m.successful || 0) + " pass, " + (m.failed || 0) + " fail, " + (m.inconclusive || 0) + " inconclusive" + (m.dryRun ? " (dry run)" : "");
        list.append(renderReading(r, counts, run.finishedAt != null));
      }
      box.append(head, list);
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

// -- flags -------------------------------------------------------------------------------------------

function flagsToken() { return sessionStorage.getItem("gapless-flags-token") || ""; }

async function ensureFlagsToken() {
  if (flagsToken()) return flagsToken();
  const s = await api("GET", "/api/v1/dashboard/session");
  if (!s.flagsToken) throw new Error("the flag service is not available (yet)");
  sessionStorage.setItem("gapless-flags-token", s.flagsToken);
  return s.flagsToken;
}

async function flagApi(method, path) {
  const t = await ensureFlagsToken();
  const r = await fetch("/flags/api/v1" + path, { method, headers: { Authorization: "Bearer " + t } });
  const data = await r.json().catch(() => ({}));
  if (r.status === 401 || r.status === 403) {
    sessionStorage.removeItem("gapless-flags-token");
    throw new Error("the flag admin token was refused (" + r.status + ")");
  }
  if (!r.ok) throw new Error(data.error || ("HTTP " + r.status));
  return data;
}

function flagMessage(text) { $("flags-message").textContent = text || ""; }

async function loadProjects() {
  try {
    const data = await flagApi("GET", "/projects");
    const ul = $("flag-projects");
    ul.replaceChildren();
    for (const p of data.items || []) {
      ul.append(el("li", { "data-project": p.key },
        el("a", { href: "#/flags/" + encodeURIComponent(p.key), text: p.key }),
        " ", el("span", { class: "muted", text: (p.environments || []).join(", ") })));
    }
    if (!ul.children.length) ul.append(el("li", { class: "muted", text: "no projects" }));
    flagMessage("");
  } catch (e) { flagMessage(e.message); }
}

function fmtPercent(p) { return (p >= 10 || p === 0 || p === 100 ? Math.round(p) : Number(p.toPrecision(2))) + "%"; }

function stageText(stage) {
  if (!stage) return "";
  return "stage " + (stage.index + 1) + "/" + stage.of + (stage.name ? " " + stage.name : "");
}

async function loadFlags() {
  const project = state.flagProject;
  if (!project) return;
  try {
    const [info, data] = await Promise.all([
      flagApi("GET", "/projects/" + encodeURIComponent(project)),
      flagApi("GET", "/projects/" + encodeURIComponent(project) + "/flags"),
    ]);
    if (project !== state.flagProject) return;
    const seen = JSON.stringify([info, data]);
    if (seen === state.flagsSeen) return; // unchanged: keep the rows (and the buttons) as they are
    state.flagsSeen = seen;
    const envs = info.environments || [];
    $("flag-head").replaceChildren(el("tr", {},
      el("th", { text: "flag" }), el("th", { text: "kind" }), el("th", { text: "owner" }),
      ...envs.map((env) => el("th", { text: env + (info.revisions && info.revisions[env] != null ? " (rev " + info.revisions[env] + ")" : "") })),
      el("th", { text: "last evaluated" })));
    const body = $("flag-rows");
    body.replaceChildren();
    for (const f of data.items || []) {
      const key = el("td", {}, el("strong", { text: f.key }));
      if (f.archived) key.append(el("span", { class: "muted", text: " (archived)" }));
      if (f.stale) key.append(el("span", { class: "stale-badge", title: (f.staleReasons || []).join("; "), text: "stale" }));
      const cells = envs.map((env) => {
        const st = (f.environments || {})[env] || {};
        const td = el("td", { class: "env", "data-env": env },
          el("span", { class: "flag-state " + (st.enabled ? "on" : "off"), "data-state": st.enabled ? "on" : "off", text: st.enabled ? "on" : "off" }));
        if (st.enabled) {
          td.append(el("button", { class: "danger", "data-kill": env, "data-flag": f.key, text: "kill" }));
        } else {
          td.append(el("button", { "data-enable": env, "data-flag": f.key, text: "enable" }));
        }
        if (st.stage) td.append(el("span", { class: "stage", "data-stage": String(st.stage.index), text: stageText(st.stage) }));
        // Who gets what (the flag service's summary): the rules in evaluation order, then everyone else.
        const rollout = st.rollout;
        if (rollout) {
          td.append(el("span", { class: "rollout", "data-percent": String(rollout.percent),
            text: st.enabled ? "rollout " + fmtPercent(rollout.percent) : "off for everyone" + (rollout.percent ? " (rollout " + fmtPercent(rollout.percent) + " when on)" : "") }));
        }
        const rules = el("ol", { class: "rules" });
        for (const r of st.rules || []) rules.append(el("li", { text: r }));
        if (rollout) rules.append(el("li", { class: "muted", text: rollout.text }));
        if (rules.children.length) td.append(rules);
        return td;
      });
      const last = f.lastEvaluatedAt ? new Date(f.lastEvaluatedAt * 1000).toLocaleString() : "never";
      body.append(el("tr", { "data-flag": f.key, class: f.stale ? "stale" : "", title: (f.staleReasons || []).join("; ") },
        key, el("td", { text: f.kind || f.type || "" }), el("td", { text: f.owner || "" }),
        ...cells, el("td", { class: "muted", text: last })));
    }
    if (!body.children.length) body.append(el("tr", {}, el("td", { colspan: String(envs.length + 4), class: "muted", text: "no flags" })));
    flagMessage("");
  } catch (e) { flagMessage(e.message); }
}

async function loadFlagEvents() {
  const project = state.flagProject;
  if (!project) return;
  try {
    const q = new URLSearchParams({ rollout: "flags:" + project, since: String(state.flagEventsSince || 0) });
    const data = await api("GET", "/api/v1/events?" + q.toString());
    if (project !== state.flagProject) return;
    for (const e of data.items || []) {
      state.flagEventsSince = e.id;
      $("flag-events").prepend(el("li", { "data-type": e.type, title: "revision " + e.revision,
        text: new Date(e.time * 1000).toLocaleTimeString() + "  " + e.type + "  " + e.message }));
    }
    while ($("flag-events").children.length > 100) $("flag-events").lastChild.remove();
  } catch (e) { /* the next poll retries; a refused token logs out */ }
}

async function flagAction(kind, flag, env) {
  const project = state.flagProject;
  const ask = kind === "kill"
    ? "Kill switch: turn flag " + flag + " off for everyone in " + env + " (" + project + ")?"
    : "Enable flag " + flag + " in " + env + " (" + project + ")?";
  if (!window.confirm(ask)) return;
  const out = $("flag-result");
  try {
    const path = "/projects/" + encodeURIComponent(project) + "/flags/" + encodeURIComponent(flag) +
      "/environments/" + encodeURIComponent(env) + "/" + kind;
    const r = await flagApi("POST", path);
    out.className = "ok";
    out.textContent = kind + " " + flag + " in " + env + ": done" + (r.revisions && r.revisions[env] != null ? " (revision " + r.revisions[env] + ")" : "");
  } catch (e) {
    out.className = "error";
    out.textContent = kind + " " + flag + " in " + env + ": " + e.message;
  }
  loadFlags();
  loadFlagEvents();
}

function refreshFlags() {
  loadFlags();
  loadFlagEvents();
}

function flagsFallback(on) {
  if (on && !state.fallback) {
    state.fallback = setInterval(refreshFlags, FLAGS_FALLBACK_MS);
    state.timers.push(state.fallback);
  } else if (!on && state.fallback) {
    clearInterval(state.fallback);
    state.timers = state.timers.filter((t) => t !== state.fallback);
    state.fallback = null;
  }
}

// The project's change stream: every committed change (any environment, made here, by the CLI or the
// API, or by a release plan's timer) makes the view read the project again. While it is down the view
// polls slowly; a refused stream (a revoked token) is opened again with a fresh token after 5 s.
async function watchFlags(project) {
  const view = state.view;
  const retry = () => setTimeout(() => { if (state.view === view) watchFlags(project); }, 5000);
  let t;
  try { t = await ensureFlagsToken(); } catch (e) { flagMessage(e.message); flagsFallback(true); retry(); return; }
  if (state.view !== view) return;
  const q = new URLSearchParams({ token: t });
  const source = new EventSource("/flags/api/v1/projects/" + encodeURIComponent(project) + "/changes?" + q.toString());
  const changed = () => { setLive(true); flagsFallback(false); refreshFlags(); };
  source.addEventListener("revisions", changed); // sent on every (re)connect: catch up
  source.addEventListener("change", changed);
  source.onerror = () => {
    if (state.source !== source) return;
    setLive(false);
    flagsFallback(true);
    if (source.readyState === EventSource.CLOSED) { // refused, not merely cut: the browser gives up
      source.close();
      state.source = null;
      sessionStorage.removeItem("gapless-flags-token");
      retry();
    }
  };
  state.source = source;
}

function openFlags(project) {
  stop();
  state.name = null;
  state.flagProject = project || null;
  show("flags");
  $("flags-project-name").textContent = project ? "/ " + project : "";
  $("flags-projects-card").hidden = !!project;
  $("flags-project").hidden = !project;
  $("flag-result").textContent = "";
  if (project) {
    state.flagsSeen = null;
    state.flagEventsSince = 0;
    $("flag-rows").replaceChildren();
    $("flag-events").replaceChildren();
    refreshFlags();
    watchFlags(project);
    state.timers.push(setInterval(loadFlags, FLAGS_USAGE_MS));
  } else {
    loadProjects();
    state.timers.push(setInterval(loadProjects, 5000));
    setLive(true);
  }
}

$("flag-rows").addEventListener("click", (ev) => {
  const b = ev.target.closest("button");
  if (!b) return;
  if (b.dataset.kill) flagAction("kill", b.dataset.flag, b.dataset.kill);
  else if (b.dataset.enable) flagAction("enable", b.dataset.flag, b.dataset.enable);
});

// -- migrations ---------------------------------------------------------------------------------------

const fmtRows = (n) => Number(n).toLocaleString("en-US");

// The step a migration is at, in words that follow it: "expand, step 2/5", then "backfill 41% (12,300 /
// 30,000 rows)" moving with each progress reading, then "both versions served ...", then "completed".
function migrationStep(m) {
  const type = m.last ? m.last.type : "";
  if (type === "MigrationCompleted") return ["completed: old version removed (contract)", "ok"];
  if (type === "MigrationRolledBack") return ["rolled back", "bad"];
  const tables = Object.values(m.backfill);
  const done = tables.reduce((a, b) => a + b.done, 0), total = tables.reduce((a, b) => a + b.total, 0);
  const pct = total ? Math.min(100, Math.floor((100 * done) / total)) : 100;
  if (type === "BackfillDone" || (tables.length && tables.every((b) => b.final))) {
    return ["both versions served (backfill done: " + fmtRows(done) + " rows); next: complete", ""];
  }
  if (tables.length && (tables.some((b) => b.live) || !m.last || type === "MigrationStarted")) {
    return ["backfill " + pct + "% (" + fmtRows(done) + " / " + fmtRows(total) + " rows)", "running"];
  }
  if (type === "MigrationStarted") {
    const step = (m.last.message || "").match(/step (\d+)\/(\d+)/);
    return [step ? "expand, step " + step[1] + "/" + step[2] : "expand", "running"];
  }
  return [type || "-", ""];
}

// "backfill users 300/300; backfill orders 5/5" -> [{table, done, total}]
function backfillOf(message) {
  return Array.from((message || "").matchAll(/backfill (\S+) (\d+)\/(\d+)/g),
    (m) => ({ table: m[1], done: Number(m[2]), total: Number(m[3]) }));
}

function migrationOf(database, name) {
  const key = database + "/" + name;
  return state.migrations[key] ||
    (state.migrations[key] = { database, name, backfill: {}, started: false, startedAt: 0, last: null, updated: 0 });
}

function backfillBar(b) {
  const pct = b.total ? Math.min(100, Math.floor((100 * b.done) / b.total)) : b.final ? 100 : 0;
  let text = b.table + " " + fmtRows(b.done) + " / " + fmtRows(b.total) + " (" + pct + "%)";
  if (b.live && b.rate != null) text += ", " + Math.round(b.rate) + " rows/s";
  if (b.live && b.throttled) text += ", throttled";
  const fill = el("div", { class: "fill" + (b.throttled && b.live ? " throttled" : "") });
  fill.style.width = pct + "%";
  return el("div", {
    class: "backfill" + (b.live ? " running" : ""), "data-table": b.table, "data-done": String(b.done),
    "data-total": String(b.total), "data-final": b.final ? "true" : "false",
  }, el("span", { text }), el("div", { class: "bar" }, fill));
}

function renderMigrations() {
  const body = $("migration-rows");
  body.replaceChildren();
  const when = (m) => Math.max(m.last ? m.last.time : 0, m.updated);
  const rows = Object.values(state.migrations).sort((a, b) => when(b) - when(a));
  for (const m of rows) {
    const type = m.last ? m.last.type : "";
    const tables = Object.values(m.backfill);
    const [text, cls] = migrationStep(m);
    const bars = el("div", {});
    for (const b of tables) bars.append(backfillBar(b));
    if (!tables.length) bars.append(el("span", { class: "muted", text: m.started ? "running" : "-" }));
    body.append(el("tr", { "data-migration": m.database + "/" + m.name, "data-status": type },
      el("td", { text: m.database }),
      el("td", { text: m.name }),
      el("td", { class: "migration-status " + cls, text: text }),
      el("td", {}, bars),
      el("td", { text: new Date(when(m) * 1000).toLocaleString() }),
      el("td", { class: "muted", text: m.last ? m.last.message || "" : "" })));
  }
  if (!body.children.length) body.append(el("tr", {}, el("td", { colspan: "6", class: "muted", text: "no migrations reported yet" })));
}

function addMigrationEvents(items) {
  let changed = false;
  for (const e of items) {
    if (!e.rollout.startsWith("migrations:") || e.id <= state.migrationsSince) continue;
    state.migrationsSince = e.id;
    changed = true;
    const database = e.rollout.slice("migrations:".length);
    const m = migrationOf(database, e.revision);
    if (e.type === "MigrationStarted") { m.started = true; m.startedAt = e.time; m.backfill = {}; }
    for (const b of backfillOf(e.message)) { // the final numbers (BackfillDone)
      m.backfill[b.table] = { ...b, rate: null, throttled: false, live: false, final: true };
    }
    m.last = e;
    $("migration-events").prepend(el("li", { "data-type": e.type },
      new Date(e.time * 1000).toLocaleTimeString() + "  " + database + "  " + e.revision + "  " + e.type + "  " + (e.message || "")));
  }
  while ($("migration-events").children.length > 200) $("migration-events").lastChild.remove();
  if (changed) renderMigrations();
}

// Live backfill progress (PUT by `gapless migrate start` about once a second, pushed on the stream).
function addMigrationProgress(items) {
  for (const p of items) {
    const m = migrationOf(p.database, p.migration);
    if (p.updatedAt < m.startedAt) continue; // of an earlier run of the same migration
    const known = m.backfill[p.table];
    if (known && known.final) continue; // BackfillDone's numbers are the last word
    m.backfill[p.table] = {
      table: p.table, done: p.rowsDone, total: Math.max(p.rowsEstimate, p.rowsDone), rate: p.rowsPerSecond,
      throttled: p.throttled, live: !p.done, final: false,
    };
    m.updated = Math.max(m.updated, p.updatedAt);
  }
  if (items.length) renderMigrations();
}

function openMigrations() {
  stop();
  state.name = null;
  state.migrations = {};
  state.migrationsSince = 0;
  show("migrations");
  $("migration-events").replaceChildren();
  renderMigrations();
  stream({}, () => {}, addMigrationEvents, addMigrationProgress);
}

// -- releases ----------------------------------------------------------------------------------------
// GET /api/v1/releases (every release with its steps, records and messages) and /api/v1/rollouts (the
// weights in force) are read every second; the analysis runs of the rollouts a release measures every
// two seconds; release events arrive on the stream. Each part's live state is drawn inside its step.

const RELEASE_ACTIONS = {
  promote: { ask: "Pass the approve gate (or retry the paused step) of release" },
  abort: { ask: "Roll back (newest step first) release" },
  undo: { ask: "Take back the finished release" },
};

function stepDetail(r, s) {
  const box = el("div", { class: "step-detail" });
  const rec = s.record || {};
  if (s.kind === "rollout" && s.rollout && s.phase !== "pending") {
    const ro = state.releaseRollouts[s.rollout];
    if (ro) {
      box.append(el("div", { class: "part", "data-part": "rollout", "data-weights": JSON.stringify((ro.strategy || {}).weights || {}) },
        "rollout " + s.rollout + ": " + (ro.phase || "") + ", weights " + fmtWeights((ro.strategy || {}).weights) +
        ", ready " + (ro.readyReplicas || 0) + "/" + (ro.replicas || 0)));
    }
  }
  if ((s.kind === "migrate" || s.kind === "complete") && rec.engine) {
    const e = rec.engine;
    box.append(el("div", { class: "part", "data-part": "migration", "data-engine-phase": e.phase || "" },
      "migration " + (rec.migration || "") + ": " + (e.phase || "not started") +
      (e.steps ? ", engine step " + e.step + "/" + e.steps : "")));
    for (const b of e.backfills || []) {
      box.append(backfillBar({ table: b.table, done: b.rowsDone, total: Math.max(b.rowsEstimate, b.rowsDone),
        live: !b.done && s.phase === "running", final: !!b.done, throttled: false, rate: null }));
    }
  }
  if (s.kind === "flag" && rec.target) {
    const before = rec.before || {};
    const was = (before.enabled ? "on" : "off") + (before.stage == null ? "" : ", stage " + before.stage);
    const to = "enabled" in rec.target ? (rec.target.enabled ? "on" : "off") : "stage " + rec.target.stage;
    const now = s.phase === "succeeded" || s.phase === "running" ? to : s.phase === "undone" ? was : "-";
    box.append(el("div", { class: "part", "data-part": "flag", "data-flag-now": now },
      "flag: before the release " + was + "; this step sets " + to + (s.phase === "undone" ? " (put back: " + was + ")" : "")));
  }
  if (s.analysis) {
    const runs = (state.releaseRuns[s.rollout || ""] || []).filter((x) => x.key === "release:" + r.name + ":" + s.index ||
      x.key === "release:" + r.name + ":" + s.index + ":verify");
    const last = runs[runs.length - 1];
    const verdict = last ? { successful: "pass", failed: "fail", error: "error", inconclusive: "inconclusive", running: "running" }[last.phase] || last.phase : "none";
    const line = el("div", { class: "part", "data-part": "analysis", "data-verdict": verdict },
      el("span", { class: "verdict " + verdict, text: last ? last.phase : "not started" }), " analysis " + s.analysis.join(", "));
    box.append(line);
    for (const m of last ? last.metrics : []) {
      box.append(el("div", { class: "muted" }, m.name + ": " + m.phase + " (" + m.measured + " measured, " + m.failed + " failed)" +
        (m.message ? " - " + m.message : "")));
    }
  }
  if (s.kind === "approve") {
    box.append(el("div", { class: "part", "data-part": "gate" }, s.phase === "running" ?
      "gate: waiting for promote (gapless release promote " + r.name + ")" : "gate"));
  }
  return box;
}

function renderRelease(r) {
  const current = r.steps.find((s) => ["running", "undoing", "failed"].includes(s.phase));
  const ponr = r.plannedPointOfNoRollback;
  const list = el("ol", { class: "timeline" });
  for (const s of r.steps) {
    const cls = [s === current ? "current" : "", s.index === ponr ? "ponr" : ""].join(" ").trim();
    const head = el("div", { class: "step-head" },
      el("span", { class: "step-name", text: s.index + " " + s.name }),
      el("span", { class: "step-phase " + s.phase, text: s.phase }),
      el("span", { class: "muted", text: s.what }));
    if (s.index === ponr) head.append(el("span", { class: "badge ponr", text: "point of no rollback" }));
    if (s.analysis) head.append(el("span", { class: "badge", text: "analysis" }));
    if (s.kind === "approve") head.append(el("span", { class: "badge", text: "gate" }));
    const li = el("li", { "data-step": String(s.index), "data-phase": s.phase, "data-kind": s.kind, class: cls },
      head, el("div", { class: "muted step-message", text: s.message || "" }), stepDetail(r, s));
    list.append(li);
  }
  const buttons = el("span", { class: "actions" });
  for (const name of Object.keys(RELEASE_ACTIONS)) {
    const b = el("button", { "data-release-action": name, class: name === "abort" ? "danger" : "", text: name });
    b.addEventListener("click", () => releaseAct(r.name, name));
    buttons.append(b);
  }
  const card = el("div", { class: "card release", "data-release": r.name, "data-phase": r.phase || "",
    "data-current": current ? String(current.index) : "" },
    el("div", { class: "release-head" }, el("h2", { text: r.name }),
      el("span", { class: "phase " + (r.phase || ""), text: r.phase || "" }), buttons),
    el("p", { class: "muted release-message", text: r.message || "" }), list);
  for (const [i, why] of r.notUndoable || []) {
    card.append(el("p", { class: "error not-undoable", "data-step": String(i), text: "step " + i + " cannot be undone: " + why }));
  }
  return card;
}

// Re-rendered every second, so a card that did not change is kept as it is, and a changed card keeps
// its buttons: a click never lands on a button that was replaced between mouse down and mouse up.
function renderReleases() {
  const cards = $("release-cards");
  const items = (state.releases || []).slice().sort((a, b) => b.createdAt - a.createdAt);
  const old = new Map(Array.from(cards.querySelectorAll(":scope > .release")).map((c) => [c.dataset.release, c]));
  const next = items.map((r) => {
    const fresh = renderRelease(r);
    const was = old.get(r.name);
    if (!was) return fresh;
    if (was.outerHTML === fresh.outerHTML) return was;
    fresh.querySelector(".actions").replaceWith(was.querySelector(".actions"));
    return fresh;
  });
  if (!next.length) next.push(el("p", { class: "muted", text: "no releases" }));
  const same = next.length === cards.children.length && next.every((c, i) => c === cards.children[i]);
  if (!same) cards.replaceChildren(...next);
}

async function pollReleases() {
  const view = state.view;
  try {
    const [rel, ro] = await Promise.all([api("GET", "/api/v1/releases"), api("GET", "/api/v1/rollouts")]);
    if (state.view !== view) return;
    state.releases = rel.items || [];
    state.releaseRollouts = Object.fromEntries((ro.items || []).map((x) => [x.name, x]));
    renderReleases();
  } catch (e) { /* shown as offline by the stream; the next poll tries again */ }
}

async function pollReleaseRuns() {
  const view = state.view;
  const names = new Set();
  for (const r of state.releases || []) for (const s of r.steps) if (s.analysis && s.rollout) names.add(s.rollout);
  for (const n of names) {
    try {
      const data = await api("GET", "/api/v1/rollouts/" + encodeURIComponent(n) + "/analysis");
      if (state.view !== view) return;
      state.releaseRuns[n] = (data.items || []).filter((x) => String(x.key).startsWith("release:"));
    } catch (e) { /* the rollout may be gone */ }
  }
}

function addReleaseEvents(items) {
  for (const e of items) {
    if (!e.rollout.startsWith("release:")) continue;
    $("release-events").prepend(el("li", { "data-type": e.type },
      new Date(e.time * 1000).toLocaleTimeString() + "  " + e.rollout.slice(8) + "  " + (e.revision || "") + "  " + e.type + "  " + (e.message || "")));
  }
  while ($("release-events").children.length > 200) $("release-events").lastChild.remove();
}

async function releaseAct(name, action) {
  if (!window.confirm(RELEASE_ACTIONS[action].ask + " " + name + "?")) return;
  const out = $("release-result");
  try {
    await api("POST", "/api/v1/releases/" + encodeURIComponent(name) + "/" + action, {});
    out.className = "ok";
    out.textContent = name + " " + action + ": done";
  } catch (e) {
    out.className = "error";
    out.textContent = name + " " + action + ": " + e.message;
  }
  pollReleases();
}

function openReleases() {
  stop();
  state.name = null;
  Object.assign(state, { releases: [], releaseRollouts: {}, releaseRuns: {} });
  show("releases");
  $("release-events").replaceChildren();
  $("release-result").textContent = "";
  renderReleases();
  stream({}, () => {}, addReleaseEvents);
  pollReleases();
  pollReleaseRuns();
  state.timers.push(setInterval(pollReleases, 1000), setInterval(pollReleaseRuns, 2000));
}

function route() {
  if (!token()) { stop(); show("login"); return; }
  const f = location.hash.match(/^#\/flags(?:\/(.+))?$/);
  if (f) { openFlags(f[1] ? decodeURIComponent(f[1]) : null); return; }
  if (location.hash === "#/migrations") { state.flagProject = null; openMigrations(); return; }
  if (location.hash === "#/releases") { state.flagProject = null; openReleases(); return; }
  state.flagProject = null;
  const m = location.hash.match(/^#\/rollouts\/(.+)$/);
  if (m) openRollout(decodeURIComponent(m[1])); else { state.name = null; openList(); }
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const t = $("token").value.trim();
  const r = await fetch("/api/v1/rollouts", { headers: { Authorization: "Bearer " + t } });
  if (!r.ok) { $("login-error").textContent = r.status === 401 ? "wrong token" : "HTTP " + r.status; return; }
  sessionStorage.setItem("gapless-token", t);
  const ft = $("flags-token").value.trim();
  if (ft) sessionStorage.setItem("gapless-flags-token", ft); else sessionStorage.removeItem("gapless-flags-token");
  $("token").value = "";
  $("flags-token").value = "";
  $("login-error").textContent = "";
  route();
});
$("logout").addEventListener("click", () => logout());
document.querySelectorAll("[data-action]").forEach((b) => b.addEventListener("click", () => act(b.dataset.action)));
window.addEventListener("hashchange", route);
route();
