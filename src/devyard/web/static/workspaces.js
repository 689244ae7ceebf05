// Workspace cards (list, admin list, detail page): kept current from /api/v1/events; actions through the API.
"use strict";

const cards = (() => {
  const BUSY = ["creating", "provisioning", "starting", "stopping", "deleting"];
  const key = (owner, name) => `${owner}/${name}`;

  function field(root, name) { return root.querySelector(`[data-field="${name}"]`); }

  // Which actions make sense in each status: the rest are disabled, not hidden, so the layout stays put.
  function allowed(status, action) {
    switch (action) {
      case "start": return status === "stopped" || status === "failed";
      case "stop": return status === "running" || status === "starting";
      case "restart": return status === "running";
      case "delete": return status !== "deleting";
      default: return true;
    }
  }

  function setStatus(root, status) {
    root.dataset.status = status;
    const badge = field(root, "status");
    if (badge) { badge.dataset.status = status; badge.textContent = status; }
    for (const b of root.querySelectorAll("button[data-action]")) {
      if (b.getAttribute("aria-busy") !== "true") b.disabled = !allowed(status, b.dataset.action);
    }
  }

  function fill(root, ws) {
    const name = ws.name;
    root.dataset.owner = ws.owner;
    root.dataset.name = name;
    const link = field(root, "link");
    if (link) { link.textContent = name; link.href = dy.wsPath(ws.owner, name); }
    const ownerLine = field(root, "owner-line");
    if (ownerLine) { ownerLine.hidden = ws.owner === document.body.dataset.me; field(root, "owner").textContent = ws.owner; }
    const template = field(root, "template");
    if (template) template.textContent = ws.template || "empty";
    const size = field(root, "size");
    if (size) size.textContent = ws.size || "no limits";
    const open = field(root, "open");
    if (open) { open.href = ws.url; open.setAttribute("aria-label", `Open ${name} in a new tab`); }
    for (const b of root.querySelectorAll("button[data-action]")) b.setAttribute("aria-label", `${b.textContent.trim()} ${name}`);
    const created = field(root, "created");
    if (created && ws.created_at) created.textContent = dy.when(ws.created_at);
    const activity = field(root, "activity");
    if (activity) activity.textContent = dy.ago(ws.last_activity_at);
    const error = field(root, "error");
    if (error) { error.hidden = !ws.error; error.textContent = ws.error || ""; }
    const progress = field(root, "progress");
    if (progress) {
      progress.hidden = ws.status !== "provisioning";
      const p = ws.progress;
      const bar = field(root, "progress-bar");
      if (p && p.total) { bar.max = p.total; bar.value = p.current; } else { bar.removeAttribute("value"); }
      field(root, "step").textContent = p ? `${p.step} (${p.current}/${p.total})` : "preparing…";
    }
    root._ws = ws;
    warn(root);
    fillWhy(root, ws);
    setStatus(root, ws.status);
    if (ws.status !== "running") fillStats(root, null);
    if (ws.stats) fillStats(root, ws.stats);
  }

  // A stop that using the workspace does not put off (schedule, maximum lifetime), said session_warning_minutes before;
  // and, while dormant, when it will be deleted.
  function warn(root) {
    const el = field(root, "stop-warning");
    const ws = root._ws;
    if (!el || !ws) return;
    if (ws.dormant_at) {
      const fate = ws.delete_at ? `It will be deleted on ${dy.when(ws.delete_at)} unless you open or start it.` : "Open or start it to use it again.";
      el.hidden = false;
      el.textContent = `${ws.name} is dormant: nobody opened it for a long time, so it was stopped. ${fate}`;
      return;
    }
    const minutes = Number(document.body.dataset.warnMinutes || 0);
    const due = (ws.stops_due || []).find((d) => d.reason !== "idle");
    const soon = due && minutes && new Date(due.at) - Date.now() <= minutes * 60000;
    el.hidden = !soon;
    el.textContent = soon ? `${ws.name} will stop at ${dy.when(due.at)}: ${due.detail}. Save your work.` : "";
  }
  setInterval(() => document.querySelectorAll("[data-field=stop-warning]").forEach((el) => warn(el.closest("article.ws"))), 20000);

  const because = (b) => b ? `${dy.when(b.at)} — ${b.reason.replace("_", " ")}: ${b.detail}` : "—";
  function fillWhy(root, ws) {
    const set = (f, text) => { const el = field(root, f); if (el) el.textContent = text; };
    set("last-start", because(ws.last_start));
    set("last-stop", because(ws.last_stop));
    const s = ws.schedule;
    set("schedule", s ? `${s.days.join(", ")}: ${[s.start && "start " + s.start, s.stop && "stop " + s.stop].filter(Boolean).join(", ")}` : "none");
    const list = field(root, "stops-due");
    if (list) {
      const items = (ws.stops_due || []).map((d) => Object.assign(document.createElement("li"), {textContent: `${dy.when(d.at)} — ${d.reason.replace("_", " ")}: ${d.detail}`}));
      if (!items.length) items.push(Object.assign(document.createElement("li"), {textContent: ws.status === "running" ? "nothing will stop it by itself" : "—"}));
      list.replaceChildren(...items);
    }
  }

  function fillStats(root, s) {
    const set = (f, text) => { const el = field(root, f); if (el) el.textContent = text; };
    set("cpu", s ? s.cpu_percent.toFixed(1) + " %" : "—");
    set("memory", s ? dy.bytes(s.memory_bytes) : "—");
    set("uptime", s ? dy.duration(s.uptime_s) : "—");
    if (s) set("disk", dy.bytes(s.disk_bytes));
    if (s && s.last_activity_at !== undefined) set("activity", dy.ago(s.last_activity_at));
  }

  // Start, stop, restart, delete: the status changes at once (optimistic), the server's events then confirm it.
  async function act(root, button, say) {
    const {owner, name} = root.dataset;
    const action = button.dataset.action;
    const path = `/workspaces/${encodeURIComponent(name)}`;
    const q = `?owner=${encodeURIComponent(owner)}`;
    if (action === "delete") {
      const keep = document.createElement("label");
      keep.className = "check";
      keep.innerHTML = '<input type="checkbox" name="keep_files"> Keep the files (they stay on the server)';
      if (!await dy.confirmDialog(`Delete workspace ${name}?`, `This stops ${name} and removes it${owner !== document.body.dataset.me ? ` (owner: ${owner})` : ""}. It cannot be undone.`,
        `Delete ${name}`, keep)) return false;
      const keepFiles = keep.querySelector("input").checked;
      const before = root.dataset.status;
      setStatus(root, "deleting");
      try {
        await dy.busy(button, () => dy.api("DELETE", path + q + (keepFiles ? "&keep_files=1" : "")));
        return true;
      } catch (e) { setStatus(root, before); say(e.message); return false; }
    }
    const before = root.dataset.status;
    setStatus(root, action === "stop" ? "stopping" : "starting");
    try {
      const ws = await dy.busy(button, () => dy.api("POST", `${path}/${action}${q}`));
      fill(root, ws);
    } catch (e) { setStatus(root, before); say(e.message); }
    return false;
  }

  return {key, fill, fillStats, act, setStatus, BUSY};
})();

// The list pages: /, /admin/workspaces.
(() => {
  const list = document.getElementById("workspaces");
  if (!list) return;
  const message = document.getElementById("message");
  const say = (text) => dy.say(message, text);
  const none = document.getElementById("none");
  const template = document.getElementById("ws-card");
  const byKey = new Map([...list.querySelectorAll("article.ws")].map((c) => [cards.key(c.dataset.owner, c.dataset.name), c]));

  function upsert(ws) {
    let card = byKey.get(cards.key(ws.owner, ws.name));
    if (!card) {
      card = template.content.firstElementChild.cloneNode(true);
      const id = "ws-title-" + byKey.size + "-" + Math.random().toString(36).slice(2, 7);
      card.setAttribute("aria-labelledby", id);
      card.querySelector("h2").id = id;
      list.append(card);
      byKey.set(cards.key(ws.owner, ws.name), card);
    }
    cards.fill(card, ws);
    none.hidden = byKey.size > 0;
  }

  function remove(owner, name) {
    const card = byKey.get(cards.key(owner, name));
    if (card) { card.remove(); byKey.delete(cards.key(owner, name)); }
    none.hidden = byKey.size > 0;
  }

  list.addEventListener("click", async (ev) => {
    const button = ev.target.closest("button[data-action]");
    if (!button) return;
    const card = button.closest("article.ws");
    say("");
    if (await cards.act(card, button, say)) remove(card.dataset.owner, card.dataset.name);
  });

  dy.live({
    snapshot: (items) => {
      const seen = new Set(items.map((ws) => cards.key(ws.owner, ws.name)));
      for (const [k, card] of [...byKey]) if (!seen.has(k)) remove(card.dataset.owner, card.dataset.name);
      items.forEach(upsert);
    },
    workspace: upsert,
    stats: (s) => { const card = byKey.get(cards.key(s.owner, s.name)); if (card) cards.fillStats(card, s.stats); },
    deleted: (d) => remove(d.owner, d.name),
  }, list.dataset.all === "1");
})();
