// Live: the pool, its queue, recent requests and batches, from the server's event
// stream (read with fetch, so that the key stays in a header); reconnects on its own.
import { useEffect, useState } from "preact/hooks";
import { html } from "./html.js";
import { events, headers } from "./api.js";

export function Live() {
  const [snap, setSnap] = useState(null);
  const [status, setStatus] = useState("connecting");

  useEffect(() => {
    const stop = new AbortController();
    (async () => {
      while (!stop.signal.aborted) {
        try {
          const response = await fetch("/ui/api/live", { headers: headers(), signal: stop.signal, cache: "no-store" });
          if (!response.ok) throw new Error(`HTTP ${response.status}`);
          setStatus("live");
          for await (const event of events(response)) setSnap(JSON.parse(event.data));
        } catch (e) {
          if (stop.signal.aborted) return;
          setStatus(`disconnected (${e.message}); retrying`);
        }
        await new Promise((r) => setTimeout(r, 1000));
      }
    })();
    return () => stop.abort();
  }, []);

  return html`<section aria-labelledby="live-title">
    <h1 id="live-title">Live <span class="badge" role="status">${status}</span></h1>
    ${snap ? html`<${Snapshot} snap=${snap} />` : html`<p class="loading">Waiting for the first snapshot…</p>`}
  </section>`;
}

function Snapshot({ snap }) {
  const p = snap.pool;
  return html`
    <dl class="totals">
      <div><dt>Workers</dt><dd>${p.size} of ${p.max}</dd></div>
      <div><dt>Busy</dt><dd>${p.busy}</dd></div>
      <div><dt>Idle</dt><dd>${p.idle}</dd></div>
      <div><dt>Queued</dt><dd>${p.queued}</dd></div>
      <div><dt>Restarts</dt><dd>${p.restarts}</dd></div>
    </dl>
    <div class="table-wrap"><table class="workers">
      <caption>Workers</caption>
      <thead><tr><th scope="col">Worker</th><th scope="col">State</th><th scope="col">Model</th><th scope="col">Conversation</th>
        <th scope="col">Turns</th><th scope="col">Memory</th><th scope="col">PID</th></tr></thead>
      <tbody>${snap.workers.map((w) => html`<tr>
        <th scope="row">#${w.id}</th><td><span class=${`state ${w.state}`}>${w.state}</span></td><td>${w.model || "—"}</td>
        <td>${w.conversation ? html`<code title="the conversation its session holds, warm for its next turn">${w.conversation}</code>` : "—"}</td>
        <td>${w.turns}</td><td>${w.rss_bytes ? `${Math.round(w.rss_bytes / 2 ** 20)} MiB` : "—"}</td><td>${w.pid ?? "—"}</td></tr>`)}</tbody>
    </table></div>
    <div class="table-wrap"><table class="requests">
      <caption>Recent requests</caption>
      <thead><tr><th scope="col">Time</th><th scope="col">Request</th><th scope="col">Key</th><th scope="col">Status</th><th scope="col">Latency</th></tr></thead>
      <tbody>${snap.requests.map((r) => html`<tr>
        <td>${new Date(r.at * 1000).toLocaleTimeString()}</td><td><code>${r.method} ${r.path}</code></td><td>${r.key}</td>
        <td class=${r.status >= 400 ? "bad" : "good"}>${r.status}</td><td>${r.ms} ms</td></tr>`)}</tbody>
    </table></div>
    ${snap.requests.length === 0 && html`<p>No API request yet.</p>`}
    <div class="table-wrap"><table class="batches">
      <caption>Batches</caption>
      <thead><tr><th scope="col">Batch</th><th scope="col">Key</th><th scope="col">Status</th><th scope="col">Progress</th></tr></thead>
      <tbody>${snap.batches.map((b) => html`<tr><td><code>${b.id}</code></td><td>${b.key}</td><td>${b.status}</td>
        <td><progress max=${b.counts.total || 1} value=${b.counts.completed + b.counts.failed}></progress>
          ${b.counts.completed + b.counts.failed} of ${b.counts.total}${b.counts.failed ? ` (${b.counts.failed} failed)` : ""}</td></tr>`)}</tbody>
    </table></div>
    ${snap.batches.length === 0 && html`<p>No batch.</p>`}`;
}
