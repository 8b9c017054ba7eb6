// Phalanx web view: follows GET /ui/events (Server-Sent Events, read with fetch) and draws each
// state; polls GET /ui/state when the stream cannot be had. Builds the page with textContent only,
// so names and messages (which come from users) are never parsed as HTML.
"use strict";
const KEY = "phalanx-api-key";
const PERIOD_MS = 1000;  // polling, while there is no stream
const RETRY_STREAM_MS = 15000;  // how long to poll before trying the stream again
const updates = { stream: 0, poll: 0 };  // what drew the page, for people and tests
window.phalanxUpdates = updates;
let timer = null;
let aborter = null;
let generation = 0;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "class") node.className = value; else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function fmt(value, digits) {
  if (value === null || value === undefined) return "-";
  return typeof value === "number" && digits !== undefined ? value.toFixed(digits) : String(value);
}

function podClass(pod) {
  if (pod.terminating || pod.draining) return "gone";
  if (pod.ready && pod.phase === "Running") return "ok";
  if (pod.phase === "Failed" || pod.reason) return "bad";
  return "wait";
}

function podNode(pod) {
  let label = `${pod.name} ${pod.phase}${pod.ready ? " ready" : ""}`;
  if (pod.draining) label += " draining";
  if (pod.terminating) label += " terminating";
  if (pod.restarts) label += ` restarts ${pod.restarts}`;
  const ep = pod.endpoint;
  if (ep) label += ` · in flight ${ep.inFlight}, queue ${fmt(ep.waiting, 0)}, KV ${ep.kvCacheUsage === null ? "-" : fmt(ep.kvCacheUsage * 100, 0) + "%"}${ep.healthy ? "" : " ejected"}`;
  const node = el("span", { class: `pod ${podClass(pod)}`, "data-pod": pod.name }, label);
  if (pod.reason) node.title = pod.reason;
  return node;
}

function groupNode(group) {
  const title = el("h3", {}, group.name, " ", el("span", {}, `${group.phase}${group.surge ? " (surge)" : ""} · ${group.revision}${group.serving ? " · serving" : ""}`));
  const node = el("div", { class: `group${group.serving ? " serving" : ""}`, "data-group": group.name }, title);
  for (const role of group.roles) {
    node.append(el("div", { class: "role" }, el("b", {}, role.name), ...role.pods.map(podNode)));
  }
  if (group.message) node.append(el("div", { class: "message" }, group.message));
  return node;
}

function servingNode(ms) {
  const head = el("h2", { "data-serving": ms.name }, `${ms.namespace}/${ms.name}`);
  const summary = el("p", { class: "summary" },
    `groups ${ms.current}/${ms.desired} · serving ${ms.serving} · updated ${ms.updated} · revision ${ms.revision}` +
    (ms.conditions.length ? ` · ${ms.conditions.join(" ")}` : ""));
  const groups = el("div", { class: "groups" }, ...ms.groups.map(groupNode));
  const part = el("section", { class: "serving" }, head, summary, groups);
  if (ms.groupsLeftOut) part.append(el("p", {}, `${ms.groupsLeftOut} more groups not shown`));
  return part;
}

function table(columns, rows) {
  return el("table", {}, el("tr", {}, ...columns.map((c) => el("th", {}, c))),
    ...rows.map((row) => el("tr", {}, ...row.map((cell) => el("td", {}, fmt(cell))))));
}

function render(state) {
  const view = document.getElementById("view");
  const parts = [];
  for (const what of state.unreadable || []) {
    parts.push(el("p", { class: "unreadable" }, `Not shown: ${what}; the router has no permission to read them.`));
  }
  if (!state.servings.length) parts.push(el("p", {}, "No ModelServing yet."));
  parts.push(...state.servings.map(servingNode));
  if (state.otherEndpoints.length) {
    parts.push(el("h2", {}, "Other endpoints"), table(["endpoint", "routable", "in flight", "queue", "KV"],
      state.otherEndpoints.map((e) => [e.name, e.routable ? "yes" : "no", e.inFlight, fmt(e.waiting, 0), fmt(e.kvCacheUsage, 2)])));
  }
  const queued = Object.entries(state.queued || {}).map(([k, v]) => `${k} ${v}`).join(", ");
  parts.push(el("p", {}, `router queue: ${queued || "-"}`));
  if (state.policies.length) {
    parts.push(el("h2", {}, "Autoscaling"), table(["policy", "role", "target", "desired", "current", "ready", "reason"],
      state.policies.map((p) => [p.name + (p.observeOnly ? " (observe only)" : ""), p.role, p.target, p.desired, p.current, p.ready, p.reason])));
  }
  parts.push(el("h2", {}, "Timeline"));
  if (!state.eventsReadable) parts.push(el("p", { class: "unreadable" }, "Events cannot be read (see above)."));
  const events = state.timeline.slice().reverse().map((e) =>
    el("tr", { class: `lane-${e.lane} ${e.type}` }, el("td", { title: e.time }, e.time.slice(11, 19)), el("td", {}, e.lane), el("td", {}, e.object), el("td", {}, e.reason), el("td", {}, e.message)));
  parts.push(el("table", { id: "timeline" }, ...events));
  view.replaceChildren(...parts);
}

function setStatus(message, error) {
  const status = document.getElementById("status");
  status.textContent = message;
  status.className = error ? "error" : "";
}

function authHeaders() {
  const key = sessionStorage.getItem(KEY);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function askForKey() {
  const key = sessionStorage.getItem(KEY);
  sessionStorage.removeItem(KEY);
  document.getElementById("login").hidden = false;
  setStatus(key ? "that key was refused" : "an API key is needed", true);
}

function shown(state, via) {
  render(state);
  updates[via] += 1;
  document.getElementById("view").dataset.via = via;
  document.getElementById("logout").hidden = !sessionStorage.getItem(KEY);
  setStatus(`live (${via === "stream" ? "stream" : "polling"}) · ${new Date().toLocaleTimeString()}`, false);
}

// The stream: GET /ui/events read with fetch, so the key travels in the Authorization header (an
// EventSource cannot send one, and a key in the URL would be logged). Resolves "auth" on a 401,
// "failed" when the stream cannot open or ends (the router refused it, restarted or stops).
async function stream() {
  aborter = new AbortController();
  try {
    const response = await fetch("/ui/events", { headers: authHeaders(), cache: "no-store", signal: aborter.signal });
    if (response.status === 401) return "auth";
    if (!response.ok || !response.body) return "failed";
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return "failed";
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = frame.split("\n").filter((line) => line.startsWith("data: ")).map((line) => line.slice(6));
        if (data.length) shown(JSON.parse(data.join("\n")), "stream");  // ": heartbeat" has no data
      }
    }
  } catch (error) {
    return "failed";
  }
}

async function poll() {
  try {
    const response = await fetch("/ui/state", { headers: authHeaders(), cache: "no-store" });
    if (response.status === 401) return "auth";
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    shown(await response.json(), "poll");
    return "ok";
  } catch (error) {
    setStatus(`cannot reach the router: ${error.message}`, true);
    return "failed";
  }
}

const sleep = (ms) => new Promise((resolve) => { timer = setTimeout(resolve, ms); });

// The stream first; while it cannot be had, poll every second and try the stream again now and then.
async function follow(run) {
  for (;;) {
    if (run !== generation) return;  // a newer run (a key was entered) took over
    const streamed = await stream();
    if (run !== generation) return;
    if (streamed === "auth") return askForKey();
    const until = Date.now() + RETRY_STREAM_MS;
    while (Date.now() < until) {
      const polled = await poll();
      if (run !== generation) return;
      if (polled === "auth") return askForKey();
      await sleep(PERIOD_MS);
    }
  }
}

function restart() {
  generation += 1;
  clearTimeout(timer);
  if (aborter) aborter.abort();
  follow(generation);
}

function start() {
  document.getElementById("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, document.getElementById("key").value);
    document.getElementById("key").value = "";
    document.getElementById("login").hidden = true;
    restart();
  });
  document.getElementById("logout").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    location.reload();
  });
  restart();
}

document.addEventListener("DOMContentLoaded", start);
