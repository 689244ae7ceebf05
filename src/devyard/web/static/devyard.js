// devyard's shared browser helpers: the REST API the CLI uses, feedback on every action, live events, formatting.
"use strict";

const dy = (() => {
  // Every call goes through the same /api/v1 the CLI speaks; errors become readable messages.
  async function api(method, path, body) {
    const opts = {method, credentials: "same-origin", headers: {}};
    if (body !== undefined) {
      opts.headers["content-type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    let r;
    try {
      r = await fetch("/api/v1" + path, opts);
    } catch (e) {
      throw new Error("The manager cannot be reached: check your connection and try again.");
    }
    if (!r.ok) {
      const error = await errorOf(r);
      if (error.code === "not_authenticated") {  // the session ended (logout elsewhere, expiry): log in again
        location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
        throw new Error("Your session ended: log in again.");
      }
      throw new Error(error.message);
    }
    return r.status === 204 ? null : r.json();
  }

  async function errorOf(r) {
    try {
      const body = await r.json();
      if (body && body.error && body.error.message) return body.error;
    } catch (e) { /* not JSON: fall through */ }
    return {code: "http_error", message: `The request failed (${r.status} ${r.statusText}).`};
  }

  // Feedback at once: the button shows a spinner and cannot be pressed twice while `work` runs.
  async function busy(button, work) {
    if (button) { button.setAttribute("aria-busy", "true"); button.disabled = true; }
    try { return await work(); }
    finally { if (button) { button.removeAttribute("aria-busy"); button.disabled = false; } }
  }

  function say(region, text, kind = "bad") {
    if (!region) return;
    region.className = "alert " + kind;
    region.textContent = text || "";
  }

  // A <dialog> asking to confirm; resolves true/false. `extra` is optional DOM to put in it (a checkbox).
  function confirmDialog(title, text, action = "Delete", extra = null) {
    return new Promise((resolve) => {
      const d = document.createElement("dialog");
      d.setAttribute("aria-labelledby", "dlg-title");
      d.innerHTML = '<h2 id="dlg-title"></h2><p></p><div class="extra"></div><div class="actions">' +
        '<button type="button" class="secondary" value="no">Cancel</button><button type="button" class="danger" value="yes"></button></div>';
      d.querySelector("h2").textContent = title;
      d.querySelector("p").textContent = text;
      d.querySelector("button.danger").textContent = action;
      if (extra) d.querySelector(".extra").append(extra);
      document.body.append(d);
      const done = (ok) => { d.close(); d.remove(); resolve(ok); };
      d.addEventListener("click", (ev) => { if (ev.target.value) done(ev.target.value === "yes"); });
      d.addEventListener("cancel", (ev) => { ev.preventDefault(); done(false); });
      d.showModal();
      d.querySelector("button.secondary").focus();
    });
  }

  // Follow /api/v1/events (server-sent events); `on` maps event kinds to handlers. The browser reconnects by itself.
  function live(on, all = false) {
    const source = new EventSource("/api/v1/events" + (all ? "?all=1" : ""));
    for (const [kind, handler] of Object.entries(on)) {
      source.addEventListener(kind, (ev) => handler(JSON.parse(ev.data)));
    }
    return source;
  }

  function bytes(n) {
    if (n === null || n === undefined) return "—";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(n < 10 ? 1 : 0) : n) + " " + units[i];
  }

  function duration(s) {
    if (s === null || s === undefined) return "—";
    s = Math.floor(s);
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }

  // The API's times are UTC; one without a zone is read as UTC too, never as local time.
  const parse = (iso) => Date.parse(/(Z|[+-]\d\d:?\d\d)$/i.test(iso) ? iso : iso + "Z");

  function ago(iso) {
    if (!iso) return "never";
    const s = Math.max(0, (Date.now() - parse(iso)) / 1000);
    return s < 5 ? "just now" : duration(s) + " ago";
  }

  function when(iso) {
    return iso ? new Date(parse(iso)).toLocaleString() : "—";
  }

  // Times rendered by the server carry data-time: show them in the reader's own time zone.
  function localTimes(root = document) {
    for (const el of root.querySelectorAll("[data-time]")) el.textContent = when(el.dataset.time);
  }

  const wsPath = (owner, name) => `/workspaces/${encodeURIComponent(name)}?owner=${encodeURIComponent(owner)}`;

  document.addEventListener("DOMContentLoaded", () => {
    localTimes();
    // Plain form posts (log in, log out) show they are on their way too.
    for (const form of document.querySelectorAll("form[method=post]:not([data-download])")) {  // a download leaves the page where it is
      form.addEventListener("submit", () => { const b = form.querySelector("button[type=submit]"); if (b) b.setAttribute("aria-busy", "true"); });
    }
  });
  return {api, busy, say, confirmDialog, live, bytes, duration, ago, when, localTimes, wsPath};
})();
