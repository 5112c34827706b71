// lbsim live view. Reads the control API's event stream (GET /events, NDJSON) with fetch
// streaming; events update a small model at once, and the DOM is touched at most once per
// animation frame. Only the newest ROW_CAP requests have rows; the rest are counted.
// Text from the network goes into the DOM as textContent only.
"use strict";

const ROW_CAP = 200;            // request rows kept in the DOM
const OPEN_CAP = 10000;         // requests remembered by client connection (for late events)
const HISTORY_WINDOW_MS = 60000; // the target state strip's span
const POLL_MS = 1000;           // /stats and /targets
const RECONNECT_MS = 2000;
const SOON_MS = 250;            // /stats and /targets again this soon after an answer or a state change

// The LB's own answers, coloured by what kind of cause they are.
const FAMILY = {
  target_timeout: "timeout", connect_timeout: "timeout", deregistration_delay_elapsed: "timeout",
  client_timeout: "timeout",
  connect_refused: "broken", target_closed_connection: "broken", target_closed_mid_body: "broken",
  keep_alive_race: "broken", malformed_response: "broken",
  no_registered_targets: "no-target", no_healthy_targets: "no-target",
};

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};

const state = {
  timeoutMs: null,         // the LB's main timeout, scaled (the dashed line)
  clockOffset: Infinity,   // performance.now() - at_us/1000, smallest seen
  byConn: new Map(),       // conn -> its latest request
  newRows: [],             // requests without a row yet (newest last)
  dirty: new Set(),        // requests with a row to redraw
  shown: [],               // requests with a row, oldest first
  total: 0,                // requests seen on the stream
  notDrawn: 0,             // requests that never got a row (more than a frame could show)
  missed: 0,               // events the server dropped for us (lagged)
  eventsThisSecond: 0,
  lastError: null,
  words: {},               // cause -> the cloud's word for it, as events say
  targets: new Map(),      // id -> {info, history: [{at, state, by}]}
  targetsDirty: false,
  frameQueued: false,
  streams: 0,              // event streams opened so far
  pollDue: false,          // something changed that /stats or /targets will show
};

function fmtMs(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms === 0) return "0";
  if (ms < 1) return (ms * 1000).toFixed(0) + " µs";
  const whole = (x, digits) => (Number.isInteger(x) ? String(x) : x.toFixed(digits));
  if (ms < 1000) return whole(ms, ms < 10 ? 1 : 0) + " ms";
  const s = ms / 1000;
  if (s < 120) return whole(s, s < 10 ? 2 : 1) + " s";
  return whole(s / 60, 1) + " min";
}

// Stream time (ms since the simulator started) for "now", from the smallest observed lag.
function streamNow() {
  return state.clockOffset === Infinity ? null : performance.now() - state.clockOffset;
}

function newRequest(at, conn, method, path) {
  const r = { conn, method, path, t0: at, tf: null, tEnd: null, status: null, by: null,
              cause: null, code: null, explanation: null, target: null, attempt: 0, cut: null, row: null };
  state.total++;
  state.newRows.push(r);
  if (state.newRows.length > ROW_CAP) {
    state.notDrawn += state.newRows.length - ROW_CAP;
    state.newRows.splice(0, state.newRows.length - ROW_CAP);
  }
  if (conn !== undefined && conn !== null) {
    state.byConn.delete(conn);
    state.byConn.set(conn, r);
    if (state.byConn.size > OPEN_CAP) state.byConn.delete(state.byConn.keys().next().value);
  }
  return r;
}

function touch(r) { if (r.row) state.dirty.add(r); }

function onEvent(ev) {
  const at = ev.at_us / 1000;
  if (ev.at_us !== undefined) {
    state.clockOffset = Math.min(state.clockOffset, performance.now() - at);
  }
  state.eventsThisSecond++;
  switch (ev.event) {
    case "request_received":
      newRequest(at, ev.conn, ev.method, ev.path);
      break;
    case "forwarded": {
      const r = state.byConn.get(ev.conn);
      if (!r) break;
      if (r.tf === null) r.tf = at;
      r.attempt = ev.attempt;
      r.target = ev.target;
      touch(r);
      break;
    }
    case "app_answered": {
      const r = state.byConn.get(ev.conn);
      if (!r) break;
      r.tEnd = at; r.status = ev.status; r.by = "app"; r.target = ev.target;
      state.pollDue = true;
      touch(r);
      break;
    }
    case "lb_answered": {
      let r = ev.conn !== undefined ? state.byConn.get(ev.conn) : null;
      if (!r || r.tEnd !== null) r = newRequest(at, ev.conn, null, null);
      r.tEnd = at; r.status = ev.status; r.by = "lb"; r.cause = ev.cause; r.code = ev.code;
      r.explanation = ev.explanation; if (ev.target) r.target = ev.target;
      state.words[ev.cause] = ev.code;
      state.lastError = r;
      state.pollDue = true;
      touch(r);
      break;
    }
    case "response_cut": {
      let r = ev.conn !== undefined ? state.byConn.get(ev.conn) : null;
      if (!r) r = newRequest(at, ev.conn, null, null);
      r.cut = { at, cause: ev.cause, code: ev.code, explanation: ev.explanation };
      state.words[ev.cause] = ev.code;
      if (r.tEnd === null) r.tEnd = at;
      state.lastError = r;
      touch(r);
      break;
    }
    case "target_registered":
      targetEntry(ev.id, { id: ev.id, address: ev.address, state: ev.state }).history.push({ at, state: ev.state, by: "registered" });
      break;
    case "target_state_changed": {
      const t = targetEntry(ev.id, { id: ev.id, address: ev.address, state: ev.to });
      t.info.state = ev.to; t.info.checked_state = ev.checked_state; t.info.reason = ev.reason;
      if (ev.to !== "draining") delete t.info.drain_remaining_ms;
      if (ev.to === "unused") t.info.in_flight = 0;
      state.pollDue = true;
      t.history.push({ at, state: ev.to, by: ev.by, reason: ev.reason });
      if (t.history.length > 50) t.history.shift();
      state.targetsDirty = true;
      break;
    }
    case "simulator_changed": // lbsim demo --ui: the next scenario's simulator
      startAfresh();
      break;
    case "lagged":
      state.missed += ev.missed;
      break;
    default:
      break; // connection_* events: the pool's, not drawn
  }
  schedule();
}

function targetEntry(id, info) {
  let t = state.targets.get(id);
  if (!t) {
    t = { info, history: [] };
    state.targets.set(id, t);
  }
  state.targetsDirty = true;
  return t;
}

function schedule() {
  if (!state.frameQueued) {
    state.frameQueued = true;
    requestAnimationFrame(frame);
  }
}

// ---- drawing (once per animation frame) ----

function frame() {
  state.frameQueued = false;
  const list = $("rows");
  if (state.newRows.length) {
    const fresh = document.createDocumentFragment();
    for (let i = state.newRows.length - 1; i >= 0; i--) {
      const r = state.newRows[i];
      r.row = makeRow(r);
      drawRow(r);
      fresh.appendChild(r.row);
      state.shown.push(r);
    }
    state.newRows = [];
    list.insertBefore(fresh, list.firstChild);
    while (state.shown.length > ROW_CAP) {
      const old = state.shown.shift();
      old.row.remove();
      old.row = null;
      state.dirty.delete(old);
    }
  }
  for (const r of state.dirty) if (r.row) drawRow(r);
  state.dirty.clear();
  let inFlight = false;
  const now = streamNow();
  for (const r of state.shown) {
    if (r.tEnd === null && r.row) { drawBar(r, now); inFlight = true; }
  }
  $("rows-note").dataset.total = state.total;
  $("rows-note").textContent = state.total > state.shown.length
    ? `newest ${state.shown.length} of ${state.total}` + (state.notDrawn ? ` (${state.notDrawn} came too fast to draw; counted below)` : "")
    : `${state.total}`;
  drawLastError();
  if (state.targetsDirty) drawTargets();
  $("missed").textContent = state.missed;
  $("missed-box").classList.toggle("missed", state.missed > 0);
  if (inFlight) schedule(); // in-flight bars grow
}

function makeRow(r) {
  const li = el("li", "req");
  li.append(el("span", "when"), el("span", "what"), el("div", "bar"), el("span", "legs"), el("span", "end"));
  li.querySelector(".bar").append(el("span", "leg lb"), el("span", "leg app"), el("span", "limit"));
  li.addEventListener("click", () => { if (r.by === "lb" || r.cut) li.classList.toggle("open"); });
  return li;
}

function drawRow(r) {
  const li = r.row;
  const family = r.by === "lb" ? (FAMILY[r.cause] || "rejected") : null;
  li.className = "req" + (r.tEnd === null ? " in-flight" : "")
    + (r.status ? " s-" + String(r.status)[0] : "")
    + (family ? " lb f-" + family : "") + (r.cut ? " lb f-" + (FAMILY[r.cut.cause] || "rejected") : "")
    + (li.classList.contains("open") ? " open" : "");
  li.dataset.conn = r.conn ?? "";
  li.dataset.status = r.status ?? "";
  li.dataset.by = r.by ?? "";
  li.dataset.cause = r.cause ?? (r.cut ? r.cut.cause : "");
  li.querySelector(".when").textContent = (r.t0 / 1000).toFixed(2) + " s";
  li.querySelector(".what").textContent = r.method ? `${r.method} ${r.path}` : "(no request handled)";
  li.querySelector(".what").title = (r.target ? `target ${r.target}` : "no target") + (r.attempt > 1 ? `, attempt ${r.attempt}` : "");
  const lbLeg = r.tf !== null ? r.tf - r.t0 : (r.tEnd !== null ? r.tEnd - r.t0 : null);
  const appLeg = r.tf !== null && r.tEnd !== null ? r.tEnd - r.tf : null;
  li.querySelector(".legs").textContent = r.tf !== null
    ? `LB ${fmtMs(lbLeg)} → app ${r.tEnd !== null ? fmtMs(appLeg) : "…"}`
    : (r.tEnd !== null ? `LB ${fmtMs(lbLeg)}, not sent to the app` : "…");
  li.querySelector(".bar").title = li.querySelector(".legs").textContent
    + (state.timeoutMs ? `; the dashed line is the LB's timeout, ${fmtMs(state.timeoutMs)}` : "");
  const end = li.querySelector(".end");
  end.textContent = "";
  if (r.status) {
    end.append(el("span", "badge", String(r.status)), " ", el("span", "by", r.by === "lb" ? "LB: " + r.code : "app"));
  } else if (r.tEnd === null) {
    end.append(el("span", "by", "in flight"));
  }
  if (r.cut) end.append(" ", el("span", "cut", "cut: " + r.cut.code));
  let why = li.querySelector(".why");
  const said = r.by === "lb" ? r : r.cut;
  if (said && !why) {
    why = el("div", "why");
    li.append(why);
  }
  if (said) {
    why.textContent = "";
    why.append(el("code", "word", said.code), " ", el("span", "dim", `(${said.cause})`), " ",
               el("span", "explanation", said.explanation || ""));
    li.title = said.explanation || "";
  }
  drawBar(r, streamNow());
}

function drawBar(r, now) {
  const scale = (state.timeoutMs || 1000) * 1.25; // the timeout line sits at 80%
  const pct = (ms) => Math.max(0, Math.min(100, (ms / scale) * 100));
  const end = r.tEnd !== null ? r.tEnd : (now !== null ? Math.max(now, r.t0) : r.t0);
  const split = r.tf !== null ? r.tf : end;
  const bar = r.row.querySelector(".bar");
  const [lb, app, limit] = bar.children;
  lb.style.left = "0%";
  lb.style.width = Math.max(pct(split - r.t0), 0.4) + "%";
  app.style.left = pct(split - r.t0) + "%";
  app.style.width = (r.tf !== null ? pct(end - r.t0) - pct(split - r.t0) : 0) + "%";
  limit.style.left = pct(state.timeoutMs || 0) + "%";
  limit.hidden = !state.timeoutMs;
}

function drawLastError() {
  const r = state.lastError;
  if (!r || r.drawnAsLast) return;
  r.drawnAsLast = true;
  const said = r.by === "lb" ? r : r.cut;
  const box = $("last-error");
  box.hidden = false;
  box.className = "last-error " + (FAMILY[said.cause] || "rejected");
  $("last-status").textContent = r.by === "lb" ? String(r.status) : "response cut";
  $("last-code").textContent = said.code;
  $("last-cause").textContent = `(${said.cause})`;
  $("last-explanation").textContent = said.explanation || "";
}

// ---- target group ----

function drawTargets() {
  state.targetsDirty = false;
  const ul = $("targets");
  ul.textContent = "";
  const now = streamNow();
  for (const t of state.targets.values()) {
    const i = t.info;
    if (i.state === "unused" && t.history.length && now !== null && now - t.history[t.history.length - 1].at > HISTORY_WINDOW_MS) continue;
    const li = el("li", "target");
    li.dataset.id = i.id;
    li.dataset.state = i.state;
    li.append(el("span", "state st-" + i.state, i.state), " ", el("span", "addr", i.address), " ",
              el("span", "dim", `#${i.id}`));
    const facts = [];
    if (i.checked_state && i.checked_state !== i.state) facts.push(`checks say ${i.checked_state}`);
    if (i.override && i.override !== "auto") facts.push(`override ${i.override}`);
    if (i.reason) facts.push(`last health check: ${i.reason}`);
    if (i.in_flight !== undefined) facts.push(`${i.in_flight} in flight`);
    if (i.drain_remaining_ms !== undefined) facts.push(`drains for ${fmtMs(i.drain_remaining_ms)} more`);
    li.append(el("div", "dim", facts.join(" · ")));
    li.append(strip(t, now));
    if (t.history.length) {
      li.append(el("div", "history", t.history.slice(-6).map((h) =>
        `${(h.at / 1000).toFixed(1)} s ${h.state} (${h.by.replace("_", " ")})`).join(" → ")));
    }
    ul.append(li);
  }
}

// The last HISTORY_WINDOW_MS of a target's states, as coloured segments.
function strip(t, now) {
  const div = el("div", "strip");
  if (now === null || !t.history.length) {
    div.append(Object.assign(el("span", "st-" + t.info.state), { style: "flex: 1" }));
    return div;
  }
  // From the first change seen (at most HISTORY_WINDOW_MS ago) to now.
  const from = Math.max(now - HISTORY_WINDOW_MS, t.history[0].at);
  const points = t.history.filter((h) => h.at >= from);
  const before = t.history.filter((h) => h.at < from).pop();
  const first = before ? { at: from, state: before.state } : null;
  const all = (first ? [first] : []).concat(points);
  if (!first && all.length) {
    const gap = el("span");
    gap.style.flex = String(Math.max(0, all[0].at - from));
    div.append(gap);
  }
  all.forEach((h, k) => {
    const until = k + 1 < all.length ? all[k + 1].at : now;
    const seg = el("span", "st-" + h.state);
    seg.style.flex = String(Math.max(1, until - h.at));
    seg.title = `${h.state} from ${(h.at / 1000).toFixed(1)} s`;
    div.append(seg);
  });
  return div;
}

// ---- polled endpoints ----

async function getJson(path) {
  const resp = await fetch(path, { cache: "no-store" });
  if (!resp.ok) throw new Error(`${path}: ${resp.status}`);
  return resp.json();
}

async function pollStats() {
  try {
    const s = await getJson("/stats");
    const chips = $("by-status");
    chips.textContent = "";
    const lb = s.lb_by_status || {};
    for (const [status, n] of Object.entries(s.by_status).sort()) {
      const own = lb[status] || 0;
      const app = n - own;
      if (app > 0) chips.append(chip(status, app, "app", "s-" + status[0]));
      if (own > 0) chips.append(chip(status, own, "LB", "lb-own s-" + status[0]));
    }
    if (!chips.children.length) chips.append(el("span", "dim", "no requests yet"));
    const table = $("by-cause");
    table.textContent = "";
    const words = state.words;
    for (const [cause, n] of Object.entries(s.by_cause).sort((a, b) => b[1] - a[1])) {
      const tr = el("tr");
      tr.dataset.cause = cause;
      const name = el("td");
      name.append(el("span", "swatch f-" + (FAMILY[cause] || "rejected")), cause);
      if (words[cause] && words[cause] !== cause) name.append(" ", el("span", "dim", `(${words[cause]})`));
      tr.append(name, el("td", "n", String(n)));
      table.append(tr);
    }
    $("retries").textContent = s.retries ? `${s.retries} sent again by the LB (retries)` : "";
  } catch (e) { /* the control API is gone; the stream's state says so */ }
}

function chip(status, n, by, cls) {
  const c = el("span", "chip " + cls);
  c.dataset.status = status;
  c.dataset.by = by;
  c.append(el("span", "badge", status), `${by} × `, el("b", "n", String(n)));
  return c;
}

async function pollTargets() {
  try {
    const list = await getJson("/targets");
    const seen = new Set();
    for (const info of list) {
      seen.add(info.id);
      const t = state.targets.get(info.id);
      if (!t) {
        state.targets.set(info.id, { info, history: [] });
      } else {
        if (t.info.state !== info.state && streamNow() !== null) {
          t.history.push({ at: streamNow(), state: info.state, by: "seen" });
        }
        t.info = info;
      }
    }
    for (const [id, t] of state.targets) {
      if (!seen.has(id) && t.info.state !== "unused") {
        t.info = Object.assign({}, t.info, { state: "unused", in_flight: 0 });
        delete t.info.drain_remaining_ms;
      }
    }
    state.targetsDirty = true;
    schedule();
  } catch (e) { /* as above */ }
}

async function loadConfig() {
  try {
    const c = await getJson("/config");
    $("lb-name").textContent = c.load_balancer;
    $("time-scale").textContent = String(c.time_scale);
    state.timeoutMs = c.timeout.ms;
    $("limit-label").textContent = `${c.timeout.setting} (${fmtMs(c.timeout.ms)}, ${c.timeout.kind.replace("_", "-")})`;
    const full = (ms) => (ms === null || ms === undefined ? "–" : fmtMs(ms / c.time_scale));
    const rows = [
      [c.timeout.setting + ` (${c.timeout.kind.replace("_", "-")})`, c.timeout.ms],
      ["connect timeout", c.connect_timeout_ms],
      ["backend keep-alive", c.backend_keep_alive_ms],
      ["client idle timeout", c.client_idle_timeout_ms],
      ["client keep-alive", c.client_keep_alive_ms],
      ["deregistration delay", c.deregistration_delay_ms],
      ["warmup", c.warmup_ms],
      // Not a cloud timer: network latency, the same at every time scale.
      ["race window (not scaled)", c.race_window_ms, false],
    ];
    if (c.health_checks.enabled) {
      rows.push([`health check interval (${c.health_checks.path})`, c.health_checks.interval_ms]);
      rows.push(["health check timeout", c.health_checks.timeout_ms]);
    }
    const table = $("settings");
    table.textContent = "";
    const head = el("tr");
    head.append(el("th", "", "setting"), el("th", "", "here (scaled)"), el("th", "", "full scale"));
    table.append(head);
    for (const [name, ms, scaled = true] of rows) {
      const tr = el("tr");
      tr.append(el("td", "", name), el("td", "", fmtMs(ms)), el("td", "", scaled ? full(ms) : fmtMs(ms)));
      table.append(tr);
    }
    const more = el("tr");
    more.append(el("td", "", "health checks"), Object.assign(el("td", "", c.health_checks.enabled
      ? `healthy after ${c.health_checks.healthy_threshold}, unhealthy after ${c.health_checks.unhealthy_threshold}`
      : "off"), { colSpan: 2 }));
    const noHealthy = el("tr");
    noHealthy.append(el("td", "", "no healthy target"), Object.assign(el("td", "", c.no_healthy_target.replace("_", " ")), { colSpan: 2 }));
    table.append(more, noHealthy);
    schedule();
  } catch (e) {
    setTimeout(loadConfig, RECONNECT_MS);
  }
}

// ---- the event stream ----

function startAfresh() {
  for (const r of state.shown) if (r.row) r.row.remove();
  Object.assign(state, {
    clockOffset: Infinity, byConn: new Map(), newRows: [], dirty: new Set(), shown: [],
    total: 0, notDrawn: 0, missed: 0, lastError: null, words: {}, targets: new Map(),
    targetsDirty: true,
  });
  $("last-error").hidden = true;
  loadConfig();
  pollTargets();
}

function setLink(cls, text) {
  const l = $("link");
  l.className = "pill " + cls;
  l.textContent = text;
}

async function follow() {
  try {
    const resp = await fetch("/events", { cache: "no-store" });
    if (!resp.ok || !resp.body) throw new Error(`GET /events: ${resp.status}`);
    setLink("link-live", "live");
    // A stream after the first is another lbsim process (the control API only ends a
    // stream when it shuts down): its clock, connections and targets start afresh.
    if (state.streams++ > 0) startAfresh();
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += value;
      const lines = buffered.split("\n");
      buffered = lines.pop();
      for (const line of lines) {
        if (!line) continue;
        try { onEvent(JSON.parse(line)); } catch (e) { /* a line that is not JSON: skipped */ }
      }
    }
    setLink("link-down", "stream ended; reconnecting…");
  } catch (e) {
    setLink("link-down", "control API unreachable; retrying…");
  }
  setTimeout(follow, RECONNECT_MS);
}

setInterval(() => {
  $("rate").textContent = state.eventsThisSecond;
  state.eventsThisSecond = 0;
  pollStats();
  pollTargets();
}, POLL_MS);

// Counters and targets follow the events closely, at most every SOON_MS.
setInterval(() => {
  if (state.pollDue) {
    state.pollDue = false;
    pollStats();
    pollTargets();
  }
}, SOON_MS);

loadConfig();
pollStats();
pollTargets();
follow();
