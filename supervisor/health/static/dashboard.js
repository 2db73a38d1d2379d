// The actorvisor dashboard: polls the JSON snapshot at `tree` (schema actorvisor.tree/1)
// and renders it. No external scripts, no frameworks; every text goes in via textContent.
"use strict";

(function () {
  const params = new URLSearchParams(window.location.search);
  const interval = Math.max(100, Number(params.get("interval")) || 500);
  const maxEvents = 200;
  let since = 0;

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "style") Object.assign(node.style, value);  // CSSOM: allowed by the page's CSP
      else if (value !== null && value !== undefined) node.setAttribute(key, String(value));
    }
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function seconds(value) {
    if (value === null || value === undefined) return "–";
    if (value < 0.001) return (value * 1e6).toFixed(0) + " µs";
    if (value < 1) return (value * 1e3).toFixed(value < 0.01 ? 2 : 1) + " ms";
    return value.toFixed(2) + " s";
  }

  function percent(value) {
    return value === null || value === undefined ? "–" : (value * 100).toFixed(1) + " %";
  }

  function badge(field, value, kind) {
    if (value === null) return el("span", { class: "muted", "data-field": field }, "–");
    const span = el("span", { class: "badge", "data-field": field }, value);
    span.setAttribute(kind === "status" ? "data-status" : "data-state", value);
    return span;
  }

  function show(value) {
    if (typeof value === "number" && !Number.isInteger(value)) return String(Number(value.toPrecision(4)));
    return typeof value === "object" && value !== null ? JSON.stringify(value) : String(value);
  }

  // The p99 of each slice; leading empty slices (before any data) are left out, so a
  // young service's line spans the width; gaps are slices without calls.
  function sparkline(series) {
    const ns = "http://www.w3.org/2000/svg";
    const width = 140, height = 22;
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    const first = series.findIndex((v) => v !== null);
    if (first < 0) return svg;
    const shown = series.slice(first);
    const top = Math.max(...shown.filter((v) => v !== null)) || 1;
    const step = shown.length > 1 ? (width - 2) / (shown.length - 1) : 0;
    let points = [];
    const flush = () => {
      if (points.length === 1) points.push([points[0][0] + 2, points[0][1]]);  // a dot
      if (points.length) {
        const line = document.createElementNS(ns, "polyline");
        line.setAttribute("points", points.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" "));
        svg.appendChild(line);
      }
      points = [];
    };
    shown.forEach((value, index) => {
      if (value === null) return flush();
      points.push([1 + index * step, height - 2 - (value / top) * (height - 4)]);
    });
    flush();
    svg.setAttribute("data-points", shown.filter((v) => v !== null).length);
    const title = document.createElementNS(ns, "title");
    title.textContent = `p99 per slice, highest ${seconds(top)}`;
    svg.appendChild(title);
    return svg;
  }

  function limiterRoom(limits) {
    const cell = el("td", { "data-field": "limits" });
    if (!limits) { cell.textContent = "–"; return cell; }
    for (const [name, room] of Object.entries(limits.available)) {
      const capacity = limits.capacity[name];
      const wrap = el("div", { title: name });
      if (capacity && room !== null) {
        const fraction = Math.max(0, Math.min(1, room / capacity));
        const bar = el("span", { class: fraction < 0.1 ? "bar low" : "bar" });
        bar.appendChild(el("span", { style: { width: `${(fraction * 100).toFixed(0)}%` } }));
        wrap.appendChild(bar);
      }
      wrap.appendChild(document.createTextNode(
        `${name} ${room === null ? "?" : Math.floor(room)}${capacity ? "/" + capacity : ""}`));
      cell.appendChild(wrap);
    }
    if (limits.queued) cell.appendChild(el("div", { class: "muted" }, `${limits.queued} waiting`));
    return cell;
  }

  // An adaptive concurrency limit: the slots in use over the limit's whole slots, its
  // bounds, and (in the title) its exact value, callers waiting and drops.
  function concurrency(limit) {
    const cell = el("td", { "data-field": "concurrency" });
    if (!limit) { cell.textContent = "–"; return cell; }
    const slots = Math.floor(limit.limit);
    cell.setAttribute("data-limit", limit.limit);
    cell.setAttribute("title",
      `adaptive limit ${show(limit.limit)} (bounds ${limit.min}–${limit.max}), ` +
      `${limit.queued} waiting, ${limit.drops} drops, no-load latency ${seconds(limit.no_load_latency)}`);
    const bar = el("span", { class: limit.in_flight >= slots ? "bar low" : "bar" });
    const used = slots ? Math.min(1, limit.in_flight / slots) : 1;
    bar.appendChild(el("span", { style: { width: `${(used * 100).toFixed(0)}%` } }));
    cell.appendChild(bar);
    cell.appendChild(document.createTextNode(`${limit.in_flight}/${slots}`));
    cell.appendChild(el("span", { class: "muted" }, ` (${limit.min}–${limit.max})`));
    return cell;
  }

  function workerRow(node, depth) {
    const row = el("tr", { class: "worker", "data-path": node.path, "data-kind": node.kind });
    const name = el("td", { style: { paddingLeft: `${8 + depth * 18}px` }, title: node.path }, node.id);
    row.appendChild(name);
    const state = el("td"); state.appendChild(badge("state", node.state, "state")); row.appendChild(state);
    row.appendChild(el("td", { class: "num", "data-field": "restarts" }, node.restarts ?? "–"));
    const health = el("td");
    health.appendChild(badge("health", node.health ? node.health.status : null, "status"));
    if (node.health && node.health.status !== "healthy") {
      health.appendChild(el("span", { class: "muted" }, " " + node.health.reason));
    }
    row.appendChild(health);
    const breaker = el("td");
    breaker.appendChild(badge("breaker", node.breaker ? node.breaker.state : null, "state"));
    if (node.breaker && node.breaker.retry_after) {
      breaker.appendChild(el("span", { class: "muted" }, ` ${node.breaker.retry_after.toFixed(1)} s`));
    }
    row.appendChild(breaker);
    row.appendChild(el("td", { class: "num", "data-field": "failure_rate" },
      node.breaker ? percent(node.breaker.failure_rate) : "–"));
    row.appendChild(limiterRoom(node.limits));
    row.appendChild(el("td", { class: "num", "data-field": "queued" }, node.queued ?? "–"));
    row.appendChild(el("td", { class: "num", "data-field": "in_flight" }, node.in_flight ?? "–"));
    row.appendChild(concurrency(node.concurrency));
    const latency = node.latency;
    row.appendChild(el("td", { class: "num", "data-field": "p50" }, latency ? seconds(latency.p50) : "–"));
    row.appendChild(el("td", { class: "num", "data-field": "p99" }, latency ? seconds(latency.p99) : "–"));
    const spark = el("td", { "data-field": "latency" });
    if (latency) spark.appendChild(sparkline(latency.series));
    row.appendChild(spark);
    row.appendChild(el("td", { class: "num", "data-field": "fallback" },
      node.fallback ? percent(node.fallback.share) : "–"));
    return row;
  }

  function addNode(body, node, depth) {
    if (node.kind === "supervisor") {
      const row = el("tr", { class: "supervisor", "data-path": node.path, "data-kind": "supervisor" });
      row.appendChild(el("td", { style: { paddingLeft: `${8 + depth * 18}px` } }, node.id));
      const state = el("td"); state.appendChild(badge("state", node.state, "state")); row.appendChild(state);
      row.appendChild(el("td", { class: "num", "data-field": "restarts" }, node.restarts));
      row.appendChild(el("td", { colspan: 11, class: "muted" }, node.strategy));
      body.appendChild(row);
      for (const child of node.children) addNode(body, child, depth + 1);
    } else {
      body.appendChild(workerRow(node, depth));
    }
  }

  function renderTree(snapshot) {
    const body = el("tbody", { id: "tree-body" });
    if (snapshot.root) addNode(body, snapshot.root, 0);
    for (const service of snapshot.services) body.appendChild(workerRow(service, 0));
    if (!body.children.length) {
      body.appendChild(el("tr")).appendChild(el("td", { colspan: 14, class: "muted" }, "nothing monitored"));
    }
    document.getElementById("tree-body").replaceWith(body);
    const routers = el("div", { id: "routers" });
    for (const router of snapshot.routers) {
      const parts = Object.entries(router.routes).map(([source, count]) => `${source}: ${count}`);
      routers.appendChild(el("div", { class: "muted" }, `router ${router.name} — ${parts.join(", ")}`));
    }
    document.getElementById("routers").replaceWith(routers);
  }

  function describe(fields) {
    return Object.entries(fields)
      .filter(([key]) => key !== "event")
      .filter(([, value]) => value !== null)
      .map(([key, value]) => `${key}=${show(value)}`)
      .join(" ");
  }

  function renderEvents(snapshot) {
    const feed = snapshot.events;
    if (!feed) return;
    since = feed.next;
    const list = document.getElementById("events");
    for (const item of feed.items) {
      const entry = el("li", { "data-level": item.level, "data-event": item.event, "data-seq": item.seq });
      entry.appendChild(el("span", { class: "muted ago", "data-at": item.at }));
      entry.appendChild(el("span", { class: "name" }, item.event));
      const cid = item.correlation_id ? ` cid=${item.correlation_id}` : "";
      entry.appendChild(el("span", {}, " " + describe(item.fields) + cid));
      list.insertBefore(entry, list.firstChild);
    }
    while (list.children.length > maxEvents) list.removeChild(list.lastChild);
    for (const ago of list.querySelectorAll("span.ago[data-at]")) {
      ago.textContent = `${(snapshot.at - Number(ago.getAttribute("data-at"))).toFixed(1)}s ago `;
    }
  }

  function renderHeader(snapshot) {
    const health = document.getElementById("health");
    health.textContent = snapshot.health.status;
    health.setAttribute("data-status", snapshot.health.status);
    document.getElementById("ready").textContent = snapshot.health.ready ? "ready" : "not ready";
    document.getElementById("updated").textContent =
      `updated ${new Date().toLocaleTimeString()} (loop time ${snapshot.at.toFixed(1)} s)`;
  }

  async function poll() {
    try {
      const response = await fetch(`tree?since=${since}`, { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const snapshot = await response.json();
      renderHeader(snapshot);
      renderTree(snapshot);
      renderEvents(snapshot);
      document.body.setAttribute("data-snapshots", String(Number(document.body.getAttribute("data-snapshots") || 0) + 1));
    } catch (error) {
      const health = document.getElementById("health");
      health.textContent = "disconnected";
      health.setAttribute("data-status", "disconnected");
    }
    window.setTimeout(poll, interval);
  }

  poll();
})();
