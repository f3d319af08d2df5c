// eventpipe dashboard: the Funnel and Retention views (POST /v1/insights/funnel, /retention).
// Steps and events are picked from the app's event types (GET /v1/insights/event-types). An insight
// runs when its form is submitted (not on the 5 s refresh); a 202 (Athena still running) is polled at
// its Location. The last request and answer are kept on window.__insights.funnel / .retention.
"use strict";
(function () {
  const D = window.Dash;
  const $ = (sel) => document.querySelector(sel);
  const DAY_MS = 86400000;
  const state = { types: null, funnel: null, retention: null };
  window.__insights = state;

  async function call(method, path, body) {
    const key = D.key();
    if (!key) { D.askKey("Type an API key to start (kept in this tab's session storage only)."); throw new D.ApiError(401, "no API key"); }
    D.inflight++;
    let response;
    try {
      response = await fetch(D.base + path, { method, cache: "no-store",
        headers: Object.assign({ "x-api-key": key }, body ? { "content-type": "application/json" } : {}),
        body: body ? JSON.stringify(body) : undefined });
    } catch (err) {
      throw new D.ApiError(0, "the API is unreachable (" + err.message + ")");
    } finally {
      D.inflight--;
    }
    let doc = null;
    try { doc = await response.json(); } catch (err) { doc = null; }
    if (response.status === 401) D.askKey("Wrong key: the API answered 401. Type another one.");
    if (!response.ok) throw new D.ApiError(response.status, (doc && doc.error) || ("HTTP " + response.status));
    return { status: response.status, doc, location: response.headers.get("Location") };
  }

  // The answer, waiting for a 202's Location (Athena) when needed.
  async function insight(path, body, status) {
    let answer = await call("POST", path, body);
    while (answer.status === 202) {
      D.setStatus(status, "running on Athena…", "empty");
      await new Promise((resolve) => setTimeout(resolve, 2000));
      answer = await call("GET", answer.location.replace(/^\//, ""));
    }
    return answer.doc;
  }

  function range(select) {
    const to = Math.ceil(Date.now() / 60000) * 60000;  // the next minute: a run repeated soon reads the same range
    return { from: new Date(to - Number(select.value) * DAY_MS).toISOString(), to: new Date(to).toISOString() };
  }

  async function loadTypes() {
    if (state.types) return state.types;
    state.types = (await D.api("v1/insights/event-types")).event_types;
    for (const select of document.querySelectorAll("select.event-type")) {
      const keep = select.value;
      select.replaceChildren(...(select.dataset.optional ? [D.el("option", { value: "", text: "—" })] : []),
        ...state.types.map((t) => D.el("option", { value: t, text: t })));
      select.value = state.types.includes(keep) ? keep : (select.dataset.optional ? "" : state.types[Number(select.dataset.index || 0) % Math.max(1, state.types.length)] || "");
    }
    return state.types;
  }

  const cell = (value, id) => D.el("td", { class: "num", text: D.fmt(value), "data-cell": id });
  const pct = (x) => (100 * x).toFixed(1) + " %";
  function grid(id, headers, rows) {
    return D.el("table", { class: "grid", id }, [D.el("thead", {}, [D.el("tr", {}, headers.map((h) => D.el("th", { text: h })))]),
      D.el("tbody", {}, rows)]);
  }

  // ---------------------------------------------------------------- funnel
  const funnel = {
    async refresh() { await loadTypes(); },
    reset() { state.types = null; },
  };
  function funnelSteps(steps, prefix) {
    return steps.map((s, i) => D.el("tr", { "data-step": String(i + 1) }, [
      D.el("td", { text: (i + 1) + ". " + s.event_type }), cell(s.users, prefix + "users-" + (i + 1)),
      D.el("td", { class: "num", text: pct(s.conversion), "data-cell": prefix + "conversion-" + (i + 1) }),
      D.el("td", { class: "num", text: s.median_seconds_to_convert === null ? "–" : s.median_seconds_to_convert + " s",
        "data-cell": prefix + "median-" + (i + 1) }),
      D.el("td", {}, [D.el("div", { class: "bar-fill", style: "width:" + Math.round(300 * s.conversion) + "px" })])]));
  }
  async function runFunnel(event) {
    event.preventDefault();
    const status = $("#funnel-status");
    const steps = [...document.querySelectorAll("#funnel-form select.event-type")].map((s) => s.value).filter(Boolean)
      .map((t) => ({ event_type: t }));
    const body = Object.assign({ steps, within: $("#funnel-within").value }, range($("#funnel-range")));
    const breakdown = $("#funnel-breakdown").value.trim();
    if (breakdown) body.breakdown = breakdown.startsWith("attributes.") ? breakdown : "attributes." + breakdown;
    D.setStatus(status, "running…", "empty");
    try {
      const doc = await insight("v1/insights/funnel", body, status);
      state.funnel = { request: body, answer: doc };
      const out = [grid("funnel-table", ["step", "users", "conversion", "median time to convert", ""], funnelSteps(doc.steps, ""))];
      for (const group of doc.breakdown || []) {
        out.push(D.el("h3", { text: "breakdown: " + (group.value === null ? "(none)" : group.value) }));
        out.push(grid("", ["step", "users", "conversion", "median time to convert", ""], funnelSteps(group.steps, "bd-" + group.value + "-")));
      }
      $("#funnel-result").replaceChildren(...out);
      D.setStatus(status, doc.steps[0].users ? "" : "nobody did the first step in this range", doc.steps[0].users ? "" : "empty");
    } catch (err) {
      D.setStatus(status, err.message, "error");
    }
  }

  // ---------------------------------------------------------------- retention
  const retention = {
    async refresh() { await loadTypes(); },
    reset() { state.types = null; },
  };
  async function runRetention(event) {
    event.preventDefault();
    const status = $("#retention-status");
    const body = Object.assign({ start_event: $("#retention-start").value, return_event: $("#retention-return").value,
      period: $("#retention-period").value, periods: Number($("#retention-periods").value) }, range($("#retention-range")));
    D.setStatus(status, "running…", "empty");
    try {
      const doc = await insight("v1/insights/retention", body, status);
      state.retention = { request: body, answer: doc };
      const headers = ["cohort", "users", ...Array.from({ length: body.periods - 1 }, (_, k) => body.period + " " + (k + 1))];
      const rows = doc.cohorts.map((c, i) => D.el("tr", { "data-cohort": c.period_start }, [
        D.el("td", { text: c.period_start.slice(0, 10) }), cell(c.users, "cohort-users-" + i),
        ...c.returned.slice(1).map((n, k) => D.el("td", { class: "num", "data-cell": "returned-" + i + "-" + (k + 1),
          "data-value": String(n), title: c.users ? pct(n / c.users) : "", text: D.fmt(n),
          style: "background:rgba(30,110,200," + (c.users ? (0.08 + 0.6 * n / c.users).toFixed(2) : 0) + ")" }))]));
      $("#retention-result").replaceChildren(grid("retention-table", headers, rows));
      D.setStatus(status, doc.cohorts.length ? "" : "nobody did the start event in this range", doc.cohorts.length ? "" : "empty");
    } catch (err) {
      D.setStatus(status, err.message, "error");
    }
  }

  D.views.funnel = funnel;
  D.views.retention = retention;
  document.addEventListener("DOMContentLoaded", () => {
    $("#funnel-form").addEventListener("submit", runFunnel);
    $("#retention-form").addEventListener("submit", runRetention);
  });
})();
