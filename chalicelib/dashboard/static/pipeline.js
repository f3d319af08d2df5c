// eventpipe dashboard: the Pipeline view (GET /v1/pipeline), with what its figures mean: late
// events and finalization are explained beside them. The last answer is kept on window.__pipeline.
"use strict";
(function () {
  const D = window.Dash;
  const $ = (sel) => document.querySelector(sel);
  const span = (s) => (s % 86400 === 0 ? s / 86400 + " d" : s % 3600 === 0 ? s / 3600 + " h" : s % 60 === 0 ? s / 60 + " min" : s + " s");

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

  // Why events are late, with this app's share of them.
  function lateNote(app, lateness) {
    const allowed = span(lateness.allowed_s), max = span(lateness.max_s);
    const share = app.accepted ? ` (${Math.round(100 * app.late_events / app.accepted)} %)` : "";
    const lead = app.late_events
      ? `${D.fmt(app.late_events)} of ${D.fmt(app.accepted)} events${share} in this range arrived late. `
      : "No late events in this range. ";
    return D.el("p", { class: "explain", id: "late-note" }, [lead,
      D.el("b", { text: "Late" }), ` = arrived after the watermark had passed the end of its window. The watermark follows the newest ` +
      `event time seen on the event's shard, minus the allowed lateness (${allowed}). A late event is still counted (late_count), ` +
      `and the finalizer recomputes its window from the raw archive; one more than ${max} older than its arrival goes to bad rows ` +
      `(too_late) instead. Events generated in the past and sent now (eventpipe generate / send, the demo data) are late by design: ` +
      `newer event times were seen before them.`]);
  }

  // finalized_until (the metrics API's) next to what the finalizer's manifests say, and what each means.
  function finalization(rows, lateness) {
    const grid = table(["metric", "windows final until", "lag", "compacted by the finalizer until", "last finalizer run"],
      rows.map((f) => [f.metric, D.when(f.finalized_until), D.ago(f.lag_s * 1000),
        f.compacted_until ? D.when(f.compacted_until) : "not yet", f.last_finalized_at ? D.when(f.last_finalized_at) : "not yet"]));
    grid.id = "finalization";
    const note = D.el("p", { class: "explain", id: "finalization-note" }, [D.el("b", { text: "Windows final until" }),
      `: windows starting before it are final: read from the finalizer's compacted files (exact, duplicates removed), or ` +
      `without events of this app in the range. Later windows are merged from the stream's partials (dashed on the Metrics tab) until the ` +
      `finalizer compacts their hour: it runs every 5 min and takes an hour once its last window ended more than the allowed ` +
      `lateness (${span(lateness.allowed_s)}) ago. `, D.el("b", { text: "Compacted until" }), " and ", D.el("b", { text: "last finalizer run" }),
      ` come from the finalizer's manifests of each metric's current definition: "not yet" until it has compacted a first hour.`]);
    return [grid, note];
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
    const parts = [D.el("h3", { text: `app ${body.app_id}${body.operator ? " (operator)" : ""}: ${D.when(body.range.from)} – ${D.when(body.range.to)}` }),
      D.el("div", { class: "cards" }, [card("events accepted (in windows)", D.fmt(a.accepted)), card("rejected (bad rows)", D.fmt(a.rejected)),
        card("late events", D.fmt(a.late_events), a.late_events ? "warn" : "")]),
      lateNote(a, body.lateness),
      D.el("h3", { text: "bad rows by reason" }), reasons(a.bad_rows),
      D.el("h3", { text: "finalization" }), ...finalization(body.finalization, body.lateness)];
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
      parts.splice(3, 0, D.el("div", { class: "cards" }, [
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
