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
  saveKey(e.target.key.value.trim());
  e.target.key.value = "";
  loadRecent();
});

async function loadRecent() {
  const r = await fetch("/v1/generations?limit=20", { headers: authHeaders() });
  if (r.status === 401) document.getElementById("key-box").open = true;
  if (!r.ok) return;
  const rows = (await r.json()).data;
  const table = document.getElementById("recent");
  table.replaceChildren();
  for (const g of rows) {
    const tr = document.createElement("tr");
    const link = document.createElement("a");
    link.href = `/g/${encodeURIComponent(g.id)}`;
    link.textContent = g.preview || g.id;
    const cells = [link, g.status, g.model, new Date(g.created_at * 1000).toLocaleString()];
    for (const value of cells) {
      const td = document.createElement("td");
      if (typeof value === "string") td.textContent = value; else td.appendChild(value);
      tr.appendChild(td);
    }
    table.appendChild(tr);
  }
}

loadRecent();
setInterval(loadRecent, 5000);
