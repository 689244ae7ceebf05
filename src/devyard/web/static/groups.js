// The groups page: add a group or a member, remove a local member, delete a group; the page reloads to show the result.
"use strict";

(() => {
  const message = document.getElementById("message");
  const done = () => location.reload();
  const path = (name) => `/groups/${encodeURIComponent(name)}`;
  async function act(button, work) {
    dy.say(message, "");
    try { await dy.busy(button, work); done(); } catch (e) { dy.say(message, e.message); }
  }
  document.getElementById("add-group").addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(ev.target.querySelector("button"), () => dy.api("POST", "/groups", {name: ev.target.elements.name.value.trim()}));
  });
  document.getElementById("add-member").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = ev.target.elements;
    act(ev.target.querySelector("button"), () => dy.api("PUT", `${path(f.group.value)}/members/${encodeURIComponent(f.user.value.trim())}`));
  });
  document.getElementById("groups").addEventListener("click", async (ev) => {
    const row = ev.target.closest("tr[data-group]");
    if (!row) return;
    const group = row.dataset.group;
    if (ev.target.dataset.remove) {
      act(ev.target, () => dy.api("DELETE", `${path(group)}/members/${encodeURIComponent(ev.target.dataset.remove)}`));
    } else if (ev.target.dataset.delete) {
      if (!await dy.confirmDialog(`Delete group ${group}?`, "Its members leave it; what it granted ends at their next request.", `Delete ${group}`)) return;
      act(ev.target, () => dy.api("DELETE", path(group)));
    }
  });
})();
