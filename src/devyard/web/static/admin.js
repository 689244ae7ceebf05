// The users admin page: add, disable or enable, change role, reset password.
"use strict";

(() => {
  const message = document.getElementById("message");
  const users = document.getElementById("users");

  users.addEventListener("click", async (ev) => {
    const button = ev.target.closest("button[data-do]");
    if (!button) return;
    const row = button.closest("tr");
    const name = row.dataset.user;
    const path = `/users/${encodeURIComponent(name)}`;
    dy.say(message, "");
    try {
      if (button.dataset.do === "role") {
        const admin = row.dataset.admin === "1";
        await dy.busy(button, () => dy.api("PATCH", path, {is_admin: !admin}));
        row.dataset.admin = admin ? "0" : "1";
        row.querySelector("[data-field=role]").textContent = admin ? "user" : "admin";
        button.textContent = admin ? "Make admin" : "Remove admin";
        button.setAttribute("aria-label", `${admin ? "Make admin:" : "Remove admin rights from"} ${name}`);
        dy.say(message, admin ? `${name} is no longer an admin.` : `${name} is now an admin.`, "ok");
      } else if (button.dataset.do === "disable") {
        const disabled = row.dataset.disabled === "1";
        if (!disabled && !await dy.confirmDialog(`Disable ${name}?`, `${name} is logged out, their tokens stop working and their workspaces stop.`, `Disable ${name}`)) return;
        await dy.busy(button, () => dy.api("PATCH", path, {disabled: !disabled}));
        row.dataset.disabled = disabled ? "0" : "1";
        row.querySelector("[data-field=state]").textContent = disabled ? "active" : "disabled";
        button.textContent = disabled ? "Disable" : "Enable";
        button.setAttribute("aria-label", `${disabled ? "Disable" : "Enable"} ${name}`);
        dy.say(message, disabled ? `${name} may log in again.` : `${name} is disabled.`, "ok");
      } else if (button.dataset.do === "password") {
        const field = document.createElement("label");
        field.innerHTML = 'New password <input type="password" autocomplete="new-password" minlength="8" required>';
        if (!await dy.confirmDialog(`Reset the password of ${name}?`, `${name}'s sessions end; tell them the new password.`, "Set password", field)) return;
        const password = field.querySelector("input").value;
        if (password.length < 8) throw new Error("The new password needs at least 8 characters.");
        await dy.busy(button, () => dy.api("PATCH", path, {password}));
        dy.say(message, `${name}'s password was reset.`, "ok");
      } else if (button.dataset.do === "quota") {
        const own = JSON.parse(row.dataset.quota);
        const fields = document.createElement("div");
        fields.className = "stack";
        const labels = {max_workspaces: "Workspaces", max_running: "Running at once", max_disk_mb: "Disk (MB)"};
        for (const [key, label] of Object.entries(labels)) {
          const l = document.createElement("label");
          l.textContent = label + " ";
          const input = Object.assign(document.createElement("input"), {type: "number", min: "0", name: key, placeholder: "default"});
          if (own[key] !== null) input.value = own[key];
          l.append(input);
          fields.append(l);
        }
        if (!await dy.confirmDialog(`Quota of ${name}`, "Leave a field empty for the default.", "Save quota", fields)) return;
        const body = {};
        for (const input of fields.querySelectorAll("input")) body[input.name] = input.value === "" ? null : Number(input.value);
        const q = await dy.busy(button, () => dy.api("PUT", `${path}/quota`, body));
        row.dataset.quota = JSON.stringify(q.own);
        const e = q.effective;
        row.querySelector("[data-field=quota]").textContent =
          `${e.max_workspaces ?? "∞"} workspaces · ${e.max_running ?? "∞"} running · ${e.max_disk_mb !== null ? e.max_disk_mb + " MB" : "∞ disk"}`;
        dy.say(message, `${name}'s quota was saved.`, "ok");
      }
    } catch (e) { dy.say(message, e.message); }
  });

  const add = document.getElementById("add-user");
  const addMessage = document.getElementById("add-message");
  add.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    dy.say(addMessage, "");
    const f = add.elements;
    try {
      const u = await dy.busy(add.querySelector("button"), () => dy.api("POST", "/users", {name: f.name.value.trim(), password: f.password.value, is_admin: f.is_admin.checked}));
      dy.say(addMessage, `${u.name} was added. Reloading the list…`, "ok");
      setTimeout(() => location.reload(), 600);
    } catch (e) { dy.say(addMessage, e.message); }
  });
})();
