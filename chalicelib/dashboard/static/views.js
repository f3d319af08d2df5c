// eventpipe dashboard: the four views. Each registers {refresh, reset} on Dash.views.
// What each chart plots is also kept on window.__panels / __regions / __discover / __pipeline
// (the browser test compares it with the API's answers).
"use strict";
(function () {
  const D = window.Dash;
  const $ = (sel) => document.querySelector(sel);
  const COLORS = ["#2f6fdb", "#e8590c", "#2b8a3e", "#c2255c", "#7048e8", "#0c8599", "#a61e4d", "#5c940d",
    "#d9480f", "#364fc7", "#087f5b", "#862e9c"];
  const epoch = (iso) => Date.parse(iso) / 1000;
  const utc = (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC");
  window.__panels = {};

  // ------------------------------------------------------------------------------------ Metrics
  // One panel per metric of GET /v1/metrics; a series per key value; finalized windows solid,
  // windows still open dashed with points.
  const metrics = { specs: null, panels: {} };

  function seriesLabel(row, keys) {
    return keys.length ? keys.map((k) => (row[k] === null || row[k] === undefined ? "(none)" : String(row[k]))).join(" / ") : "all";
  }

  function buildPanel(spec) {
    const measure = D.el("select");
    for (const m of spec.measures) measure.append(D.el("option", { value: m.name, text: m.name + " = " + m.aggregate }));
    const status = D.el("span", { class: "status", text: "loading…" });
    const chart = D.el("div", { class: "plot" });
    const node = D.el("div", { class: "panel", "data-metric": spec.name }, [
      D.el("h2", { text: spec.name }), D.el("p", { class: "desc", text: spec.description || "" }),
      D.el("div", { class: "bar" }, [D.el("span", { text: "measure" }), measure, status]), chart,
      D.el("div", { class: "legend-note", text: "solid: finalized windows · dashed with dots: windows still open" })]);
    const panel = { spec, node, measure, status, chart, plot: null, rows: [], body: null };
    measure.addEventListener("change", () => draw(panel));
    return panel;
  }

  function draw(panel) {
    const { spec, rows, body } = panel;
    const keys = spec.key.filter((k) => k !== "app_id");
    const measure = panel.measure.value;
    const finalizedUntil = epoch(body.finalized_until);
    const xs = [...new Set(rows.map((r) => epoch(r.window_start)))].sort((a, b) => a - b);
    const index = new Map(xs.map((x, i) => [x, i]));
    const labels = [...new Set(rows.map((r) => seriesLabel(r, keys)))].sort();
    const data = [xs];
    const series = [{}];
    labels.forEach((label, i) => {
      const fin = new Array(xs.length).fill(null), open = new Array(xs.length).fill(null);
      for (const r of rows) {
        if (seriesLabel(r, keys) !== label) continue;
        const x = epoch(r.window_start);
        (x < finalizedUntil ? fin : open)[index.get(x)] = r[measure];
      }
      const color = COLORS[i % COLORS.length];
      data.push(fin, open);
      series.push({ label: label, stroke: color, width: 1.5, points: { show: false } },
        { label: label + " (open)", stroke: color, width: 1.5, dash: [5, 4], points: { show: true, size: 5 } });
    });
    window.__panels[spec.name] = { from: panel.range.from, to: panel.range.to, measure, keys, labels,
      finalized_until: body.finalized_until, data, rows: rows.length };
    if (panel.plot) { panel.plot.destroy(); panel.plot = null; }
    panel.chart.replaceChildren();
    if (!rows.length) {
      D.setStatus(panel.status, "no rows in this range", "empty");
      return;
    }
    D.setStatus(panel.status, rows.length + " row(s), " + labels.length + " series; finalized until " +
      body.finalized_until.replace("T", " ").replace("Z", " UTC") + (body.truncated ? " (truncated)" : ""));
    const width = Math.max(300, panel.node.clientWidth - 22);
    panel.plot = new uPlot({ width, height: 220, tzDate: utc, series, legend: { show: labels.length <= 8 },
      scales: { x: { time: true } }, axes: [{}, { size: 56 }] }, data, panel.chart);
  }

  async function refreshPanel(panel) {
    const range = D.range();
    try {
      const body = await D.api("v1/metrics/" + encodeURIComponent(panel.spec.name), { ...range, limit: "10000" });
      panel.rows = body.rows; panel.body = body; panel.range = range;
      draw(panel);
    } catch (err) {
      D.setStatus(panel.status, "error: " + err.message, "error");
      window.__panels[panel.spec.name] = { error: err.status };
    }
  }

  metrics.refresh = async function () {
    if (!metrics.specs) {
      const body = await D.api("v1/metrics");
      metrics.specs = body.metrics;
      const host = $("#panels");
      host.replaceChildren();
      if (!metrics.specs.length) host.append(D.el("p", { class: "status empty", text: "no metrics in metrics.yaml" }));
      for (const spec of metrics.specs) {
        const panel = buildPanel(spec);
        metrics.panels[spec.name] = panel;
        host.append(panel.node);
      }
    }
    await Promise.all(Object.values(metrics.panels).map(refreshPanel));
  };
  metrics.reset = () => { metrics.specs = null; metrics.panels = {}; window.__panels = {}; };
  D.views.metrics = metrics;

  // ------------------------------------------------------------------------------------ Regions
  // region_activity summed per geohash cell over the range; each cell drawn from its bounds.
  const BASE32 = "0123456789bcdefghjkmnpqrstuvwxyz";
  function geohashBounds(hash) {
    let even = true; const lat = [-90, 90], lon = [-180, 180];
    for (const c of hash) {
      const bits = BASE32.indexOf(c);
      for (let b = 4; b >= 0; b--) {
        const range = even ? lon : lat, mid = (range[0] + range[1]) / 2;
        if ((bits >> b) & 1) range[0] = mid; else range[1] = mid;
        even = !even;
      }
    }
    return { south: lat[0], north: lat[1], west: lon[0], east: lon[1] };
  }

  const regions = {};
  regions.refresh = async function () {
    const status = $("#region-status"), select = $("#region-measure"), host = $("#region-map");
    const spec = (metrics.specs || (await D.api("v1/metrics")).metrics).find((m) => m.name === "region_activity");
    if (!spec) { D.setStatus(status, "no region_activity metric in metrics.yaml", "empty"); return; }
    if (!select.options.length) {
      for (const m of spec.measures) select.append(D.el("option", { value: m.name, text: m.name }));
      select.addEventListener("change", () => regions.refresh());
    }
    const cellKey = spec.key.find((k) => k !== "app_id");
    const range = D.range();
    const body = await D.api("v1/metrics/region_activity", { ...range, limit: "10000" });
    const measure = select.value;
    const totals = new Map();
    for (const r of body.rows) if (r[cellKey]) totals.set(r[cellKey], (totals.get(r[cellKey]) || 0) + (r[measure] || 0));
    const cells = [...totals].map(([hash, value]) => ({ hash, value, ...geohashBounds(hash) }));
    window.__regions = { from: range.from, to: range.to, measure, cells };
    host.replaceChildren();
    if (!cells.length) { D.setStatus(status, "no GPS pings in this range", "empty"); return; }
    const max = Math.max(...cells.map((c) => c.value));
    const pad = 0.2;
    const west = Math.min(...cells.map((c) => c.west)) - pad, east = Math.max(...cells.map((c) => c.east)) + pad;
    const south = Math.min(...cells.map((c) => c.south)) - pad, north = Math.max(...cells.map((c) => c.north)) + pad;
    const aspect = (north - south) / (east - west) / Math.cos((north + south) / 2 * Math.PI / 180);
    const H = Math.round(Math.min(640, 900 * aspect)), W = Math.round(H / aspect);
    const x = (lon) => (lon - west) / (east - west) * W, y = (lat) => (north - lat) / (north - south) * H;
    const NS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`); svg.setAttribute("width", W); svg.setAttribute("height", H);
    for (let lat = Math.ceil(south); lat <= north; lat++) {
      const line = document.createElementNS(NS, "line");
      Object.entries({ x1: 0, x2: W, y1: y(lat), y2: y(lat), stroke: "#e1e5eb" }).forEach(([k, v]) => line.setAttribute(k, v));
      const label = document.createElementNS(NS, "text");
      Object.entries({ x: 4, y: y(lat) - 3, fill: "#8892a3", "font-size": 11 }).forEach(([k, v]) => label.setAttribute(k, v));
      label.textContent = lat + "°N"; svg.append(line, label);
    }
    for (let lon = Math.ceil(west); lon <= east; lon++) {
      const line = document.createElementNS(NS, "line");
      Object.entries({ x1: x(lon), x2: x(lon), y1: 0, y2: H, stroke: "#e1e5eb" }).forEach(([k, v]) => line.setAttribute(k, v));
      const label = document.createElementNS(NS, "text");
      Object.entries({ x: x(lon) + 3, y: H - 4, fill: "#8892a3", "font-size": 11 }).forEach(([k, v]) => label.setAttribute(k, v));
      label.textContent = lon + "°E"; svg.append(line, label);
    }
    for (const c of cells) {
      const rect = document.createElementNS(NS, "rect");
      const t = c.value / max;
      Object.entries({ x: x(c.west), y: y(c.north), width: Math.max(2, x(c.east) - x(c.west)),
        height: Math.max(2, y(c.south) - y(c.north)), fill: `hsl(${Math.round(50 - 50 * t)},90%,${Math.round(70 - 30 * t)}%)`,
        stroke: "#7a2e0e", "stroke-width": 0.3, "data-geohash": c.hash, "data-value": c.value })
        .forEach(([k, v]) => rect.setAttribute(k, v));
      const title = document.createElementNS(NS, "title");
      title.textContent = `${c.hash}: ${measure} ${D.fmt(c.value)}`;
      rect.append(title); svg.append(rect);
    }
    host.append(svg);
    D.setStatus(status, `${cells.length} cell(s), max ${measure} ${D.fmt(max)} per cell over the range`);
  };
  D.views.regions = regions;

  // ----------------------------------------------------------------------------------- Discover
  const discover = { cursors: [null], page: 0, plot: null, searched: false, seq: 0 };
  function filters() {
    const out = {};
    for (const id of ["q", "event_type", "user_id"]) { const v = $("#" + id).value.trim(); if (v) out[id] = v; }
    return out;
  }

  async function histogram(base, seq) {
    // The matching events per bucket: `total` of one size=1 search per bucket (the API's own answer).
    const from = Date.parse(base.from), to = Date.parse(base.to), n = 30, step = (to - from) / n;
    const xs = [], counts = [];
    for (let i = 0; i < n; i++) xs.push((from + i * step) / 1000);
    await Promise.all(xs.map(async (x, i) => {
      const body = await D.api("v1/search", { ...base, from: new Date(from + i * step).toISOString(),
        to: new Date(i === n - 1 ? to : from + (i + 1) * step).toISOString(), size: "1" });
      counts[i] = body.total;
    }));
    if (seq !== discover.seq) return; // a newer search was started meanwhile
    window.__discover.histogram = { xs, counts };
    if (discover.plot) discover.plot.destroy();
    const host = $("#histogram"); host.replaceChildren();
    discover.plot = new uPlot({ width: Math.max(300, host.clientWidth - 2), height: 140, tzDate: utc, legend: { show: false },
      series: [{}, { label: "events", fill: "#2f6fdb88", stroke: "#2f6fdb", paths: uPlot.paths.bars({ size: [0.9] }) }],
      scales: { x: { time: true } } }, [xs, counts], host);
  }

  async function runSearch(page) {
    const status = $("#search-status"), tbody = $("#hits tbody");
    const seq = ++discover.seq;
    D.setStatus(status, "searching…");
    if (page === 0) { discover.range = D.range(); discover.cursors = [null]; }
    const base = { ...filters(), ...discover.range };
    const params = { ...base, size: "20" };
    if (discover.cursors[page]) params.cursor = discover.cursors[page]; // with the same q, filters, from and to
    let body;
    try {
      body = await D.api("v1/search", params);
      if (seq !== discover.seq) return;
    } catch (err) {
      if (seq !== discover.seq) return;
      const text = err.status === 503 ? "the search server is unavailable (503): " + err.message : "error: " + err.message;
      D.setStatus(status, text, "error"); tbody.replaceChildren();
      window.__discover = { error: err.status };
      return;
    }
    discover.page = page;
    discover.cursors[page + 1] = body.next_cursor;
    window.__discover = { params, total: body.total, page, ids: body.hits.map((h) => h.event_id), next_cursor: body.next_cursor };
    tbody.replaceChildren(...body.hits.map((h) => D.el("tr", { "data-event-id": h.event_id }, [
      D.el("td", { text: h.event_time }), D.el("td", { text: h.event_type }), D.el("td", { text: h.user_id || "" }),
      D.el("td", { text: h.event_id }), D.el("td", {}, [D.el("code", { text: JSON.stringify(h.attributes || {}) })])])));
    D.setStatus(status, body.total ? `${body.total.toLocaleString("en")} matching event(s)` : "no matching events", body.total ? "" : "empty");
    $("#page-info").textContent = body.hits.length ? `page ${page + 1}` : "";
    $("#prev").disabled = page === 0; $("#next").disabled = !body.next_cursor;
    if (page === 0) await histogram(base, seq).catch((err) => D.setStatus(status, "histogram: " + err.message, "error"));
  }
  discover.refresh = async function () { if (!discover.searched) { discover.searched = true; await runSearch(0); } };
  discover.reset = () => { discover.searched = false; };
  $("#search").addEventListener("submit", (e) => { e.preventDefault(); runSearch(0); });
  $("#next").addEventListener("click", () => runSearch(discover.page + 1));
  $("#prev").addEventListener("click", () => runSearch(Math.max(0, discover.page - 1)));
  D.views.discover = discover;

  // ----------------------------------------------------------------------------------- Pipeline
  const pipeline = { previous: null };
  const card = (label, value, kind) => D.el("div", { class: "card" + (kind ? " " + kind : "") }, [D.el("b", { text: value }), D.el("span", { text: label })]);
  function table(headers, rows) {
    return D.el("table", { class: "grid" }, [D.el("thead", {}, [D.el("tr", {}, headers.map((h) => D.el("th", { text: h })))]),
      D.el("tbody", {}, rows.map((r) => D.el("tr", {}, r.map((c) => D.el("td", { class: typeof c === "number" ? "num" : "", text: D.fmt(c) })))))]);
  }
  function reasons(byConsumer) {
    const rows = [];
    for (const [consumer, counts] of Object.entries(byConsumer)) for (const [reason, n] of Object.entries(counts)) rows.push([consumer, reason, n]);
    return rows.length ? table(["consumer", "reason", "rows"], rows) : D.el("p", { class: "status", text: "no bad rows in this range" });
  }

  pipeline.refresh = async function () {
    const host = $("#pipeline");
    let body;
    try {
      body = await D.api("v1/pipeline", D.range());
    } catch (err) {
      host.replaceChildren(D.el("p", { class: "error-text", text: "error: " + err.message }));
      throw err;
    }
    const prev = pipeline.previous;
    const dt = prev ? (body.generated_at_ms - prev.generated_at_ms) / 1000 : null;
    const before = new Map(((prev && prev.stream && prev.stream.consumers) || []).map((r) => [r.consumer + "|" + r.shard_id, r]));
    const a = body.app;
    const parts = [D.el("h3", { text: `app ${body.app_id}${body.operator ? " (operator)" : ""}: ${body.range.from} – ${body.range.to}` }),
      D.el("div", { class: "cards" }, [card("events accepted (in windows)", D.fmt(a.accepted)), card("rejected (bad rows)", D.fmt(a.rejected)),
        card("late events", D.fmt(a.late_events))]),
      D.el("h3", { text: "bad rows by reason" }), reasons(a.bad_rows),
      D.el("h3", { text: "finalization" }),
      table(["metric", "finalized_until", "lag", "last finalization"], body.finalization.map((f) =>
        [f.metric, f.finalized_until, D.ago(f.lag_s * 1000), f.last_finalized_at || "never"]))];
    const s = body.stream;
    if (s) {
      const rows = s.consumers.map((r) => {
        const old = before.get(r.consumer + "|" + r.shard_id);
        const rate = (now, then) => (dt && old && now !== null && then !== null ? Math.max(0, (now - then) / dt) : null);
        const seen = (x) => (x.delivered === null || x.behind === null ? null : x.delivered + x.behind);
        return [r.consumer, r.shard_id, r.behind, D.ago(r.oldest_unprocessed_age_ms),
          rate(seen(r), old && seen(old)), rate(r.delivered, old && old.delivered), r.delivered, r.retries, r.dead_lettered,
          r.watermark_ms ? new Date(r.watermark_ms).toISOString() : "–"];
      });
      const behind = s.consumers.reduce((n, r) => n + (r.behind || 0), 0);
      parts.splice(2, 0, D.el("div", { class: "cards" }, [
        card("records behind the tip", D.fmt(s.source === "checkpoints" ? behind : null), behind === 0 ? "ok" : "warn"),
        card("records to the on-failure destination", D.fmt(s.dead_letters.records), s.dead_letters.records ? "warn" : "ok"),
        card("shards", String(s.shards.length)),
        card("records in / s (stream)", D.fmt(s.incoming_records_per_s))]));
      parts.push(D.el("h3", { text: `consumers × shards (${s.source}; rates between two refreshes)` }),
        table(["consumer", "shard", "records behind", "oldest unprocessed", "records in/s", "records out/s", "delivered", "retries", "dead-lettered", "watermark (event time)"], rows),
        D.el("h3", { text: "bad rows, every app" }), reasons(s.bad_rows),
        D.el("p", { class: "status", text: `${s.bad_rows_unattributed} bad row(s) without an app (undecodable records, lines that were not events)` }));
    } else {
      parts.push(D.el("p", { class: "status", text: "Stream-wide figures (shards, lag, retries, dead letters) need an operator key (eventpipe apps create NAME --operator)." }));
    }
    host.replaceChildren(...parts);
    host.dataset.behind = s && s.source === "checkpoints" ? String(s.consumers.reduce((n, r) => n + (r.behind || 0), 0)) : "";
    window.__pipeline = body;
    pipeline.previous = body;
  };
  pipeline.reset = () => { pipeline.previous = null; };
  D.views.pipeline = pipeline;
})();
