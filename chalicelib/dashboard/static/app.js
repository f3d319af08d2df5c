// eventpipe dashboard: the core (API key, API calls, time range, tabs, refresh, states).
// Views are in views.js. Only the project's own JSON API is called, on the page's own host.
"use strict";
(function () {
  const KEY_STORE = "eventpipe.apiKey";
  // The page is served at <base>/dashboard: the API is <base>/v1/... (on API Gateway <base> is the stage).
  const BASE = location.pathname.replace(/\/dashboard\/?$/, "/");
  const $ = (sel) => document.querySelector(sel);

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  function hashParams() {
    return new URLSearchParams(location.hash.replace(/^#/, ""));
  }

  // #key=... (a link from `make run`) is stored, then removed from the address bar.
  function takeKeyFromHash() {
    const params = hashParams();
    if (!params.has("key")) return false;
    sessionStorage.setItem(KEY_STORE, params.get("key"));
    params.delete("key");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
    return true;
  }
  takeKeyFromHash();

  const Dash = {
    base: BASE,
    views: {},
    current: null,
    inflight: 0,
    ApiError,
    key() { return sessionStorage.getItem(KEY_STORE); },

    range() {
      const seconds = Number($("#range").value);
      const to = Date.now();
      return { from: new Date(to - seconds * 1000).toISOString(), to: new Date(to).toISOString() };
    },

    async api(path, params) {
      const key = Dash.key();
      if (!key) { Dash.askKey("Type an API key to start (kept in this tab's session storage only)."); throw new ApiError(401, "no API key"); }
      const query = params ? "?" + new URLSearchParams(params).toString() : "";
      Dash.inflight++;
      let response;
      try {
        response = await fetch(BASE + path + query, { headers: { "x-api-key": key }, cache: "no-store" });
      } catch (err) {
        throw new ApiError(0, "the API is unreachable (" + err.message + ")");
      } finally {
        Dash.inflight--;
      }
      let body = null;
      try { body = await response.json(); } catch (err) { body = null; }
      if (response.status === 401) {
        Dash.askKey("Wrong key: the API answered 401 (" + ((body && body.error) || "unauthorized") + "). Type another one.");
      }
      if (!response.ok) {
        throw new ApiError(response.status, (body && body.error) || ("HTTP " + response.status));
      }
      return body;
    },

    askKey(message) {
      $("#keymsg").textContent = message;
      $("#keyform").hidden = false;
      $("#keyinput").focus();
    },

    notice(text, isError) {
      const el = $("#notice");
      el.hidden = !text;
      el.textContent = text || "";
      el.classList.toggle("error", !!isError);
    },

    el(tag, attrs, children) {
      const node = document.createElement(tag);
      for (const [name, value] of Object.entries(attrs || {})) {
        if (name === "text") node.textContent = value;
        else if (name === "class") node.className = value;
        else node.setAttribute(name, value);
      }
      for (const child of children || []) node.append(child);
      return node;
    },

    setStatus(node, text, kind) {
      node.textContent = text;
      node.className = "status" + (kind ? " " + kind : "");
      node.dataset.state = kind || "ok";
    },

    fmt(value) {
      if (value === null || value === undefined) return "–";
      if (typeof value === "number") return Number.isInteger(value) ? value.toLocaleString("en") : value.toFixed(2);
      return String(value);
    },

    // An API instant (ISO-8601, UTC) as "2026-12-07 13:38:00 UTC".
    when(iso) {
      return iso ? String(iso).replace("T", " ").replace(/(:\d\d)(\.\d+)?Z$/, "$1 UTC") : "–";
    },

    ago(ms) {
      if (ms === null || ms === undefined) return "–";
      const s = ms / 1000;
      if (s < 120) return s.toFixed(1) + " s";
      if (s < 7200) return (s / 60).toFixed(1) + " min";
      return (s / 3600).toFixed(1) + " h";
    },

    show(name) {
      Dash.current = name;
      for (const button of document.querySelectorAll("#tabs button")) {
        button.classList.toggle("active", button.dataset.view === name);
      }
      for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== "view-" + name;
      const params = hashParams();
      params.set("view", name);
      history.replaceState(null, "", location.pathname + location.search + "#" + params.toString());
      Dash.refresh();
    },

    async refresh() {
      const view = Dash.views[Dash.current];
      if (!view || !Dash.key()) return;
      try {
        await view.refresh();
        if ($("#keyform").hidden) Dash.notice("");
      } catch (err) {
        if (err.status !== 401) Dash.notice(err.message, true);
      }
    },
  };
  window.Dash = Dash;

  function start() {
    for (const button of document.querySelectorAll("#tabs button")) {
      button.addEventListener("click", () => Dash.show(button.dataset.view));
    }
    $("#range").addEventListener("change", () => Dash.refresh());
    $("#keyform").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("#keyinput").value.trim();
      if (!key) return;
      sessionStorage.setItem(KEY_STORE, key);
      $("#keyinput").value = "";
      $("#keyform").hidden = true;
      for (const view of Object.values(Dash.views)) if (view.reset) view.reset();
      Dash.refresh();
    });
    $("#forget").addEventListener("click", () => {
      sessionStorage.removeItem(KEY_STORE);
      Dash.askKey("Type an API key (kept in this tab's session storage only).");
    });
    window.addEventListener("hashchange", () => {
      if (!takeKeyFromHash()) return;
      $("#keyform").hidden = true;
      for (const view of Object.values(Dash.views)) if (view.reset) view.reset();
      Dash.refresh();
    });
    setInterval(() => { if ($("#auto").checked && Dash.inflight === 0) Dash.refresh(); }, 5000);
    if (!Dash.key()) Dash.askKey("Type an API key to start (kept in this tab's session storage only).");
    const wanted = hashParams().get("view");
    Dash.show(Dash.views[wanted] ? wanted : "metrics");
  }
  document.addEventListener("DOMContentLoaded", start);
})();
