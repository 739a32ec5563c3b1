// pageholder console: the memory map, a block's panel, the holders, kept live from
// /v1/events. Plain JavaScript, no build step. Every value that comes from the registry
// is written with textContent (never innerHTML): holder names, URLs and errors are
// holder-controlled text.
"use strict";

const TOKEN_KEY = "pageholder.token";
const PAGE = 1000;            // blocks per /v1/blocks request (the API's maximum)
const HOLDS_PAGE = 50;        // holds per page in the block panel
const FLUSH_MS = 40;          // changes arriving together are fetched together
const MAX_SINGLE_FETCHES = 64; // more dirty blocks than this: reload them all
const POLL_MS = 2000;         // without /v1/events: how often to look again

const COLOURS = {
  online: "#cfe8d5", going_offline: "#f0b429", offline: "#9aa0a6",
  held: "#2f8f4e", unremovable: "#d93025", orphaned: "#8e44ad", selected: "#1d1f21",
  label: "#6b7075",
};

const $ = (id) => document.getElementById(id);

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  admin: false,
  zones: [],
  blocks: new Map(),       // id -> block
  sections: [],            // [{zone, y0, y1, cols, ids}]
  positions: new Map(),    // block id -> {x, y} of its cell
  cell: 8,
  pagesPerBlock: 32768,
  holders: [],
  selected: null,
  holdsCursors: [null],    // cursors of the pages of the selected block's holds
  holdsPage: 0,
  lastEventId: null,
  rev: null,
  dirty: new Set(),
  dirtyAll: false,
  flushTimer: null,
  holdersTimer: null,
  stream: null,
  generation: 0,           // bumped on every (re)connect: old loops stop
  hoverCache: new Map(),   // block id -> holder names (until the block changes)
  lastPaintMs: 0,          // how long the last paint (whole map or changed cells) took
  timings: {},             // firstPaintMs: from navigation start to the first full map
};

// --- HTTP -------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, problem, fallback) {
    super((problem && problem.detail) || fallback);
    this.status = status;
    this.problem = problem;
    this.code = problem && problem.code;
  }
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  let body;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.json);
  }
  const response = await fetch(path, { method: options.method || "GET", headers, body });
  const revision = response.headers.get("X-Pageholder-Revision");
  if (revision !== null && state.rev === null) state.rev = revision;
  if (response.status === 204) return null;
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (!response.ok) throw new ApiError(response.status, data, response.status + " " + response.statusText);
  return data;
}

// --- token ------------------------------------------------------------------------------

function say(text) {
  const box = $("message");
  box.textContent = text;
  box.hidden = !text;
}

async function start() {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (!token) return;
    state.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token").value = "";
    connect();
  });
  $("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = "";
    state.generation += 1;
    if (state.stream) state.stream.abort();
    $("main").hidden = true;
    $("who").textContent = "";
    setLive("offline");
    say("Enter the admin token (printed by pageholder serve) or a holder's token.");
  });
  setupMap();
  setupPanel();
  if (state.token) connect();
  else say("Enter the admin token (printed by pageholder serve) or a holder's token.");
}

async function connect() {
  state.generation += 1;
  const generation = state.generation;
  if (state.stream) state.stream.abort();
  state.rev = null;
  state.lastEventId = null;
  try {
    const me = await api("/v1/whoami");
    state.admin = me.role === "admin";
    $("who").textContent = state.admin ? "admin" : "holder " + me.holder + " (read-only)";
    document.body.classList.toggle("readonly", !state.admin);
    await loadAll();
  } catch (error) {
    $("main").hidden = true;
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      sessionStorage.removeItem(TOKEN_KEY);
      state.token = "";
      say("The registry refused this token (" + (error.code || error.status) + "): " + error.message);
    } else {
      say("Cannot reach the registry: " + error.message);
    }
    return;
  }
  say("");
  $("main").hidden = false;
  layoutMap();
  paintAll();
  if (state.timings.firstPaintMs === undefined) state.timings.firstPaintMs = performance.now();
  follow(generation);
}

// --- loading ----------------------------------------------------------------------------

async function loadBlocks() {
  const blocks = new Map();
  let cursor = null;
  do {
    const query = "/v1/blocks?limit=" + PAGE + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
    const page = await api(query);
    for (const block of page.items) blocks.set(block.id, block);
    cursor = page.next_cursor;
  } while (cursor);
  return blocks;
}

async function loadAll() {
  const [zones, blocks, holders] = await Promise.all([api("/v1/zones"), loadBlocks(), api("/v1/holders")]);
  state.zones = zones.items;
  state.blocks = blocks;
  state.holders = holders.items;
  const first = blocks.values().next().value;
  if (first) state.pagesPerBlock = first.nr_pages;
  state.hoverCache.clear();
  renderHolders();
  summarize();
}

function summarize() {
  let held = 0, offline = 0;
  for (const block of state.blocks.values()) {
    held += block.held_pages;
    if (block.state === "offline") offline += 1;
  }
  $("summary").textContent = state.blocks.size + " blocks, " + offline + " offline, " +
    held.toLocaleString("en") + " held pages" + (state.rev !== null ? ", revision " + state.rev : "");
}

// --- the map ----------------------------------------------------------------------------

function setupMap() {
  const canvas = $("map");
  canvas.addEventListener("mousemove", (event) => hover(event));
  canvas.addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
  canvas.addEventListener("click", (event) => {
    const id = blockAt(event);
    if (id !== null) select(id);
  });
  window.addEventListener("resize", () => { if (!$("main").hidden) { layoutMap(); paintAll(); } });
}

function layoutMap() {
  const canvas = $("map");
  const width = Math.max(200, canvas.parentElement.clientWidth);
  const count = state.blocks.size;
  // cells as big as fit about 400 px of height per row of width, between 5 and 24 px
  state.cell = Math.max(5, Math.min(24, Math.floor(Math.sqrt((width * 400) / Math.max(1, count)))));
  const cell = state.cell;
  const cols = Math.max(1, Math.floor(width / cell));
  const byZone = new Map(state.zones.map((zone) => [zone.id, []]));
  for (const block of state.blocks.values()) {
    if (!byZone.has(block.zone)) byZone.set(block.zone, []);
    byZone.get(block.zone).push(block.id);
  }
  const sections = [];
  const positions = new Map();
  let y = 0;
  for (const [zone, ids] of byZone) {
    if (!ids.length) continue;
    ids.sort((a, b) => a - b);
    const y0 = y + 16;  // a label line above each zone
    const rows = Math.ceil(ids.length / cols);
    sections.push({ zone, y0, y1: y0 + rows * cell, cols, ids });
    ids.forEach((id, index) => {
      positions.set(id, { x: (index % cols) * cell, y: y0 + Math.floor(index / cols) * cell });
    });
    y = y0 + rows * cell + 6;
  }
  state.sections = sections;
  state.positions = positions;
  const ratio = window.devicePixelRatio || 1;
  canvas.style.height = y + "px";
  canvas.width = Math.floor(width * ratio);
  canvas.height = Math.floor(y * ratio);
  canvas.getContext("2d").setTransform(ratio, 0, 0, ratio, 0, 0);
}

function position(id) {
  return state.positions.get(id) || null;
}

function paintAll() {
  const started = performance.now();
  const canvas = $("map");
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  g.font = "11px system-ui, sans-serif";
  g.textBaseline = "bottom";
  for (const section of state.sections) {
    const zone = state.zones.find((z) => z.id === section.zone);
    g.fillStyle = COLOURS.label;
    const label = zone ? "node " + zone.node + " / " + zone.name + "  pfn [" + zone.start_pfn + ", " +
      (zone.start_pfn + zone.spanned_pages) + ")  " + section.ids.length + " blocks" : section.zone;
    g.fillText(label, 0, section.y0 - 2);
    for (const id of section.ids) {
      const at = state.positions.get(id);
      drawCell(g, state.blocks.get(id), at.x, at.y);
    }
  }
  state.lastPaintMs = performance.now() - started;
  document.body.dataset.painted = String(Date.now());
}

function drawCell(g, block, x, y) {
  const size = state.cell - 1;
  g.fillStyle = COLOURS[block.state] || COLOURS.online;
  g.fillRect(x, y, size, size);
  if (block.held_pages > 0 && block.state !== "offline") {
    const filled = Math.max(1, Math.round(size * Math.min(1, block.held_pages / block.nr_pages)));
    g.fillStyle = COLOURS.held;
    g.fillRect(x, y + size - filled, size, filled);
  }
  const mark = Math.max(2, Math.floor(size / 2));
  if (!block.removable) {
    g.fillStyle = COLOURS.unremovable;
    g.beginPath(); g.moveTo(x + size - mark, y); g.lineTo(x + size, y); g.lineTo(x + size, y + mark); g.fill();
  }
  if ((block.orphaned_pages || 0) > 0) {
    g.fillStyle = COLOURS.orphaned;
    g.fillRect(x, y, mark, mark);
  }
  if (state.selected === block.id) {
    g.strokeStyle = COLOURS.selected;
    g.lineWidth = 1;
    g.strokeRect(x + 0.5, y + 0.5, size - 1, size - 1);
  }
}

function repaint(ids) {
  const started = performance.now();
  const g = $("map").getContext("2d");
  for (const id of ids) {
    const block = state.blocks.get(id);
    const at = position(id);
    if (block && at) {
      g.clearRect(at.x, at.y, state.cell, state.cell);
      drawCell(g, block, at.x, at.y);
    }
  }
  state.lastPaintMs = performance.now() - started;
  document.body.dataset.painted = String(Date.now());
}

function blockAt(event) {
  const rect = $("map").getBoundingClientRect();
  const x = event.clientX - rect.left, y = event.clientY - rect.top;
  for (const section of state.sections) {
    if (y < section.y0 || y >= section.y1) continue;
    const col = Math.floor(x / state.cell), row = Math.floor((y - section.y0) / state.cell);
    if (col >= section.cols) return null;
    const index = row * section.cols + col;
    return index < section.ids.length ? section.ids[index] : null;
  }
  return null;
}

let hoverTimer = null;
function hover(event) {
  const id = blockAt(event);
  const tip = $("tooltip");
  if (id === null) { tip.hidden = true; return; }
  const block = state.blocks.get(id);
  const rect = $("map").getBoundingClientRect();
  tip.style.left = Math.min(event.clientX - rect.left + 12, rect.width - 260) + "px";
  tip.style.top = (event.clientY - rect.top + 12) + "px";
  tip.textContent = describe(block, state.hoverCache.get(id));
  tip.hidden = false;
  clearTimeout(hoverTimer);
  if (!state.hoverCache.has(id) && block.holds > 0) {
    hoverTimer = setTimeout(async () => {
      try {
        const page = await api("/v1/pages?start=" + block.start_pfn + "&end=" + (block.start_pfn + block.nr_pages) + "&limit=200");
        const names = [...new Set(page.items.map((hold) => hold.holder))];
        state.hoverCache.set(id, names.length && page.next_cursor ? names.concat("…") : names);
        if (!tip.hidden) tip.textContent = describe(block, state.hoverCache.get(id));
      } catch (_) { /* the tooltip just lacks holders */ }
    }, 120);
  }
}

function describe(block, holders) {
  const lines = [
    "block " + block.id + "  (" + block.zones.join(", ") + ")",
    "pfn [" + block.start_pfn + ", " + (block.start_pfn + block.nr_pages) + ")",
    "state " + block.state + (block.removable ? "" : ", not removable"),
    block.held_pages + " of " + block.nr_pages + " pages held in " + block.holds + " holds",
  ];
  if ((block.orphaned_pages || 0) > 0) lines.push(block.orphaned_pages + " orphaned pages");
  if (block.holds > 0) lines.push("holders: " + (holders ? holders.join(", ") : "…"));
  return lines.join("\n");
}

// --- the block panel --------------------------------------------------------------------

function setupPanel() {
  $("offline").addEventListener("click", () => offline());
  $("online").addEventListener("click", () => online());
  $("holds-next").addEventListener("click", () => { state.holdsPage += 1; loadHolds(); });
  $("holds-prev").addEventListener("click", () => { state.holdsPage = Math.max(0, state.holdsPage - 1); loadHolds(); });
}

function select(id) {
  const previous = state.selected;
  state.selected = id;
  state.holdsCursors = [null];
  state.holdsPage = 0;
  $("report").hidden = true;
  repaint(previous === null ? [id] : [previous, id]);
  renderPanel();
  loadHolds();
}

function renderPanel() {
  const block = state.blocks.get(state.selected);
  if (!block) { $("panel").hidden = true; return; }
  $("panel").hidden = false;
  $("panel-title").textContent = "Block " + block.id;
  const facts = [
    ["zone", block.zones.join(", ")],
    ["pfn range", "[" + block.start_pfn + ", " + (block.start_pfn + block.nr_pages) + ")"],
    ["state", block.state],
    ["held pages", block.held_pages + " of " + block.nr_pages],
    ["holds", String(block.holds)],
    ["removable", block.removable ? "yes" : "no: a hold has no release handler"],
  ];
  if (block.orphaned_pages !== undefined) facts.push(["orphaned pages", String(block.orphaned_pages)]);
  const list = $("panel-facts");
  list.replaceChildren();
  for (const [name, value] of facts) {
    const dt = document.createElement("dt"); dt.textContent = name;
    const dd = document.createElement("dd"); dd.textContent = value;
    list.append(dt, dd);
  }
  $("offline").disabled = block.state !== "online";
  $("online").disabled = block.state !== "offline";
}

async function loadHolds() {
  const block = state.blocks.get(state.selected);
  if (!block) return;
  const cursor = state.holdsCursors[state.holdsPage];
  let query = "/v1/pages?start=" + block.start_pfn + "&end=" + (block.start_pfn + block.nr_pages) + "&limit=" + HOLDS_PAGE;
  if (cursor) query += "&cursor=" + encodeURIComponent(cursor);
  let page;
  try { page = await api(query); } catch (error) { say("Holds of block " + block.id + ": " + error.message); return; }
  if (state.blocks.get(state.selected) !== block) return;  // another block was picked meanwhile
  state.holdsCursors[state.holdsPage + 1] = page.next_cursor;
  const body = $("holds").tBodies[0];
  body.replaceChildren(...page.items.map((hold) =>
    row([hold.holder, hold.pfn, hold.order, hold.state, hold.since], hold.state === "orphaned" ? "state-orphaned" : "")));
  $("holds-prev").disabled = state.holdsPage === 0;
  $("holds-next").disabled = !page.next_cursor;
  $("holds-page").textContent = "page " + (state.holdsPage + 1);
}

function row(values, className) {
  const tr = document.createElement("tr");
  if (className) tr.className = className;
  for (const value of values) {
    const td = document.createElement("td");
    td.textContent = value === null || value === undefined ? "" : String(value);
    tr.append(td);
  }
  return tr;
}

async function offline() {
  const id = state.selected;
  const deadline = Number($("deadline").value) || 30;
  const request = { deadline_s: deadline };
  if ($("reclaim").checked) request.reclaim_orphans = true;
  $("offline").disabled = true;
  showReport("Block " + id + ": offlining…", null);
  let report;
  try {
    report = await api("/v1/blocks/" + id + "/offline", { method: "POST", json: request });
  } catch (error) {
    if (error.code === "offline_failed" && error.problem.report) report = error.problem.report;
    else { showReport("Block " + id + ": " + error.message + " (" + (error.code || error.status) + ")", null); }
  }
  if (report) {
    const how = report.released_pages + " pages released in " + report.released_holds + " holds, " +
      report.webhook_calls + " webhook calls, " + Math.round(report.duration_ms) + " ms";
    const title = report.state === "offline"
      ? "Block " + id + " is offline: " + how
      : "Block " + id + " stays online: " + report.failures.length + " holds not released (" + how + ")";
    showReport(title, report);
  }
  await refreshBlocks([id]);
}

async function online() {
  const id = state.selected;
  try {
    await api("/v1/blocks/" + id + "/online", { method: "POST" });
    showReport("Block " + id + " is online again", null);
  } catch (error) {
    showReport("Block " + id + ": " + error.message + " (" + (error.code || error.status) + ")", null);
  }
  await refreshBlocks([id]);
}

function showReport(title, report) {
  $("report").hidden = false;
  $("report-title").textContent = title;
  const rows = [];
  if (report) {
    for (const failure of report.failures) {
      rows.push(row([failure.holder, failure.pfn, failure.order, failure.reason, failure.detail]));
    }
    for (const hold of report.reclaimed || []) {
      rows.push(row([hold.holder, hold.pfn, hold.order, "reclaimed", "orphaned hold erased without a call"]));
    }
  }
  $("report-table").tBodies[0].replaceChildren(...rows);
  for (const cell of $("report-table").querySelectorAll("tbody td:nth-child(4)")) cell.className = "reason";
}

// --- holders ----------------------------------------------------------------------------

function renderHolders() {
  const body = $("holders").tBodies[0];
  body.replaceChildren(...state.holders.map((holder) => {
    const lease = holder.lease ? holder.lease.state + " (ttl " + holder.lease.ttl_s + " s)" : "none";
    const url = holder.release_url || (holder.has_release_handler ? "(hidden)" : "(no handler)");
    const tr = row([holder.name, url, lease, holder.holds, holder.held_pages, holder.last_error]);
    if (holder.lease && holder.lease.state === "expired") tr.cells[2].className = "state-orphaned";
    return tr;
  }));
}

function scheduleHolders() {
  clearTimeout(state.holdersTimer);
  state.holdersTimer = setTimeout(async () => {
    try { state.holders = (await api("/v1/holders")).items; renderHolders(); } catch (_) { /* next change retries */ }
  }, 150);
}

// --- live: /v1/events -------------------------------------------------------------------

function setLive(mode) {
  const badge = $("live");
  badge.textContent = mode;
  badge.classList.toggle("live", mode === "live");
}

function blocksOf(pfn, order) {
  const per = state.pagesPerBlock;
  const first = Math.floor(pfn / per), last = Math.floor((pfn + 2 ** order - 1) / per);
  const ids = [];
  for (let id = first; id <= last; id += 1) ids.push(id);
  return ids;
}

function onEvent(type, data) {
  if (data && data.rev !== undefined) state.rev = data.rev;
  if (type.startsWith("hold.")) {
    for (const hold of data.holds || []) for (const id of blocksOf(hold.pfn, hold.order)) state.dirty.add(id);
    scheduleHolders();
  } else if (type.startsWith("block.")) {
    if (data.block !== undefined && data.block !== null) state.dirty.add(data.block);
  } else if (type.startsWith("holder.")) {
    scheduleHolders();
    if (type === "holder.expired" || type === "holder.revived" || type === "holder.deleted") state.dirtyAll = true;
  }
  scheduleFlush();
}

function scheduleFlush() {
  if (state.flushTimer !== null) return;
  state.flushTimer = setTimeout(flush, FLUSH_MS);
}

async function flush() {
  state.flushTimer = null;
  const ids = [...state.dirty];
  state.dirty.clear();
  const all = state.dirtyAll || ids.length > MAX_SINGLE_FETCHES;
  state.dirtyAll = false;
  if (all) {
    try { state.blocks = await loadBlocks(); } catch (_) { return; }
    state.hoverCache.clear();
    paintAll();
    renderPanel();
    if (state.selected !== null) loadHolds();
  } else if (ids.length) {
    await refreshBlocks(ids);
  }
  summarize();
}

async function refreshBlocks(ids) {
  const fresh = await Promise.all(ids.map((id) => api("/v1/blocks/" + id).catch(() => null)));
  const changed = [];
  for (const block of fresh) {
    if (!block) continue;
    state.blocks.set(block.id, block);
    state.hoverCache.delete(block.id);
    changed.push(block.id);
  }
  repaint(changed);
  if (changed.includes(state.selected)) { renderPanel(); loadHolds(); }
  summarize();
}

function parseEvents(chunk, pending, dispatch) {
  // The WHATWG event-stream format: fields until a blank line; ":" starts a comment.
  pending.buffer += chunk;
  let newline;
  while ((newline = pending.buffer.search(/\r\n|\r|\n/)) >= 0) {
    const line = pending.buffer.slice(0, newline);
    const skip = pending.buffer[newline] === "\r" && pending.buffer[newline + 1] === "\n" ? 2 : 1;
    pending.buffer = pending.buffer.slice(newline + skip);
    if (line === "") {
      if (pending.data.length) dispatch(pending.event || "message", pending.data.join("\n"), pending.id);
      pending.event = ""; pending.data = []; pending.id = null;
      continue;
    }
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") pending.event = value;
    else if (field === "data") pending.data.push(value);
    else if (field === "id") pending.id = value;
  }
}

async function follow(generation) {
  let backoff = 500;
  while (generation === state.generation) {
    const controller = new AbortController();
    state.stream = controller;
    try {
      const headers = { Accept: "text/event-stream", Authorization: "Bearer " + state.token };
      let url = "/v1/events";
      if (state.lastEventId !== null) headers["Last-Event-ID"] = state.lastEventId;
      else if (state.rev !== null) url += "?since=" + encodeURIComponent(state.rev);
      const response = await fetch(url, { headers, signal: controller.signal });
      if (response.status === 404) { await poll(generation); return; }
      if (response.status === 410) {  // we fell behind retention: start over from a fresh read
        state.lastEventId = null; state.rev = null;
        await loadAll(); layoutMap(); paintAll();
        continue;
      }
      if (!response.ok) throw new Error("events: " + response.status);
      setLive("live");
      backoff = 500;
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      const pending = { buffer: "", event: "", data: [], id: null };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parseEvents(decoder.decode(value, { stream: true }), pending, (type, data, id) => {
          if (id !== null) state.lastEventId = id;
          if (type === "overflow") return;  // the server closes; we resume from lastEventId
          let parsed = null;
          try { parsed = JSON.parse(data); } catch (_) { return; }
          onEvent(type, parsed);
        });
      }
    } catch (_) {
      if (generation !== state.generation) return;
    }
    setLive("reconnecting");
    await new Promise((resolve) => setTimeout(resolve, backoff));
    backoff = Math.min(backoff * 2, 5000);
  }
}

async function poll(generation) {
  // A registry without /v1/events: look again every POLL_MS and repaint what changed.
  setLive("polling");
  while (generation === state.generation) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    try {
      const blocks = await loadBlocks();
      const changed = [];
      for (const [id, block] of blocks) {
        const old = state.blocks.get(id);
        if (!old || JSON.stringify(old) !== JSON.stringify(block)) changed.push(id);
      }
      state.blocks = blocks;
      if (changed.length) { repaint(changed); if (changed.includes(state.selected)) { renderPanel(); loadHolds(); } }
      state.holders = (await api("/v1/holders")).items;
      renderHolders();
      summarize();
    } catch (_) { setLive("reconnecting"); }
  }
}

window.pageholderConsole = state;  // for tests and the curious: read-only use, please
document.addEventListener("DOMContentLoaded", start);
