// The console's only script: lays out graphs with dagre and follows the bus (server-sent
// events) so that pages change as jobs run, without polling and without a reload.
"use strict";

const STATES = ["created", "starting", "running", "finishing", "success", "failure", "killed",
  "paused", "open", "none"];

function loadDagre() {
  if (window.dagre) return Promise.resolve(window.dagre);
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = "/static/vendor/dagre.min.js";
    script.onload = () => resolve(window.dagre);
    script.onerror = reject;
    document.head.appendChild(script);
  });
}

const SVG = "http://www.w3.org/2000/svg";
function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function setState(group, state) {
  for (const s of STATES) group.classList.remove("state-" + s);
  group.classList.add("state-" + (state || "none"));
  group.dataset.state = state || "";
  const label = group.querySelector(".node-state");
  if (label) label.textContent = state || "";
  const link = group.closest("a");
  if (link) link.setAttribute("aria-label", group.dataset.kind + " " + group.dataset.label +
    (state ? ": " + state : ""));
}

async function drawGraph(svg) {
  const data = JSON.parse(svg.dataset.graph);
  const dagre = await loadDagre();
  performance.mark("graph-layout-start");
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: "LR", nodesep: 18, ranksep: 60, marginx: 10, marginy: 10 });
  g.setDefaultEdgeLabel(() => ({}));
  // Wide enough for the label (monospace-ish estimate), within bounds.
  const widthOf = (n) => Math.max(150, Math.min(280, n.label.length * 7.6 + 26));
  for (const n of data.nodes) g.setNode(n.id, { width: widthOf(n), height: 44 });
  for (const e of data.edges) g.setEdge(e.source, e.target);
  dagre.layout(g);
  const defs = el("defs", {}, svg);
  const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
    markerWidth: 6, markerHeight: 6, orient: "auto-start-reverse" }, defs);
  el("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrow" }, marker);
  for (const e of g.edges()) {
    const points = g.edge(e).points.map((p) => p.x + "," + p.y).join(" ");
    el("polyline", { points, class: "edge", "marker-end": "url(#arrow)" }, svg);
  }
  for (const n of data.nodes) {
    const pos = g.node(n.id);
    const link = el("a", { href: n.href, class: "node-link" }, svg);
    const group = el("g", { class: "node kind-" + n.kind,
      transform: `translate(${pos.x - pos.width / 2},${pos.y - pos.height / 2})` }, link);
    group.dataset.node = n.id;
    group.dataset.kind = n.kind;
    group.dataset.label = n.label;
    el("rect", { width: pos.width, height: pos.height, rx: n.kind === "repo" ? 4 : 14 }, group);
    const title = el("text", { x: 10, y: 18, class: "node-label" }, group);
    title.textContent = n.label.length > 34 ? n.label.slice(0, 33) + "…" : n.label;
    if (n.id === svg.dataset.current) group.classList.add("current");
    const sub = el("text", { x: 10, y: 35, class: "node-detail" }, group);
    sub.textContent = n.kind === "repo" ? "repo " + n.detail : n.detail + " ";
    const state = el("tspan", { class: "node-state" }, sub);
    state.textContent = n.state || "";
    setState(group, n.state);
  }
  const size = g.graph();
  svg.setAttribute("viewBox", `0 0 ${size.width || 10} ${size.height || 10}`);
  svg.setAttribute("width", size.width || 10);
  svg.setAttribute("height", size.height || 10);
  svg.dataset.rendered = "true";
  performance.mark("graph-rendered");
}

// --- live: one EventSource per page ---------------------------------------------------------

function announce(text) {
  const status = document.getElementById("live-status");
  if (status) status.textContent = text;
}

let refreshTimer = null;
function refreshMain() {
  // Several events in a burst (progress of many datums) cost one refresh.
  if (refreshTimer) return;
  refreshTimer = setTimeout(async () => {
    refreshTimer = null;
    const url = new URL(location.href);
    url.searchParams.set("fragment", "1");
    const response = await fetch(url, { headers: { Accept: "text/html" } });
    if (!response.ok) return;
    const main = document.getElementById("main");
    const html = await response.text();
    const active = document.activeElement && document.activeElement.id;
    main.innerHTML = html;
    for (const svg of main.querySelectorAll("svg.graph[data-graph]")) drawGraph(svg);
    if (active) document.getElementById(active)?.focus();
    document.body.dataset.refreshed = String(Date.now());
  }, 300);
}

function onDagEvent(event) {
  if (!event.pipeline || !event.state) {
    if (event.kind === "repo.created" || event.kind === "repo.deleted") refreshMain();
    return;
  }
  const group = document.querySelector(`g.node[data-node="pipeline:${CSS.escape(event.pipeline)}"]`);
  if (!group) { refreshMain(); return; }
  setState(group, event.state);
  const row = document.querySelector(`tr[data-pipeline="${CSS.escape(event.pipeline)}"] .job-state`);
  if (row) row.innerHTML = `<a href="/jobs/${event.job}"><span class="state state-${event.state}">${event.state}</span></a>`;
  announce(`${event.pipeline}: ${event.state}`);
}

function follow() {
  const body = document.body;
  const mode = body.dataset.live;
  if (!mode || !window.EventSource) return;
  const source = new EventSource("/events");
  source.onopen = () => { body.dataset.following = "true"; announce("live"); };
  source.onerror = () => { body.dataset.following = "false"; announce("reconnecting…"); };
  source.addEventListener("lost", () => (mode === "dag" ? refreshMain() : refreshMain()));
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (mode === "dag") onDagEvent(event);
    else if (mode === "job" && event.job === body.dataset.job) refreshMain();
    else if (mode === "pipeline" && event.pipeline === body.dataset.pipeline) refreshMain();
    else if (mode === "repo" && event.repo === body.dataset.repo) refreshMain();
  };
}

document.addEventListener("DOMContentLoaded", () => {
  for (const svg of document.querySelectorAll("svg.graph[data-graph]")) drawGraph(svg);
  follow();
});
