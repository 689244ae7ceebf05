// The page the gateway shows while a workspace starts: follows its status and opens the editor when it runs.
"use strict";

(() => {
  const box = document.getElementById("starting");
  const {owner, name} = box.dataset;
  const state = document.getElementById("state");
  const failure = document.getElementById("failure");
  const again = document.getElementById("again");
  const api = `/workspaces/${encodeURIComponent(name)}?owner=${encodeURIComponent(owner)}`;
  let done = false;

  function show(w) {
    if (done || w.owner !== owner || w.name !== name) return;
    if (w.status === "running") {
      done = true;
      state.textContent = "Ready: opening the editor…";
      location.reload();
    } else if (w.status === "failed") {
      failure.hidden = false;
      failure.textContent = `${name} could not start: ${w.error || "see its log on the dashboard"}`;
      again.hidden = false;
      state.textContent = "";
    } else if (w.status === "stopped") {
      state.textContent = `${name} is stopped.`;
      again.hidden = false;
    } else {
      state.textContent = w.status === "provisioning" && w.progress ? `Setting up: ${w.progress.step}` : `The workspace is ${w.status}…`;
    }
  }

  dy.live({snapshot: (items) => items.forEach(show), workspace: show});
  again.addEventListener("click", async () => {
    failure.hidden = true;
    again.hidden = true;
    state.textContent = "Starting again…";
    try { show(await dy.busy(again, () => dy.api("POST", api.replace("?", "/start?")))); }
    catch (e) { failure.hidden = false; failure.textContent = e.message; again.hidden = false; }
  });
})();
