// The create page: validate as you type, send (uploads with a progress bar), then follow provisioning until running.
"use strict";

(() => {
  const form = document.getElementById("create");
  const NAME = /^[a-z0-9][a-z0-9-]{0,38}$/;
  const taken = new Set(JSON.parse(form.dataset.taken));
  const maxBytes = Number(form.dataset.maxUploadMb) * 1024 * 1024;
  const nameInput = form.elements.name;
  const nameError = document.getElementById("name-error");
  const message = document.getElementById("message");
  const source = () => form.querySelector("input[name=source]:checked").value;

  function nameProblem(name) {
    if (!name) return "Give the workspace a name.";
    if (!NAME.test(name)) {
      if (/[A-Z]/.test(name)) return "Use lower-case letters only.";
      if (name.length > 39) return "At most 39 characters.";
      if (name.startsWith("-")) return "Start with a letter or a digit.";
      return 'Only lower-case letters, digits and "-".';
    }
    if (taken.has(name)) return `You already have a workspace named ${name}.`;
    return "";
  }

  function checkName() {
    const problem = nameProblem(nameInput.value.trim());
    nameError.textContent = nameInput.value ? problem : "";
    nameInput.setAttribute("aria-invalid", problem && nameInput.value ? "true" : "false");
    return problem;
  }
  nameInput.addEventListener("input", checkName);

  // Show the part of the form for the chosen source; a template pre-selects its extension groups.
  function showSource() {
    for (const part of form.querySelectorAll("[data-source]")) part.hidden = part.dataset.source !== source();
    if (source() === "template" && !form.querySelector("input[name=template]:checked")) {
      const first = form.querySelector("input[name=template]");
      if (first) first.checked = true;
    }
    applyTemplateGroups();
  }
  function applyTemplateGroups() {
    const t = form.querySelector("input[name=template]:checked");
    if (source() !== "template" || !t) return;
    const groups = new Set(JSON.parse(t.dataset.groups));
    for (const box of form.querySelectorAll("input[name=extension_groups]")) if (groups.has(box.value)) box.checked = true;
  }
  form.addEventListener("change", (ev) => {
    if (ev.target.name === "source") showSource();
    if (ev.target.name === "template") applyTemplateGroups();
  });
  showSource();

  // A thumbnail that cannot load (offline, moved) becomes the template's initial.
  for (const img of form.querySelectorAll(".template img")) {
    const fallback = () => { const thumb = img.parentElement; thumb.textContent = thumb.dataset.initial; thumb.classList.add("placeholder"); };
    if (img.complete && img.naturalWidth === 0) fallback(); else img.addEventListener("error", fallback);
  }

  // Multipart upload through XMLHttpRequest: fetch() cannot report upload progress.
  function upload(data, bar) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "/api/v1/workspaces/upload");
      xhr.responseType = "json";
      bar.hidden = false;
      xhr.upload.addEventListener("progress", (ev) => { if (ev.lengthComputable) { bar.max = ev.total; bar.value = ev.loaded; state(`Uploading… ${dy.bytes(ev.loaded)} of ${dy.bytes(ev.total)}`); } });
      xhr.addEventListener("load", () => {
        if (xhr.status === 201) resolve(xhr.response);
        else reject(new Error((xhr.response && xhr.response.error && xhr.response.error.message) || `The upload failed (${xhr.status}).`));
      });
      xhr.addEventListener("error", () => reject(new Error("The upload was interrupted: check your connection and try again.")));
      xhr.send(data);
    });
  }

  const after = document.getElementById("after");
  const setupBar = document.getElementById("setup-bar");
  const state = (text) => { document.getElementById("setup-state").textContent = text; };

  function follow(ws) {
    const open = document.getElementById("open");
    const details = document.getElementById("details");
    const retry = document.getElementById("retry");
    const error = document.getElementById("setup-error");
    details.href = dy.wsPath(ws.owner, ws.name);
    details.hidden = false;
    open.href = ws.url;
    const show = (w) => {
      if (w.owner !== ws.owner || w.name !== ws.name) return;
      error.hidden = !w.error;
      error.textContent = w.error ? (w.status === "failed" ? "Failed: " : "Note: ") + w.error : "";
      retry.hidden = w.status !== "failed";
      if (w.status === "provisioning") {
        const p = w.progress;
        if (p && p.total) { setupBar.max = p.total; setupBar.value = p.current; } else setupBar.removeAttribute("value");
        state(p ? `Setting up: ${p.step} (${p.current} of ${p.total})` : "Setting up…");
      } else if (w.status === "starting") {
        setupBar.max = 1; setupBar.value = 0.9; state("Starting the editor…");
      } else if (w.status === "running") {
        setupBar.max = 1; setupBar.value = 1; state(`${w.name} is ready.`);
        open.hidden = false; open.focus();
      } else if (w.status === "failed") {
        setupBar.max = 1; setupBar.value = 0; state(`${w.name} could not be set up.`);
      } else state(w.status);
    };
    show(ws);
    dy.live({snapshot: (items) => items.forEach(show), workspace: show});
    retry.addEventListener("click", async () => {
      try { show(await dy.busy(retry, () => dy.api("POST", `/workspaces/${encodeURIComponent(ws.name)}/retry-provision`))); }
      catch (e) { error.hidden = false; error.textContent = e.message; }
    });
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    dy.say(message, "");
    const problem = checkName();
    if (problem) { nameError.textContent = problem; nameInput.setAttribute("aria-invalid", "true"); nameInput.focus(); return; }
    const name = nameInput.value.trim();
    const groups = [...form.querySelectorAll("input[name=extension_groups]:checked")].map((b) => b.value);
    const size = form.elements.size ? form.elements.size.value : "";
    const submit = document.getElementById("submit");
    let file = null;
    if (source() === "archive") {
      file = form.elements.archive.files[0];
      if (!file) { dy.say(message, "Choose an archive to upload."); form.elements.archive.focus(); return; }
      const types = JSON.parse(form.dataset.archiveTypes);
      if (!types.some((t) => file.name.toLowerCase().endsWith(t))) { dy.say(message, `This server takes ${types.join(", ")} archives.`); form.elements.archive.focus(); return; }
      if (file.size > maxBytes) { dy.say(message, `The archive is ${dy.bytes(file.size)}; the limit is ${form.dataset.maxUploadMb} MB.`); return; }
    }
    if (source() === "git" && !form.elements.git_url.value.trim()) { dy.say(message, "Give the repository's URL."); form.elements.git_url.focus(); return; }
    after.hidden = false;
    after.querySelector("[data-field=name]").textContent = name;
    state("Creating…");
    try {
      const ws = await dy.busy(submit, async () => {
        if (file) {
          const data = new FormData();
          data.append("name", name);
          for (const g of groups) data.append("extension_groups", g);
          if (size) data.append("size", size);
          data.append("archive", file, file.name);
          return upload(data, document.getElementById("upload-bar"));
        }
        const body = {name, extension_groups: groups};
        if (size) body.size = size;
        if (source() === "template") body.template = form.querySelector("input[name=template]:checked").value;
        if (source() === "git") body.git_url = form.elements.git_url.value.trim();
        return dy.api("POST", "/workspaces", body);
      });
      taken.add(name);
      form.hidden = true;
      follow(ws);
    } catch (e) {
      after.hidden = true;
      dy.say(message, e.message);
    }
  });
})();
