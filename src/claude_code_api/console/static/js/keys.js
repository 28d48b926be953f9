// Keys: create (the key shown once), change limits, revoke. A stored key's secret is
// never sent by the server, so it can never be shown again.
import { useEffect, useState } from "preact/hooks";
import { html } from "./html.js";
import { api, copy, money, when } from "./api.js";

const BLANK = { name: "", rpm: "", concurrency: "", budget_usd: "", models: "", agent: false, admin: false };

export function Keys({ session }) {
  const [keys, setKeys] = useState(null);
  const [error, setError] = useState("");
  const [created, setCreated] = useState(null);
  const [editing, setEditing] = useState(null);
  const [creating, setCreating] = useState(false);

  async function load() {
    try { setKeys((await api("/ui/api/keys")).data); } catch (e) { setError(e.message); }
  }
  useEffect(() => { load(); }, []);

  async function create(form) {
    setError("");
    try {
      const made = await api("/ui/api/keys", { method: "POST", body: { name: form.name, ...limits(form) } });
      setCreated(made);
      setCreating(false);
      await load();
      return true;
    } catch (e) { setError(e.message); return false; }
  }

  async function update(id, form) {
    setError("");
    try {
      await api(`/ui/api/keys/${id}`, { method: "POST", body: limits(form, true) });
      setEditing(null);
      await load();
    } catch (e) { setError(e.message); }
  }

  async function revoke(key) {
    if (!confirm(`Revoke the key “${key.name}”? Requests with it are refused at once.`)) return;
    setError("");
    try { await api(`/ui/api/keys/${key.id}`, { method: "DELETE" }); await load(); } catch (e) { setError(e.message); }
  }

  return html`<section aria-labelledby="keys-title">
    <h1 id="keys-title">Keys</h1>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${created && html`<${Created} made=${created} onDone=${() => setCreated(null)} />`}
    <details class="panel" open=${creating} onToggle=${(e) => setCreating(e.target.open)}>
      <summary>Create a key</summary>
      <${KeyForm} initial=${BLANK} withName submitLabel="Create key" onSubmit=${create} />
    </details>
    ${keys === null ? html`<p class="loading">Loading…</p>` : html`
    <div class="table-wrap"><table class="keys">
      <caption>${keys.length} key${keys.length === 1 ? "" : "s"}</caption>
      <thead><tr><th scope="col">Name</th><th scope="col">Id</th><th scope="col">Limits</th>
        <th scope="col">Spent</th><th scope="col">Last used</th><th scope="col">Status</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
      <tbody>${keys.map((k) => html`<tr key=${k.id} class=${k.revoked ? "revoked" : ""}>
        <th scope="row">${k.name}${k.admin ? html` <span class="badge">admin</span>` : ""}${k.agent ? html` <span class="badge">agent</span>` : ""}</th>
        <td><code>${k.id}</code></td>
        <td>${describe(k)}</td>
        <td>${money(k.spent_usd)}${k.budget_usd ? ` of ${money(k.budget_usd)}` : ""}</td>
        <td>${when(k.last_used_at)}</td>
        <td>${k.revoked ? "revoked" : "active"}</td>
        <td class="actions">${!k.revoked && html`
          <button type="button" onClick=${() => setEditing(editing === k.id ? null : k.id)} aria-expanded=${editing === k.id}>Limits of ${k.name}</button>
          ${k.name !== session.admin && html`<button type="button" class="danger" onClick=${() => revoke(k)}>Revoke ${k.name}</button>`}`}</td>
      </tr>
      ${editing === k.id && html`<tr class="edit"><td colspan="7">
        <${KeyForm} initial=${formOf(k)} submitLabel="Save limits" onSubmit=${(form) => update(k.id, form)} /></td></tr>`}`)}
      </tbody></table></div>`}
  </section>`;
}

function Created({ made, onDone }) {
  const [copied, setCopied] = useState("");
  return html`<div class="panel created" role="region" aria-label="New key">
    <p><strong>Key “${made.key.name}” created.</strong> Copy it now: it is shown only once.</p>
    <p><code class="secret" aria-label="New key value">${made.token}</code></p>
    <button type="button" class="primary" onClick=${async () => setCopied((await copy(made.token)) ? "Copied" : "Copy failed: select the key and copy it")}>Copy key</button>
    <button type="button" onClick=${onDone}>Done</button>
    <span role="status">${copied}</span>
  </div>`;
}

function KeyForm({ initial, withName, submitLabel, onSubmit }) {
  const [form, setForm] = useState(initial);
  const set = (name, kind) => (e) => setForm({ ...form, [name]: kind === "check" ? e.target.checked : e.target.value });
  async function submit(e) {
    e.preventDefault();
    if ((await onSubmit(form)) === true) setForm(initial);
  }
  return html`<form class="key-form" onSubmit=${submit}>
    ${withName && html`<label>Name <input value=${form.name} onInput=${set("name")} required maxlength="100" /></label>`}
    <label>Requests per minute <input type="number" min="0" value=${form.rpm} onInput=${set("rpm")} placeholder="no limit" /></label>
    <label>Concurrent requests <input type="number" min="0" value=${form.concurrency} onInput=${set("concurrency")} placeholder="no limit" /></label>
    <label>Budget (USD) <input type="number" min="0" step="0.01" value=${form.budget_usd} onInput=${set("budget_usd")} placeholder="no limit" /></label>
    <label>Models (comma-separated) <input value=${form.models} onInput=${set("models")} placeholder="any" /></label>
    <label class="check"><input type="checkbox" checked=${form.agent} onChange=${set("agent", "check")} /> Agent mode</label>
    <label class="check"><input type="checkbox" checked=${form.admin} onChange=${set("admin", "check")} /> Admin (this console)</label>
    <button type="submit" class="primary">${submitLabel}</button>
  </form>`;
}

// The form's values as the API's limits; when changing a key, an emptied field
// means "no limit" (0), so that a limit can be taken off.
function limits(form, changing = false) {
  const number = (v) => (v === "" || v === null ? (changing ? 0 : null) : Number(v));
  const models = form.models.split(",").map((m) => m.trim()).filter(Boolean);
  return { rpm: number(form.rpm), concurrency: number(form.concurrency), budget_usd: number(form.budget_usd),
    models: models.length ? models : (changing ? [] : null), agent: form.agent, admin: form.admin };
}

function formOf(k) {
  return { name: k.name, rpm: k.rpm ?? "", concurrency: k.concurrency ?? "", budget_usd: k.budget_usd ?? "",
    models: (k.models || []).join(", "), agent: k.agent, admin: k.admin };
}

function describe(k) {
  const parts = [];
  if (k.rpm) parts.push(`${k.rpm}/min`);
  if (k.concurrency) parts.push(`${k.concurrency} at once`);
  if (k.budget_usd) parts.push(`budget ${money(k.budget_usd)}`);
  if (k.models) parts.push(`models: ${k.models.join(", ")}`);
  return parts.length ? parts.join(" · ") : "none";
}
