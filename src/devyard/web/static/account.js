// The account page: password, API tokens (shown once), secrets (names only).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  // One pattern for every form here: check, send, show what happened.
  function onSubmit(form, region, work) {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      dy.say(region, "");
      try {
        const done = await dy.busy(form.querySelector("button[type=submit]"), () => work(form.elements));
        if (done) dy.say(region, done, "ok");
      } catch (e) { dy.say(region, e.message); }
    });
  }

  onSubmit($("password"), $("password-message"), async (f) => {
    if (f.new_password.value !== f.confirm.value) throw new Error("The two new passwords differ.");
    if (f.new_password.value.length < 8) throw new Error("The new password needs at least 8 characters.");
    await dy.api("POST", "/me/password", {current_password: f.current_password.value, new_password: f.new_password.value});
    $("password").reset();
    return "Password changed. Your other sessions were logged out.";
  });

  onSubmit($("timezone"), $("timezone-message"), async (f) => {
    const me = await dy.api("PATCH", "/me", {timezone: f.timezone.value.trim() || null});
    return `Your schedules run in ${me.timezone || "the manager's default time zone"}.`;
  });

  onSubmit($("token"), $("token-message"), async (f) => {
    const body = {name: f.name.value.trim(), scope: f.scope.value};
    if (f.expires_in.value) body.expires_in = f.expires_in.value;
    const t = await dy.api("POST", "/tokens", body);
    $("token-value").textContent = t.token;
    $("token-new").hidden = false;
    const row = document.createElement("tr");
    row.dataset.id = t.id;
    const cells = [t.name, t.scope, dy.when(t.created_at), t.expires_at ? dy.when(t.expires_at) : "never", "never"];
    for (const text of cells) { const td = document.createElement("td"); td.textContent = text; row.append(td); }
    const td = document.createElement("td");
    const b = document.createElement("button");
    b.type = "button"; b.className = "secondary"; b.dataset.revoke = t.id; b.textContent = "Revoke";
    b.setAttribute("aria-label", `Revoke token ${t.name}`);
    td.append(b); row.append(td);
    $("tokens").prepend(row);
    $("token").reset();
    $("token-copy").focus();
    return "";
  });
  $("token-copy").addEventListener("click", async () => {
    try { await navigator.clipboard.writeText($("token-value").textContent); dy.say($("token-message"), "Token copied.", "ok"); }
    catch (e) { getSelection().selectAllChildren($("token-value")); dy.say($("token-message"), "Token selected: press Ctrl+C (⌘C) to copy.", "ok"); }
  });
  $("tokens").addEventListener("click", async (ev) => {
    const id = ev.target.dataset.revoke;
    if (!id) return;
    try {
      await dy.busy(ev.target, () => dy.api("DELETE", `/tokens/${id}`));
      ev.target.replaceWith("revoked");
      dy.say($("token-message"), "Token revoked: it stopped working at once.", "ok");
    } catch (e) { dy.say($("token-message"), e.message); }
  });

  onSubmit($("secret"), $("secret-message"), async (f) => {
    const name = f.name.value.trim();
    const body = {value: f.value.value};
    if (f.file.value.trim()) body.file = f.file.value.trim();
    const s = await dy.api("PUT", `/secrets/${encodeURIComponent(name)}`, body);
    let row = $("secrets").querySelector(`tr[data-name="${CSS.escape(s.name)}"]`);
    if (!row) {
      row = document.createElement("tr");
      row.dataset.name = s.name;
      row.innerHTML = '<td><code></code></td><td></td><td></td><td><button type="button" class="secondary">Delete</button></td>';
      row.querySelector("code").textContent = s.name;
      const b = row.querySelector("button");
      b.dataset.deleteSecret = s.name;
      b.setAttribute("aria-label", `Delete secret ${s.name}`);
      $("secrets").append(row);
    }
    row.children[1].textContent = s.file ? `file ~/${s.file}` : "variable";
    row.children[2].textContent = dy.when(s.updated_at);
    $("no-secrets").hidden = true;
    $("secret").reset();
    return `Secret ${s.name} saved.` + (s.file ? " Its file was written in your workspaces." : " Workspaces see it from their next start.");
  });
  $("secrets").addEventListener("click", async (ev) => {
    const name = ev.target.dataset.deleteSecret;
    if (!name) return;
    if (!await dy.confirmDialog(`Delete secret ${name}?`, `Workspaces lose ${name} at their next start (a secret file goes at once).`, `Delete ${name}`)) return;
    try {
      await dy.busy(ev.target, () => dy.api("DELETE", `/secrets/${encodeURIComponent(name)}`));
      ev.target.closest("tr").remove();
      $("no-secrets").hidden = $("secrets").children.length > 0;
      dy.say($("secret-message"), `Secret ${name} deleted.`, "ok");
    } catch (e) { dy.say($("secret-message"), e.message); }
  });
})();
