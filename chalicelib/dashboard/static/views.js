// eventpipe dashboard: the Metrics and Discover views (Regions: regions.js, Pipeline: pipeline.js).
// Each view registers {refresh, reset} on Dash.views. What each chart plots is also kept on
// window.__panels / __discover (the browser test compares it with the API's answers).
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
  // windows still open dashed with points. The x-axis is the selected range, whatever the data.
  // At most TOP series are drawn (the largest over the range); the others are summed into one
  // "other" series when the measure adds up (count, sum), else left out; the note says which.
  const metrics = { specs: null, panels: {} };
  const TOP = 8;
  const ADDITIVE = /^(count|sum\()/;

  function seriesLabel(row, keys) {
    return keys.length ? keys.map((k) => (row[k] === null || row[k] === undefined ? "(none)" : String(row[k]))).join(" / ") : "all";
  }

  function buildPanel(spec) {
    const measure = D.el("select");
    for (const m of spec.measures) measure.append(D.el("option", { value: m.name, text: m.name + " = " + m.aggregate }));
    const status = D.el("span", { class: "status", text: "loading…" });
    const chart = D.el("div", { class: "plot" });
    const legend = D.el("div", { class: "legend" });
    const note = D.el("p", { class: "legend-note cap", hidden: "" });
    const node = D.el("div", { class: "panel", "data-metric": spec.name }, [
      D.el("h2", { text: spec.name }), D.el("p", { class: "desc", text: spec.description || "" }),
      D.el("div", { class: "bar" }, [D.el("span", { text: "measure" }), measure, status]), chart, legend, note,
      D.el("div", { class: "legend-note", text: "solid: finalized windows · dashed with dots: windows still open" })]);
    const panel = { spec, node, measure, status, chart, legend, note, plot: null, rows: [], body: null };
    measure.addEventListener("change", () => draw(panel));
    return panel;
  }

  // Which series are drawn: labels ranked by their total of the measure over the range.
  function chooseSeries(rows, keys, measure, additive) {
    const totals = new Map();
    for (const r of rows) {
      const label = seriesLabel(r, keys);
      totals.set(label, (totals.get(label) || 0) + (r[measure] || 0));
    }
    const ranked = [...totals.keys()].sort((a, b) => totals.get(b) - totals.get(a) || (a < b ? -1 : 1));
    if (ranked.length <= TOP + 1) return { shown: ranked.sort(), hidden: [], other: null };
    const hidden = ranked.slice(TOP);
    return { shown: ranked.slice(0, TOP), hidden, other: additive ? `other (${hidden.length} series)` : null };
  }

  function capNote(panel, chosen, total, measure) {
    const { note, spec } = panel;
    note.replaceChildren();
    note.hidden = !chosen.hidden.length;
    if (!chosen.hidden.length) return;
    note.append(`${total} series: the ${TOP} largest by ${measure} over the range are drawn` + (chosen.other
      ? `, the other ${chosen.hidden.length} summed as "other".` : `; ${chosen.hidden.length} more are not drawn (${measure} does not add up).`));
    if (spec.name === "region_activity") {
      const link = D.el("a", { href: "#view=regions", text: "Every cell on a map: the Regions tab" });
      link.addEventListener("click", (event) => { event.preventDefault(); D.show("regions"); });
      note.append(" ", link);
    }
  }

  // One legend entry per series (its finalized and open parts together); click: hide/show it.
  function drawLegend(panel, labels, colors, columns) {
    const items = labels.map((label, i) => {
      const swatch = D.el("i"); swatch.style.background = colors[i];
      const item = D.el("span", { class: "item", "data-label": label, title: "click: hide or show" },
        [swatch, D.el("span", { class: "label", text: label }), D.el("b", { class: "value" })]);
      item.addEventListener("click", () => {
        const show = item.classList.toggle("off") === false;
        panel.plot.setSeries(1 + 2 * i, { show }); panel.plot.setSeries(2 + 2 * i, { show });
      });
      return item;
    });
    const when = D.el("span", { class: "when" });
    panel.legend.replaceChildren(when, ...items);
    return (u) => { // the values under the cursor
      const idx = u.cursor.idx;
      when.textContent = idx === null || idx === undefined ? "" : new Date(u.data[0][idx] * 1000).toISOString().slice(11, 16) + " UTC";
      items.forEach((item, i) => {
        const [fin, open] = columns[i];
        const value = idx === null || idx === undefined ? null : (fin[idx] !== null ? fin[idx] : open[idx]);
        item.lastChild.textContent = value === null || value === undefined ? "" : D.fmt(value);
      });
    };
  }

  function draw(panel) {
    const { spec, rows, body, range } = panel;
    const keys = spec.key.filter((k) => k !== "app_id");
    const measure = panel.measure.value;
    const aggregate = (spec.measures.find((m) => m.name === measure) || {}).aggregate || "";
    const finalizedUntil = epoch(body.finalized_until);
    const xs = [...new Set(rows.map((r) => epoch(r.window_start)))].sort((a, b) => a - b);
    const index = new Map(xs.map((x, i) => [x, i]));
    const chosen = chooseSeries(rows, keys, measure, ADDITIVE.test(aggregate));
    const labels = chosen.other ? [...chosen.shown, chosen.other] : chosen.shown;
    const hidden = new Set(chosen.hidden);
    const columns = labels.map(() => [new Array(xs.length).fill(null), new Array(xs.length).fill(null)]);
    const column = new Map(labels.map((label, i) => [label, columns[i]]));
    for (const r of rows) {
      let label = seriesLabel(r, keys);
      if (hidden.has(label)) {
        if (!chosen.other) continue;
        label = chosen.other;
      }
      const value = r[measure], x = epoch(r.window_start), i = index.get(x);
      const target = column.get(label)[x < finalizedUntil ? 0 : 1];
      target[i] = label === chosen.other ? (value === null || value === undefined ? target[i] : (target[i] || 0) + value) : value;
    }
    const colors = labels.map((label, i) => (label === chosen.other ? "#868e96" : COLORS[i % COLORS.length]));
    const data = [xs, ...columns.flat()];
    const series = [{}];
    labels.forEach((label, i) => {
      series.push({ label, stroke: colors[i], width: 1.5, points: { show: false } },
        { label: label + " (open)", stroke: colors[i], width: 1.5, dash: [5, 4], points: { show: true, size: 5 } });
    });
    const state = { from: range.from, to: range.to, measure, keys, labels, hidden: chosen.hidden, other: chosen.other,
      finalized_until: body.finalized_until, data, rows: rows.length, x_scale: null };
    window.__panels[spec.name] = state;
    if (panel.plot) { panel.plot.destroy(); panel.plot = null; }
    panel.chart.replaceChildren();
    panel.legend.replaceChildren();
    capNote(panel, chosen, chosen.shown.length + chosen.hidden.length, measure);
    if (!rows.length) {
      D.setStatus(panel.status, "no rows in this range", "empty");
      return;
    }
    D.setStatus(panel.status, rows.length + " row(s), " + (chosen.shown.length + chosen.hidden.length) + " series; finalized until " +
      D.when(body.finalized_until) + (body.truncated ? " (truncated)" : ""));
    const width = Math.max(300, panel.node.clientWidth - 22);
    const onCursor = drawLegend(panel, labels, colors, columns);
    let zoomed = false; // a drag-selection zooms in until the next refresh; otherwise the axis is the range
    panel.plot = new uPlot({ width, height: 220, tzDate: utc, series, legend: { show: false },
      scales: { x: { time: true, range: (u, min, max) => (zoomed ? [min, max] : [epoch(range.from), epoch(range.to)]) } },
      axes: [{}, { size: 56 }], cursor: { bind: { dblclick: (u, target, handler) => (e) => { zoomed = false; return handler(e); } } },
      hooks: { setCursor: [onCursor], setSelect: [() => { zoomed = true; }] } }, data, panel.chart);
    state.x_scale = [panel.plot.scales.x.min, panel.plot.scales.x.max];
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
    for (let i = 0; i < n; i++) xs.push((from + (i + 0.5) * step) / 1000); // each bar at its bucket's middle
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
      scales: { x: { time: true, range: [from / 1000, to / 1000] } } }, [xs, counts], host);
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

})();
