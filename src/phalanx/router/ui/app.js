// Phalanx web view: polls GET /ui/state and draws it. Builds the page with textContent only, so
// names and messages (which come from users) are never parsed as HTML.
"use strict";
const KEY = "phalanx-api-key";
const PERIOD_MS = 1000;
let timer = null;

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
  if (!state.eventsReadable) parts.push(el("p", {}, "Events cannot be read (no permission to list events)."));
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

async function poll() {
  const key = sessionStorage.getItem(KEY);
  const headers = key ? { Authorization: `Bearer ${key}` } : {};
  try {
    const response = await fetch("/ui/state", { headers, cache: "no-store" });
    if (response.status === 401) {
      sessionStorage.removeItem(KEY);
      document.getElementById("login").hidden = false;
      setStatus(key ? "that key was refused" : "an API key is needed", true);
      return;  // no polling until a key is entered
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(await response.json());
    document.getElementById("logout").hidden = !key;
    setStatus(`live · ${new Date().toLocaleTimeString()}`, false);
  } catch (error) {
    setStatus(`cannot reach the router: ${error.message}`, true);
  }
  timer = setTimeout(poll, PERIOD_MS);
}

function start() {
  document.getElementById("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, document.getElementById("key").value);
    document.getElementById("key").value = "";
    document.getElementById("login").hidden = true;
    clearTimeout(timer);
    poll();
  });
  document.getElementById("logout").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    location.reload();
  });
  poll();
}

document.addEventListener("DOMContentLoaded", start);
