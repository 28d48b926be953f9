// Usage: the ledger per key, model and day — requests, tokens, cost — as charts and a
// table, and the same rows as CSV.
import { useEffect, useRef, useState } from "preact/hooks";
import { html } from "./html.js";
import { ApiError, api, headers, money } from "./api.js";

const COLORS = ["#2f6fdf", "#d9822b", "#2e9d5b", "#b53f8f", "#7a5cd6", "#c0392b", "#16a2b8", "#8a6d3b"];

export function Usage() {
  const [filters, setFilters] = useState({ key: "", model: "", since: "", until: "" });
  const [rows, setRows] = useState(null);
  const [all, setAll] = useState([]); // unfiltered, for the filters' choices
  const [error, setError] = useState("");

  const query = () => new URLSearchParams(Object.entries(filters).filter(([, v]) => v)).toString();

  useEffect(() => { api("/ui/api/usage").then((d) => setAll(d.data)).catch(() => {}); }, []);
  useEffect(() => {
    api(`/ui/api/usage?${query()}`).then((d) => { setRows(d.data); setError(""); }).catch((e) => setError(e.message));
  }, [filters]);

  async function exportCsv() {
    try {
      const response = await fetch(`/ui/api/usage.csv?${query()}`, { headers: headers(), cache: "no-store" });
      if (!response.ok) throw new ApiError(response.status, await response.json());
      const link = document.createElement("a");
      link.href = URL.createObjectURL(await response.blob());
      link.download = "claude-code-api-usage.csv";
      link.click();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    } catch (e) { setError(e.message); }
  }

  const set = (name) => (e) => setFilters({ ...filters, [name]: e.target.value });
  const keys = unique(all.map((r) => `${r.key_id}\t${r.key_name}`)).map((k) => k.split("\t"));
  const totals = (rows || []).reduce((t, r) => ({ requests: t.requests + r.requests,
    tokens: t.tokens + r.input_tokens + r.output_tokens, cost: t.cost + r.cost_usd }), { requests: 0, tokens: 0, cost: 0 });
  return html`<section aria-labelledby="usage-title">
    <h1 id="usage-title">Usage</h1>
    <form class="filters" onSubmit=${(e) => e.preventDefault()}>
      <label>Key <select aria-label="Key" value=${filters.key} onChange=${set("key")}><option value="">all keys</option>
        ${keys.map(([id, name]) => html`<option value=${id}>${name}</option>`)}</select></label>
      <label>Model <select aria-label="Model" value=${filters.model} onChange=${set("model")}><option value="">all models</option>
        ${unique(all.map((r) => r.model)).map((m) => html`<option value=${m}>${m}</option>`)}</select></label>
      <label>From <input type="date" value=${filters.since} onChange=${set("since")} /></label>
      <label>To <input type="date" value=${filters.until} onChange=${set("until")} /></label>
      <button type="button" onClick=${exportCsv}>Export CSV</button>
    </form>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${rows && html`
      <dl class="totals">
        <div><dt>Requests</dt><dd>${totals.requests}</dd></div>
        <div><dt>Tokens</dt><dd>${totals.tokens}</dd></div>
        <div><dt>Cost</dt><dd>${money(totals.cost)}</dd></div>
      </dl>
      <div class="charts">
        <${Chart} title="Cost per day (USD), by key" rows=${rows} group="key_name" value=${(r) => r.cost_usd} />
        <${Chart} title="Tokens per day, by model" rows=${rows} group="model" value=${(r) => r.input_tokens + r.output_tokens} />
        <${Chart} title="Requests per day, by key" rows=${rows} group="key_name" value=${(r) => r.requests} />
      </div>
      <div class="table-wrap"><table class="usage">
        <caption>Ledger rows (UTC days)</caption>
        <thead><tr><th scope="col">Day</th><th scope="col">Key</th><th scope="col">Model</th><th scope="col">Requests</th>
          <th scope="col">Input tokens</th><th scope="col">Output tokens</th><th scope="col">Cost</th></tr></thead>
        <tbody>${rows.map((r) => html`<tr><td>${r.day}</td><td>${r.key_name}</td><td>${r.model}</td><td>${r.requests}</td>
          <td>${r.input_tokens}</td><td>${r.output_tokens}</td><td>${money(r.cost_usd)}</td></tr>`)}</tbody>
      </table></div>
      ${rows.length === 0 && html`<p>No usage recorded${query() ? " for these filters" : " yet"}.</p>`}`}
  </section>`;
}

// A stacked bar chart: one bar per day, one colour per group.
function Chart({ title, rows, group, value }) {
  const canvas = useRef(null);
  useEffect(() => {
    if (!window.Chart) return undefined;
    const days = unique(rows.map((r) => r.day)).sort();
    const groups = unique(rows.map((r) => r[group]));
    const chart = new window.Chart(canvas.current, {
      type: "bar",
      data: { labels: days, datasets: groups.map((g, i) => ({ label: g, backgroundColor: COLORS[i % COLORS.length],
        data: days.map((d) => rows.filter((r) => r.day === d && r[group] === g).reduce((s, r) => s + value(r), 0)) })) },
      options: { animation: false, responsive: true, maintainAspectRatio: false,
        scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } },
    });
    return () => chart.destroy();
  }, [rows]);
  return html`<figure class="chart panel"><figcaption>${title}</figcaption>
    <div class="chart-box"><canvas ref=${canvas} role="img" aria-label=${title}></canvas></div></figure>`;
}

function unique(values) {
  return [...new Set(values)];
}
