// Watches one generation through the browser's own EventSource. EventSource reconnects by itself and sends
// Last-Event-ID, so an API restart mid-stream loses and doubles nothing. Text is rendered with textContent or
// the DOM-only Markdown renderer (markdown.js): model output is never inserted as HTML.
"use strict";

const generationId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
const $ = (id) => document.getElementById(id);
const state = {
  status: "connecting", attempt: 0, reasoning: "", content: "", reasoningDeltas: 0, contentDeltas: 0,
  usage: null, error: null, startedAt: null, finishedAt: null, done: false, model: "", simulated: false,
  messages: null, open: false, toolCalls: [],
};
let renderQueued = false;

function queueRender() {
  if (!renderQueued) {
    renderQueued = true;
    requestAnimationFrame(render);
  }
}

function elapsedText() {
  if (!state.startedAt) return "";
  const end = state.finishedAt ?? Date.now() / 1000;
  return `${Math.max(0, end - state.startedAt).toFixed(1)} s`;
}

function render() {
  renderQueued = false;
  const status = $("status");
  status.textContent = state.status + (state.attempt > 1 ? ` · attempt ${state.attempt}` : "");
  status.className = `status ${state.status}`;
  $("model").textContent = state.model;
  $("sim-note").hidden = !state.simulated;
  const usage = state.usage || {};
  const reasoningTokens = usage.completion_tokens_details?.reasoning_tokens ?? state.reasoningDeltas;
  const totalTokens = usage.completion_tokens ?? state.reasoningDeltas + state.contentDeltas;
  $("tokens").textContent = `${totalTokens} tokens (${reasoningTokens} reasoning)`;
  $("elapsed").textContent = elapsedText();
  $("reasoning").textContent = state.reasoning;
  $("reasoning-pane").hidden = !state.reasoning;
  $("answer").replaceChildren(renderMarkdown(state.content));
  $("answer").hidden = !state.content;
  // Tool calls: the function's name and its JSON arguments as they stream, as text (never HTML).
  $("tool-calls").replaceChildren(...state.toolCalls.filter(Boolean).map((call) => {
    const row = document.createElement("pre");
    row.textContent = `${call.name}(${call.arguments})`;
    return row;
  }));
  $("tool-calls").hidden = !state.toolCalls.length;
  const error = $("error");
  error.hidden = !state.error;
  error.textContent = state.error ? `${state.error.type}: ${state.error.message}` : "";
  if (state.done) document.body.dataset.done = "true";
}

const base = `/v1/generations/${encodeURIComponent(generationId)}`;
let token = new URLSearchParams(location.search).get("token");
let source = null;

function onEvent(type, handler) {
  source.addEventListener(type, (e) => {
    handler(JSON.parse(e.data));
    queueRender();
  });
}

// EventSource cannot send headers: with an API key (and no share link) the page makes itself a share link.
async function shareToken() {
  if (token || !storedKey()) return token;
  try {
    const r = await fetch(`${base}/share`, {
      method: "POST", headers: authHeaders({ "content-type": "application/json" }), body: "{}",
    });
    if (r.ok) {
      const share = await r.json();
      token = share.token;
      const link = $("share-link");
      link.href = share.page_url;
      link.title = `valid until ${new Date(share.expires_at * 1000).toLocaleString()}`;
      link.hidden = false;
    }
  } catch (_) { /* open the stream without one */ }
  return token;
}

async function start() {
  await shareToken();
  source = new EventSource(withToken(`${base}/events`, token));
  subscribe();
  refreshRecord();
  refreshViewers();
  setInterval(refreshViewers, 1000);
}

function renderPrompt() {
  const pane = $("prompt-pane");
  const out = $("prompt");
  out.replaceChildren();
  for (const m of state.messages || []) {
    const text = typeof m.content === "string" ? m.content : (m.content || []).map((p) => p.text || "").join("");
    const role = document.createElement("div");
    role.className = "role";
    role.textContent = m.role;
    const body = document.createElement("div");
    body.className = "message";
    body.textContent = text;
    out.append(role, body);
  }
  pane.hidden = !(state.messages && state.messages.length);
}

function subscribe() {
  onEvent("status", (d) => {
    state.status = d.status;
    state.attempt = d.attempt;
    if (d.status === "running" && !state.startedAt) state.startedAt = Date.now() / 1000;
  });
  onEvent("reasoning", (d) => { state.reasoning += d.delta; state.reasoningDeltas++; });
  onEvent("content", (d) => { state.content += d.delta; state.contentDeltas++; });
  onEvent("tool_call", (d) => {
    const call = state.toolCalls[d.index] ?? (state.toolCalls[d.index] = { name: "", arguments: "" });
    if (d.name !== undefined) call.name = d.name;
    call.arguments += d.arguments || "";
    state.contentDeltas++;
  });
  onEvent("restart", (d) => {
    // The contract: a new attempt starts the text again; never show two attempts' text mixed.
    state.reasoning = ""; state.content = ""; state.reasoningDeltas = 0; state.contentDeltas = 0;
    state.toolCalls = [];
    state.attempt = d.attempt;
  });
  onEvent("done", (d) => {
    state.status = d.status; state.usage = d.usage; state.error = d.error; state.done = true;
    state.finishedAt = state.finishedAt ?? Date.now() / 1000;
    source.close();
    refreshRecord();
  });
  source.onerror = () => {
    if (state.done) return;
    if (source.readyState === EventSource.CLOSED) {
      state.status = "unavailable";  // not the generation's status: this page may not show it
      state.error = {
        type: "not_found",
        message: "this generation does not exist or has expired, or this link is not valid (a share link or API key is needed)",
      };
    } else {
      state.status = "reconnecting";
    }
    queueRender();
  };
  source.onopen = () => {
    state.open = true;
    refreshViewers();
    if (state.status === "reconnecting" || state.status === "connecting") refreshRecord();
  };
}

async function refreshRecord() {
  try {
    const r = await fetch(withToken(base, token));
    if (!r.ok) return;
    const g = await r.json();
    state.model = g.model;
    state.simulated = Boolean(g.simulated);
    if (state.messages === null) {
      state.messages = g.messages || [];
      renderPrompt();
    }
    state.startedAt = g.started_at ?? state.startedAt;
    state.finishedAt = g.finished_at ?? state.finishedAt;
    if (!state.done && state.status !== "running") state.status = g.status;
    queueRender();
  } catch (_) { /* the stream will reconnect */ }
}

async function refreshViewers() {
  try {
    const r = await fetch(withToken(`${base}/viewers`, token));
    if (!r.ok) return;
    // Counts are published every 2 s; a viewer whose stream is open is watching even before that.
    const live = state.open && !state.done && source && source.readyState === EventSource.OPEN;
    const n = Math.max((await r.json()).viewers, live ? 1 : 0);
    $("viewers").textContent = `${n} watching`;
  } catch (_) { /* try again later */ }
}

start();
setInterval(() => { if (!state.done) queueRender(); }, 1000);
