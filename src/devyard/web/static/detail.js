// A workspace's page: live status and stats, the log (follow, pause, copy), shares, extension groups, delete.
"use strict";

(() => {
  const root = document.getElementById("detail");
  const {owner, name} = root.dataset;
  const path = `/workspaces/${encodeURIComponent(name)}`;
  const q = `?owner=${encodeURIComponent(owner)}`;
  const message = document.getElementById("message");
  const say = (text, kind) => dy.say(message, text, kind);
  const mine = (w) => w.owner === owner && w.name === name;

  root.addEventListener("click", (ev) => {
    const button = ev.target.closest("button[data-action]");
    if (button) { say(""); cards.act(root, button, say); }
  });
  dy.live({
    snapshot: (items) => { const w = items.find(mine); if (w) cards.fill(root, w); },
    workspace: (w) => { if (mine(w)) cards.fill(root, w); },
    stats: (s) => { if (mine(s)) cards.fillStats(root, s.stats); },
    deleted: (d) => { if (mine(d)) { say(`${name} was deleted.`); setTimeout(() => { location.href = "/"; }, 1500); } },
  });

  // The log: follows the server's stream; paused, new lines wait in memory and the view stays still.
  const log = document.getElementById("log");
  const pause = document.getElementById("log-pause");
  const logState = document.getElementById("log-state");
  const MAX_LINES = 5000;
  let paused = false;
  let waiting = [];
  function append(lines) {
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.append(lines.join("\n") + "\n");
    while (log.childNodes.length > MAX_LINES) log.firstChild.remove();
    if (atBottom) log.scrollTop = log.scrollHeight;
  }
  const stream = new EventSource(`/api/v1${path}/logs/stream${q}&lines=200`);
  stream.onmessage = (ev) => { if (paused) { waiting.push(ev.data); logState.textContent = `Paused: ${waiting.length} new line(s) waiting.`; } else append([ev.data]); };
  stream.onerror = () => { logState.textContent = "Reconnecting to the log…"; };
  stream.onopen = () => { logState.textContent = paused ? "Paused." : "Following the engine's log."; };
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume" : "Pause";
    if (!paused && waiting.length) { append(waiting); waiting = []; }
    logState.textContent = paused ? "Paused." : "Following the engine's log.";
  });
  // Copy a block's text; without a clipboard (plain http) select it so the keyboard can copy it.
  async function copy(source, state, what) {
    try {
      await navigator.clipboard.writeText(source.textContent);
      state.textContent = `${what} copied to the clipboard.`;
    } catch (e) {
      const range = document.createRange();
      range.selectNodeContents(source);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      state.textContent = `${what} selected: press Ctrl+C (⌘C) to copy.`;
    }
  }
  document.getElementById("log-copy").addEventListener("click", () => copy(log, logState, "Log"));
  const sshCopy = document.getElementById("ssh-copy");
  if (sshCopy) {
    sshCopy.addEventListener("click", () =>
      copy(document.getElementById("ssh-lines"), document.getElementById("ssh-state"), "Commands"));
  }

  // Ports: who may open each at its own origin (the owner chooses; narrowing closes what is open).
  const ports = document.getElementById("ports");
  if (ports) {
    const portsMessage = document.getElementById("ports-message");
    ports.addEventListener("change", async (ev) => {
      const port = ev.target.dataset.visibility;
      if (!port) return;
      const visibility = ev.target.value;
      dy.say(portsMessage, "");
      try {
        await dy.busy(ev.target, () => dy.api("PUT", `${path}/ports/${port}`, {visibility}));
        dy.say(portsMessage, `Port ${port} is ${visibility} now.`, "ok");
      } catch (e) { dy.say(portsMessage, e.message); }
    });
  }

  // Shares.
  const shareForm = document.getElementById("share");
  if (shareForm) {
    const list = document.getElementById("shares");
    const none = document.getElementById("no-shares");
    const shareMessage = document.getElementById("share-message");
    const addItem = (user) => {
      const li = document.createElement("li");
      li.dataset.user = user;
      li.append(user + " ");
      const b = document.createElement("button");
      b.type = "button"; b.className = "secondary"; b.dataset.unshare = user; b.textContent = "Remove";
      b.setAttribute("aria-label", `Stop sharing with ${user}`);
      li.append(b);
      list.append(li);
      none.hidden = true;
    };
    shareForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const user = shareForm.elements.user.value.trim();
      dy.say(shareMessage, "");
      try {
        await dy.busy(shareForm.querySelector("button"), () => dy.api("POST", `${path}/shares`, {user}));
        addItem(user);
        shareForm.reset();
        dy.say(shareMessage, `${user} can now open ${name}.`, "ok");
      } catch (e) { dy.say(shareMessage, e.message); }
    });
    list.addEventListener("click", async (ev) => {
      const user = ev.target.dataset.unshare;
      if (!user) return;
      try {
        await dy.busy(ev.target, () => dy.api("DELETE", `${path}/shares/${encodeURIComponent(user)}`));
        ev.target.closest("li").remove();
        none.hidden = list.children.length > 0;
        dy.say(shareMessage, `${user} can no longer open ${name}.`, "ok");
      } catch (e) { dy.say(shareMessage, e.message); }
    });
  }

  // Usage charts: drawn by the server, fetched again each minute.
  setInterval(() => {
    for (const img of document.querySelectorAll("img[data-chart]")) img.src = img.src.replace(/&t=\d+$/, "") + `&t=${Date.now()}`;
  }, 60000);

  // Group shares: the page reloads to show the result (members are the group's, read by the server).
  const groupForm = document.getElementById("share-group");
  if (groupForm) {
    const shareMessage = document.getElementById("share-message");
    const change = async (button, work) => {
      dy.say(shareMessage, "");
      try { await dy.busy(button, work); location.reload(); } catch (e) { dy.say(shareMessage, e.message); }
    };
    groupForm.addEventListener("submit", (ev) => {
      ev.preventDefault();
      change(groupForm.querySelector("button"), () => dy.api("POST", `${path}/group-shares`, {group: groupForm.elements.group.value.trim()}));
    });
    document.getElementById("group-shares").addEventListener("click", (ev) => {
      const group = ev.target.dataset.unshareGroup;
      if (group) change(ev.target, () => dy.api("DELETE", `${path}/group-shares/${encodeURIComponent(group)}`));
    });
  }

  // Schedule: days and times in the owner's time zone; the server's answer fills the card.
  const scheduleForm = document.getElementById("schedule-form");
  if (scheduleForm) {
    const scheduleMessage = document.getElementById("schedule-message");
    const save = async (button, schedule, done) => {
      dy.say(scheduleMessage, "");
      try {
        cards.fill(root, await dy.busy(button, () => dy.api("PATCH", path + q, {schedule})));
        dy.say(scheduleMessage, done, "ok");
      } catch (e) { dy.say(scheduleMessage, e.message); }
    };
    scheduleForm.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const f = scheduleForm.elements;
      const days = [...scheduleForm.querySelectorAll("input[name=days]:checked")].map((b) => b.value);
      if (!f.start.value && !f.stop.value) { dy.say(scheduleMessage, "Give a start time, a stop time or both."); return; }
      const schedule = {days, start: f.start.value || null, stop: f.stop.value || null};
      save(scheduleForm.querySelector("button[type=submit]"), schedule, `Schedule saved (${scheduleForm.dataset.zone}).`);
    });
    document.getElementById("schedule-off").addEventListener("click", (ev) => save(ev.target, null, "Schedule removed."));
  }

  // Size.
  const resize = document.getElementById("resize");
  if (resize) {
    const resizeMessage = document.getElementById("resize-message");
    resize.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const size = resize.elements.size.value;
      dy.say(resizeMessage, "");
      try {
        await dy.busy(resize.querySelector("button"), () => dy.api("PATCH", path, {size}));
        dy.say(resizeMessage, `${name} is now ${size}; it applies from its next start.`, "ok");
      } catch (e) { dy.say(resizeMessage, e.message); }
    });
  }

  const groupsForm = document.getElementById("add-groups");
  if (groupsForm) {
    const groupsMessage = document.getElementById("groups-message");
    groupsForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const groups = [...groupsForm.querySelectorAll("input:checked")].map((b) => b.value);
      if (!groups.length) { dy.say(groupsMessage, "Choose at least one group."); return; }
      dy.say(groupsMessage, "Installing… this can take a minute.", "ok");
      try {
        const result = await dy.busy(groupsForm.querySelector("button"), () => dy.api("POST", `${path}/extension-groups`, {groups}));
        const out = document.getElementById("outcomes");
        out.replaceChildren(...result.extensions.map((o) => {
          const li = document.createElement("li");
          li.textContent = `${o.installed ? "✓" : "✗"} ${o.id}: ${o.detail}`;
          li.className = o.installed ? "" : "error";
          return li;
        }));
        document.getElementById("groups-now").textContent = result.workspace.extension_groups.join(", ") || "none";
        for (const g of groups) groupsForm.querySelector(`input[value="${CSS.escape(g)}"]`).closest("label").remove();
        if (!groupsForm.querySelector("input")) groupsForm.replaceWith(Object.assign(document.createElement("p"), {className: "muted", textContent: "Every configured group is in this workspace."}));
        const failed = result.extensions.filter((o) => !o.installed).length;
        dy.say(groupsMessage, failed ? `${failed} extension(s) could not be installed.` : "Added. Reload the editor to use them.", failed ? "bad" : "ok");
      } catch (e) { dy.say(groupsMessage, e.message); }
    });
  }

  // Danger zone.
  const del = document.getElementById("delete");
  if (del) {
    del.addEventListener("click", async () => {
      const keep = document.getElementById("keep-files").checked;
      const what = keep ? "Its files stay on the server." : "Its files are deleted too.";
      if (!await dy.confirmDialog(`Delete workspace ${name}?`, `This stops ${name} and removes it. ${what} It cannot be undone.`, `Delete ${name}`)) return;
      const before = root.dataset.status;
      cards.setStatus(root, "deleting");
      try {
        await dy.busy(del, () => dy.api("DELETE", path + q + (keep ? "&keep_files=1" : "")));
        location.href = "/";
      } catch (e) { say(e.message); cards.setStatus(root, before); }
    });
  }
})();
