// Dashboard actions: everything goes through the same REST API the CLI uses.
const api = async (method, path, body) => {
  const r = await fetch("/api/v1" + path, {
    method, credentials: "same-origin",
    headers: body ? {"content-type": "application/json"} : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!r.ok && r.status !== 204) {
    let msg = r.statusText;
    try { msg = (await r.json()).error.message; } catch (e) {}
    throw new Error(msg);
  }
  return r.status === 204 ? null : r.json();
};
const say = (text) => { document.getElementById("message").textContent = text; };

document.getElementById("create").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const name = ev.target.elements.name.value.trim();
  try { await api("POST", "/workspaces", {name}); location.reload(); } catch (e) { say(e.message); }
});

document.getElementById("workspaces").addEventListener("click", async (ev) => {
  const action = ev.target.dataset.action;
  if (!action) return;
  const name = ev.target.closest("tr").dataset.name;
  if (action === "delete" && !confirm(`Delete workspace ${name} and its files?`)) return;
  try {
    if (action === "delete") await api("DELETE", "/workspaces/" + encodeURIComponent(name));
    else await api("POST", `/workspaces/${encodeURIComponent(name)}/${action}`);
    location.reload();
  } catch (e) { say(e.message); }
});

// Follow workspaces that are changing state.
if (document.querySelector(".status-starting, .status-stopping, .status-creating, .status-provisioning")) {
  setTimeout(() => location.reload(), 1500);
}
