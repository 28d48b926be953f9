// Conversations: every key's, filtered; open one to read it, continue it in the
// playground, delete it.
import { useEffect, useState } from "preact/hooks";
import { html } from "./html.js";
import { api, when } from "./api.js";
import { continueConversation } from "./playground.js";

export function Conversations() {
  const [filters, setFilters] = useState({ key: "", model: "", since: "" });
  const [list, setList] = useState(null);
  const [open, setOpen] = useState(null);
  const [keys, setKeys] = useState([]);
  const [error, setError] = useState("");

  async function load() {
    const query = new URLSearchParams(Object.entries(filters).filter(([, v]) => v)).toString();
    try { setList((await api(`/ui/api/conversations?${query}`)).data); setError(""); } catch (e) { setError(e.message); }
  }
  useEffect(() => { load(); }, [filters]);
  useEffect(() => { api("/ui/api/keys").then((d) => setKeys(d.data)).catch(() => {}); }, []);

  async function show(id) {
    try { setOpen(await api(`/ui/api/conversations/${encodeURIComponent(id)}`)); } catch (e) { setError(e.message); }
  }

  async function remove(c) {
    if (!confirm(`Delete the conversation “${c.title || c.id}”?`)) return;
    try {
      await api(`/ui/api/conversations/${encodeURIComponent(c.id)}`, { method: "DELETE" });
      if (open?.id === c.id) setOpen(null);
      await load();
    } catch (e) { setError(e.message); }
  }

  const set = (name) => (e) => setFilters({ ...filters, [name]: e.target.value });
  return html`<section aria-labelledby="conversations-title">
    <h1 id="conversations-title">Conversations</h1>
    <form class="filters" onSubmit=${(e) => e.preventDefault()}>
      <label>Key <select aria-label="Key" value=${filters.key} onChange=${set("key")}><option value="">all keys</option>
        <option value="local">(no key)</option>
        ${keys.map((k) => html`<option value=${k.id}>${k.name}</option>`)}</select></label>
      <label>Model <input value=${filters.model} onChange=${set("model")} placeholder="any" /></label>
      <label>Since <input type="date" value=${filters.since} onChange=${set("since")} /></label>
    </form>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    <div class="columns">
      <div class="table-wrap"><table class="conversations">
        <caption>${list ? `${list.length} conversation${list.length === 1 ? "" : "s"}` : "Loading…"}</caption>
        <thead><tr><th scope="col">First message</th><th scope="col">Key</th><th scope="col">Model</th><th scope="col">Turns</th>
          <th scope="col">Updated</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
        <tbody>${(list || []).map((c) => html`<tr class=${open?.id === c.id ? "selected" : ""}>
          <th scope="row"><button type="button" class="link" onClick=${() => show(c.id)}>${c.title || c.id}</button></th>
          <td>${c.key_name}</td><td>${c.model}</td><td>${c.turns}</td><td>${when(c.updated_at)}</td>
          <td class="actions"><button type="button" class="danger" onClick=${() => remove(c)} aria-label=${`Delete ${c.title || c.id}`}>Delete</button></td></tr>`)}</tbody>
      </table></div>
      ${open && html`<${Reader} conversation=${open} onClose=${() => setOpen(null)} />`}
    </div>
  </section>`;
}

function Reader({ conversation, onClose }) {
  return html`<article class="panel reader" aria-label="Conversation ${conversation.id}">
    <header><h2>${conversation.title || conversation.id}</h2>
      <button type="button" class="primary" onClick=${() => continueConversation(conversation)}>Continue in playground</button>
      <button type="button" onClick=${onClose}>Close</button></header>
    <p class="meta"><code>${conversation.id}</code> · ${conversation.model} · ${conversation.turns} turns</p>
    ${conversation.system && html`<p class="system"><strong>System:</strong> ${conversation.system}</p>`}
    <ol class="transcript">${conversation.messages.map((m) => html`<li class=${`msg ${m.role}`}>
      <span class="who">${m.role === "user" ? "User" : "Claude"}</span>
      ${m.content.map((b) => html`<${Block} block=${b} />`)}</li>`)}</ol>
  </article>`;
}

function Block({ block }) {
  switch (block.type) {
    case "text": return html`<div class="text">${block.text}</div>`;
    case "thinking": return html`<details class="reasoning"><summary>Reasoning</summary><pre>${block.thinking}</pre></details>`;
    case "tool_use": return html`<div class="card tool-call"><strong>Tool call · ${block.name}</strong><pre>${JSON.stringify(block.input, null, 2)}</pre></div>`;
    case "tool_result": return html`<div class="card"><strong>Tool result</strong><pre>${typeof block.content === "string" ? block.content : JSON.stringify(block.content, null, 2)}</pre></div>`;
    case "image": return html`<p class="meta">[image]</p>`;
    default: return html`<p class="meta">[${block.type}]</p>`;
  }
}
