// Submit a prompt, then open its viewer; list recent generations (text set with textContent only).
"use strict";

document.getElementById("submit").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.target;
  const body = { messages: [{ role: "user", content: form.prompt.value }] };
  if (form.model.value.trim()) body.model = form.model.value.trim();
  if (form.max_tokens.value) body.max_tokens = Number(form.max_tokens.value);
  const out = document.getElementById("submit-error");
  out.textContent = "";
  const r = await fetch("/v1/generations", {
    method: "POST", headers: authHeaders({ "content-type": "application/json" }), body: JSON.stringify(body),
  });
  const answer = await r.json();
  if (!r.ok) {
    out.textContent = answer.error?.message ?? `HTTP ${r.status}`;
    if (r.status === 401) document.getElementById("key-box").open = true;
    return;
  }
  location.href = `/g/${encodeURIComponent(answer.id)}`;
});

document.getElementById("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const key = e.target.key.value.trim();
  saveKey(key);
  e.target.key.value = "";
  document.getElementById("key-saved").textContent = key
    ? "Saved in this browser: requests from these pages now send it."
    : "Key removed from this browser.";
  loadRecent();
  loadModels();
});

function recentNote(text) {
  const note = document.getElementById("recent-note");
  note.textContent = text;
  note.hidden = !text;
}

function textCell(text, className) {
  const td = document.createElement("td");
  td.className = className;
  td.textContent = text;
  return td;
}

async function loadRecent() {
  const r = await fetch("/v1/generations?limit=20", { headers: authHeaders() });
  if (r.status === 401) {
    document.getElementById("key-box").open = true;
    document.getElementById("recent").replaceChildren();
    recentNote(storedKey()
      ? "This key is not accepted by the server: save another one above."
      : "This server asks for an API key: save yours above to see your recent generations.");
    return;
  }
  if (!r.ok) return;
  const rows = (await r.json()).data;
  recentNote(rows.length ? "" : "Nothing yet: your generations will be listed here.");
  const table = document.getElementById("recent");
  table.replaceChildren();
  for (const g of rows) {
    const tr = document.createElement("tr");
    const preview = document.createElement("td");
    preview.className = "preview";
    const link = document.createElement("a");
    link.href = `/g/${encodeURIComponent(g.id)}`;
    link.textContent = g.preview || g.id;
    preview.appendChild(link);
    const model = document.createElement("td");
    model.className = "nowrap";
    model.textContent = g.model;
    if (g.simulated) {
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = "simulated";
      tag.title = "served by the built-in simulated model, not a real one";
      model.appendChild(tag);
    }
    tr.append(preview, textCell(g.status, "nowrap"), model,
      textCell(new Date(g.created_at * 1000).toLocaleString(), "nowrap when"));
    table.appendChild(tr);
  }
}

async function loadModels() {
  const r = await fetch("/v1/models", { headers: authHeaders() });
  if (!r.ok) return;
  const list = document.getElementById("models");
  list.replaceChildren();
  for (const m of (await r.json()).data) {
    const option = document.createElement("option");
    option.value = m.id;
    list.appendChild(option);
  }
}

loadRecent();
loadModels();
setInterval(loadRecent, 5000);
