// eventpipe dashboard: the Sessions view (GET /v1/sessions): session metrics of the sessions that start
// in the chosen days (UTC), from the sessions table written at finalization. The last answer is kept on
// window.__sessions; each card carries its field name and the API's exact value (data-field, data-value).
"use strict";
(function () {
  const D = window.Dash;
  const $ = (sel) => document.querySelector(sel);
  const DAY = 86400000;
  const CARDS = [["sessions", "sessions"], ["users", "users"], ["events", "events in sessions"], ["bounces", "bounces (one event)"],
    ["bounce_rate", "bounce rate"], ["median_duration_s", "median duration"]];

  function text(field, value) {
    if (value === null || value === undefined) return "–";
    if (field === "bounce_rate") return (100 * value).toFixed(1) + " %";
    if (field === "median_duration_s") return value < 120 ? value.toFixed(1) + " s" : (value / 60).toFixed(1) + " min";
    return D.fmt(value);
  }

  // The chosen days: "from" and "to" (YYYY-MM-DD, UTC, "to" included); default the last 7 days.
  function chosen() {
    const today = new Date(Math.floor(Date.now() / DAY) * DAY);
    const from = $("#sessions-from").value || new Date(today - 6 * DAY).toISOString().slice(0, 10);
    const to = $("#sessions-to").value || today.toISOString().slice(0, 10);
    return { from: from + "T00:00:00Z", to: new Date(Date.parse(to + "T00:00:00Z") + DAY).toISOString() };
  }

  const view = {};
  view.refresh = async function () {
    const host = $("#sessions");
    let body;
    try {
      body = await D.api("v1/sessions", chosen());
    } catch (err) {
      host.replaceChildren(D.el("p", { class: "error-text", text: "error: " + err.message }));
      throw err;
    }
    const cards = CARDS.map(([field, label]) => D.el("div", { class: "card", "data-field": field, "data-value": JSON.stringify(body[field]) },
      [D.el("b", { text: text(field, body[field]) }), D.el("span", { text: label })]));
    host.replaceChildren(D.el("h3", { text: `sessions starting ${D.when(body.from)} – ${D.when(body.to)}` }),
      D.el("div", { class: "cards" }, cards),
      D.el("p", { class: "explain", text: "A session is a user's events with no gap longer than the app's inactivity gap " +
        "(30 min unless set with eventpipe apps session-gap). Sessions come from finalized hours only (duplicates removed); " +
        "a bounce is a session of one event; the median duration is the mean of the two middle ones for an even count." }));
    window.__sessions = body;
  };
  $("#sessions-form").addEventListener("submit", (e) => { e.preventDefault(); D.refresh(); });
  D.views.sessions = view;
})();
