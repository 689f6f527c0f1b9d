// blazefl dashboard: follows each run's /events stream (SSE) and redraws.
// Every event is the JSON object of its events.jsonl line; a reload replays
// the history, a dropped connection resumes after the last event seen.
"use strict";

const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const KNOWN = new Set(["server_acc", "server_loss", "loss", "num_samples"]);
const runs = new Map();   // name -> {rounds: [...], clients: Map, color}
const charts = {};
let latest = null;        // {run, round}
let useVirtual = false;

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function numbers(obj) {
  const out = {};
  for (const [k, v] of Object.entries(obj || {})) {
    if (typeof v === "number" && Number.isFinite(v)) out[k] = v;
  }
  return out;
}

function xOf(row) {
  return useVirtual && row.virtual_time !== undefined ? row.virtual_time : row.round;
}

// One aligned table per chart: x values of every run, one series per (run, key).
function table(keysOf) {
  const xs = new Set();
  for (const run of runs.values()) for (const r of run.rounds) xs.add(xOf(r));
  const x = [...xs].sort((a, b) => a - b);
  const series = [{label: useVirtual ? "virtual time (s)" : "round"}];
  const data = [x];
  let points = 0;
  for (const [name, run] of runs) {
    for (const key of keysOf(run)) {
      const byX = new Map(run.rounds.filter(r => key in r.values).map(r => [xOf(r), r.values[key]]));
      points += byX.size;
      data.push(x.map(v => (byX.has(v) ? byX.get(v) : null)));
      series.push({label: runs.size > 1 ? `${name}: ${key}` : key,
                   stroke: run.color, dash: key === "loss" ? [6, 4] : undefined,
                   width: 2, spanGaps: true, points: {show: true, size: 5}});
    }
  }
  return {data, series, points};
}

function draw(id, keysOf) {
  const box = document.getElementById(id);
  const {data, series, points} = table(keysOf);
  box.dataset.points = String(points);
  const width = Math.max(box.clientWidth, 400);
  const old = charts[id];
  if (old && old.series.length === series.length) {
    old.setData(data);
    return;
  }
  if (old) old.destroy();
  box.textContent = "";
  // Rounds are whole numbers: ticks at 1, 2, 5, 10, ... rounds apart.
  const xAxis = useVirtual ? {} : {incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]};
  charts[id] = new uPlot(
    {width, height: 240, series, scales: {x: {time: false}}, axes: [xAxis, {}]},
    data, box);
}

function extraKeys(run) {
  const keys = new Set();
  for (const r of run.rounds) for (const k of Object.keys(r.values)) if (!KNOWN.has(k)) keys.add(k);
  return [...keys].sort();
}

function redraw() {
  draw("acc-chart", () => ["server_acc"]);
  draw("loss-chart", () => ["loss", "server_loss"]);
  const anyExtra = [...runs.values()].some(r => extraKeys(r).length);
  document.getElementById("extra-section").hidden = !anyExtra;
  if (anyExtra) draw("extra-chart", extraKeys);
  const hasVirtual = [...runs.values()].some(r => r.rounds.some(x => x.virtual_time !== undefined));
  document.getElementById("xaxis-label").hidden = !hasVirtual;
  drawClients();
}

function drawClients() {
  const box = document.getElementById("clients");
  box.textContent = "";
  if (!latest) return;
  const run = runs.get(latest.run);
  const clients = run.clients.get(latest.round) || [];
  document.getElementById("latest-round").textContent =
    `(round ${latest.round + 1}${runs.size > 1 ? ", " + latest.run : ""})`;
  const slowest = Math.max(1e-9, ...clients.map(c => c.seconds || 0));
  for (const c of [...clients].sort((a, b) => a.cid - b.cid)) {
    const row = el("div", {class: "client" + (c.failed ? " failed" : ""), "data-cid": c.cid});
    row.append(el("span", {class: "label"}, `client ${c.cid}${c.failed ? " FAILED: " + c.reason : ""}`));
    const bar = el("span", {class: "bar"});
    bar.style.width = `${Math.round(200 * (c.seconds || 0) / slowest)}px`;
    row.append(bar, el("span", {}, c.seconds !== undefined ? `${c.seconds.toFixed(3)} s` : ""));
    box.append(row);
  }
}

function onEvent(name, record) {
  const run = runs.get(name);
  const round = record.round;
  if (record.event === "round_started") {
    run.clients.set(round, []);
    latest = {run: name, round};
  } else if (record.event === "client_finished" || record.event === "client_failed") {
    if (!run.clients.has(round)) run.clients.set(round, []);
    run.clients.get(round).push({cid: record.cid, seconds: record.seconds,
      failed: record.event === "client_failed",
      reason: record.error_type || record.kind || record.reason || "error"});
    latest = {run: name, round};
  } else if (record.event === "round_finished") {
    const values = {...numbers(record.metrics), ...numbers(record.summary)};
    const row = {round: round + 1, values};
    if (typeof record.virtual_time === "number") row.virtual_time = record.virtual_time;
    run.rounds.push(row);
    const tr = el("tr", record.failed ? {class: "failed"} : {});
    for (const v of [name, round + 1, record.clients, record.failed, record.seconds.toFixed(2)]) {
      tr.append(el("td", {}, String(v)));
    }
    document.querySelector("#timeline tbody").prepend(tr);
  } else if (record.event === "round_aborted") {
    const tr = el("tr", {class: "failed"});
    for (const v of [name, round + 1, "aborted", record.reason, ""]) tr.append(el("td", {}, String(v)));
    document.querySelector("#timeline tbody").prepend(tr);
  }
}

function follow(name) {
  // EventSource reconnects by itself, sending Last-Event-ID: no event twice.
  const source = new EventSource(`/events?run=${encodeURIComponent(name)}`);
  let pending = false;
  const schedule = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; redraw(); });
  };
  for (const kind of ["round_started", "client_finished", "client_failed",
                      "round_finished", "round_aborted"]) {
    source.addEventListener(kind, (e) => { onEvent(name, JSON.parse(e.data)); schedule(); });
  }
}

async function refreshRuns() {
  const response = await fetch("/api/runs");
  const list = await response.json();
  const box = document.getElementById("runs");
  box.textContent = "";
  for (const info of list) {
    if (!runs.has(info.name)) {
      runs.set(info.name, {rounds: [], clients: new Map(), color: COLORS[runs.size % COLORS.length]});
      follow(info.name);
    }
    const row = el("div", {class: "run"});
    const swatch = el("span", {}, "■ ");
    swatch.style.color = runs.get(info.name).color;
    row.append(swatch, el("span", {}, `${info.name}: ${info.status.state}`));
    box.append(row);
  }
  if (list.length) {
    const first = list[0];
    const status = document.getElementById("status");
    const states = new Set(list.map(r => r.status.state));
    status.dataset.state = states.size === 1 ? first.status.state : "running";
    status.textContent = list.length === 1
      ? `${first.name}: ${first.status.state}` : `${list.length} runs`;
    document.getElementById("config").textContent = JSON.stringify(first.config, null, 2);
  }
}

document.getElementById("xaxis").addEventListener("change", (e) => {
  useVirtual = e.target.checked;
  for (const id of Object.keys(charts)) { charts[id].destroy(); delete charts[id]; }
  redraw();
});
refreshRuns();
setInterval(refreshRuns, 2000);
