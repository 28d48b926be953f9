// The playground: a conversation with Claude Code in any of the three dialects,
// streamed as it is written, with the exact exchange one click away.
import { html } from "./html.js";
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, copy, events, headers } from "./api.js";
import { DIALECTS, curlSnippet, emptyTurn, pythonSnippet } from "./dialects.js";

let pending = null; // a stored conversation to continue (set by the conversations page)

export function continueConversation(conversation) {
  pending = conversation;
  location.hash = "#/playground";
}

export function Playground({ models }) {
  const [options, setOptions] = useState({ model: models.includes("sonnet") ? "sonnet" : models[0] || "sonnet",
    dialect: "chat", system: "", maxTokens: "", effort: "", schema: "", tools: "" });
  const [history, setHistory] = useState([]);
  const [turn, setTurn] = useState(null); // the answer being streamed
  const [exchange, setExchange] = useState(null);
  const [error, setError] = useState("");
  const abort = useRef(null);

  useEffect(() => {
    if (pending) { setHistory(fromStored(pending)); pending = null; }
    return () => abort.current?.abort();
  }, []);

  // Send the conversation so far; the answer streams into `turn`, then joins it.
  async function run(conversation) {
    let parsed;
    try { parsed = settings(options); } catch (e) { setError(e.message); return; }
    setError("");
    setHistory(conversation);
    const dialect = DIALECTS[options.dialect];
    const record = { dialect: options.dialect, path: dialect.path, status: null, response: "",
      request: dialect.build(parsed, conversation) };
    setExchange({ ...record });
    abort.current = new AbortController();
    try {
      const answer = await stream(dialect, record, abort.current.signal, setTurn);
      setHistory([...conversation, { role: "assistant", ...answer }]);
    } catch (e) {
      if (e.name !== "AbortError") setError(e instanceof ApiError ? `${e.status}: ${e.message}` : e.message);
    } finally {
      setTurn(null);
      setExchange({ ...record });
    }
  }

  function restart() {
    abort.current?.abort();
    setHistory([]);
    setExchange(null);
    setError("");
  }

  const last = history[history.length - 1];
  const awaitingTools = !turn && last?.role === "assistant" && last.toolCalls.length > 0;
  return html`
    <section class="playground" aria-labelledby="playground-title">
      <h1 id="playground-title">Playground</h1>
      <div class="columns">
        <${Settings} options=${options} setOptions=${setOptions} models=${models} onRestart=${restart} />
        <div class="chat">
          <ol class="transcript" aria-label="Conversation" aria-live="polite">
            ${history.map((item, i) => html`<${Item} key=${i} item=${item} />`)}
            ${turn && html`<${Item} item=${{ role: "assistant", ...turn }} streaming />`}
          </ol>
          ${awaitingTools && html`<${ToolCards} calls=${last.toolCalls} onAnswer=${(results) => run([...history, ...results])} />`}
          ${error && html`<p class="error" role="alert">${error}</p>`}
          <${Composer} busy=${Boolean(turn)} blocked=${awaitingTools} onStop=${() => abort.current?.abort()}
            onSend=${(message) => run([...history, message])} />
          ${exchange && html`<${Exchange} exchange=${exchange} />`}
        </div>
      </div>
    </section>`;
}

// One streamed answer: `record` gets the status and the raw events as they come;
// `show` is called with the answer so far after each event.
async function stream(dialect, record, signal, show) {
  const current = emptyTurn();
  show({ ...current });
  const response = await fetch(record.path, { method: "POST", body: JSON.stringify(record.request),
    headers: headers({ "Content-Type": "application/json" }), signal });
  record.status = response.status;
  if (!response.ok) {
    record.response = await response.text();
    let data = record.response;
    try { data = JSON.parse(data); } catch { /* text */ }
    throw new ApiError(response.status, data);
  }
  for await (const event of events(response)) {
    record.response += event.raw + "\n\n";
    dialect.feed(current, event);
    show({ ...current, toolCalls: current.toolCalls.map((c) => ({ ...c })) });
  }
  return current;
}

function Settings({ options, setOptions, models, onRestart }) {
  const set = (name) => (e) => setOptions({ ...options, [name]: e.target.value });
  return html`<form class="panel settings" onSubmit=${(e) => e.preventDefault()}>
    <label>Model <select aria-label="Model" value=${options.model} onChange=${set("model")}>
      ${[...new Set([options.model, ...models])].map((m) => html`<option value=${m}>${m}</option>`)}
    </select></label>
    <label>Dialect <select aria-label="Dialect" value=${options.dialect} onChange=${set("dialect")}>
      ${Object.entries(DIALECTS).map(([id, d]) => html`<option value=${id}>${d.label}</option>`)}
    </select></label>
    <label>System prompt <textarea rows="3" value=${options.system} onInput=${set("system")}></textarea></label>
    <label>Max tokens <input type="number" min="1" value=${options.maxTokens} onInput=${set("maxTokens")} placeholder="default" /></label>
    <label>Reasoning effort <select aria-label="Reasoning effort" value=${options.effort} onChange=${set("effort")}>
      ${["", "low", "medium", "high"].map((v) => html`<option value=${v}>${v || "default"}</option>`)}
    </select></label>
    <label>Structured output (JSON schema) <textarea rows="3" value=${options.schema} onInput=${set("schema")} placeholder='{"type": "object", ...}'></textarea></label>
    <label>Tools (JSON list of {name, description, parameters}) <textarea rows="4" value=${options.tools} onInput=${set("tools")} placeholder='[{"name": "get_weather", "parameters": {...}}]'></textarea></label>
    <button type="button" onClick=${onRestart}>New conversation</button>
  </form>`;
}

function Composer({ busy, blocked, onSend, onStop }) {
  const [draft, setDraft] = useState("");
  const [images, setImages] = useState([]);

  function send(e) {
    e.preventDefault();
    if (!draft.trim() || busy || blocked) return;
    onSend({ role: "user", text: draft, images });
    setDraft("");
    setImages([]);
  }

  async function attach(e) {
    const files = [...e.target.files];
    e.target.value = "";
    setImages([...images, ...(await Promise.all(files.map(readImage)))]);
  }

  return html`<form class="composer" onSubmit=${send}>
    <label class="grow">Message <textarea rows="3" value=${draft} onInput=${(e) => setDraft(e.target.value)}
      onKeyDown=${(e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) send(e); }}
      placeholder="Ask Claude Code… (Ctrl+Enter sends)"></textarea></label>
    <div class="composer-actions">
      <label class="file">Attach images <input type="file" accept="image/png,image/jpeg,image/gif,image/webp" multiple onChange=${attach} /></label>
      ${busy ? html`<button type="button" onClick=${onStop}>Stop</button>`
        : html`<button type="submit" class="primary" disabled=${blocked}>Send</button>`}
    </div>
    ${images.length > 0 && html`<ul class="thumbs" aria-label="Attached images">${images.map((img, i) => html`
      <li><img src=${img.url} alt=${`attachment ${i + 1}`} />
      <button type="button" onClick=${() => setImages(images.filter((_, j) => j !== i))}>Remove</button></li>`)}</ul>`}
  </form>`;
}

function settings(o) {
  const out = { model: o.model, system: o.system.trim(), maxTokens: Number(o.maxTokens) || 0,
    effort: o.effort, schema: null, tools: [] };
  if (o.schema.trim()) {
    try { out.schema = JSON.parse(o.schema); } catch { throw new Error("The structured output schema is not valid JSON."); }
  }
  if (o.tools.trim()) {
    try { out.tools = JSON.parse(o.tools); } catch { throw new Error("The tools are not valid JSON."); }
    if (!Array.isArray(out.tools) || out.tools.some((t) => !t || typeof t.name !== "string")) {
      throw new Error("Tools are a JSON list of objects, each with a name.");
    }
  }
  return out;
}

function Item({ item, streaming }) {
  if (item.role === "tool") {
    return html`<li class="msg tool"><span class="who">Tool result · ${item.name}</span><pre>${item.output}</pre></li>`;
  }
  if (item.role === "user") {
    return html`<li class="msg user"><span class="who">You</span><div class="text">${item.text}</div>
      ${item.images.map((img, i) => html`<img class="thumb" src=${img.url} alt=${`image ${i + 1}`} />`)}</li>`;
  }
  return html`<li class=${`msg assistant${streaming ? " streaming" : ""}`} aria-busy=${streaming ? "true" : "false"}>
    <span class="who">Claude${streaming ? " (writing…)" : ""}</span>
    ${item.reasoning && html`<details class="reasoning" open=${streaming}><summary>Reasoning</summary><pre>${item.reasoning}</pre></details>`}
    <div class="text answer">${item.text}</div>
    ${item.toolCalls.map((c) => html`<div class="card tool-call"><strong>Tool call · ${c.name}</strong><pre>${pretty(c.args)}</pre></div>`)}
    ${item.usage && html`<span class="meta">${usageLine(item.usage)}</span>`}
  </li>`;
}

function ToolCards({ calls, onAnswer }) {
  const [outputs, setOutputs] = useState(calls.map(() => ""));
  function submit(e) {
    e.preventDefault();
    onAnswer(calls.map((c, i) => ({ role: "tool", id: c.id, name: c.name, output: outputs[i] })));
  }
  return html`<form class="panel tool-answers" onSubmit=${submit} aria-label="Answer the tool calls">
    <p>Claude Code called ${calls.length === 1 ? "a tool" : `${calls.length} tools`}; answer as your application would.</p>
    ${calls.map((c, i) => html`<div class="card">
      <strong>${c.name}</strong><pre>${pretty(c.args)}</pre>
      <label>Result of ${c.name} <textarea rows="2" value=${outputs[i]}
        onInput=${(e) => setOutputs(outputs.map((o, j) => (j === i ? e.target.value : o)))}></textarea></label>
    </div>`)}
    <button type="submit" class="primary">Send tool results</button>
  </form>`;
}

function Exchange({ exchange }) {
  const [tab, setTab] = useState("request");
  const [copied, setCopied] = useState("");
  const texts = {
    request: `POST ${exchange.path}\n\n${JSON.stringify(exchange.request, null, 2)}`,
    response: `${exchange.status ? `HTTP ${exchange.status}` : "(waiting)"}\n\n${exchange.response}`,
    curl: curlSnippet(exchange.dialect, exchange.request),
    python: pythonSnippet(exchange.dialect, exchange.request),
  };
  return html`<details class="panel exchange"><summary>Request and response</summary>
    <div role="tablist" aria-label="Exchange">
      ${["request", "response", "curl", "python"].map((t) => html`<button type="button" role="tab"
        aria-selected=${tab === t} onClick=${() => setTab(t)}>${t === "curl" ? "curl" : t[0].toUpperCase() + t.slice(1)}</button>`)}
      <button type="button" onClick=${async () => setCopied((await copy(texts[tab])) ? "Copied" : "Copy failed")}>Copy</button>
      <span role="status">${copied}</span>
    </div>
    <pre class="code" role="tabpanel" aria-label=${tab}>${texts[tab]}</pre>
  </details>`;
}

function pretty(args) {
  try { return JSON.stringify(JSON.parse(args || "{}"), null, 2); } catch { return args; }
}

function usageLine(usage) {
  const input = usage.prompt_tokens ?? usage.input_tokens ?? 0;
  const output = usage.completion_tokens ?? usage.output_tokens ?? 0;
  return `${input} tokens in · ${output} out`;
}

function readImage(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve({ url: reader.result, mediaType: file.type, data: reader.result.split(",", 2)[1] });
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

// A stored conversation (Anthropic block shape) as the playground's history.
function fromStored(conversation) {
  const out = [];
  for (const m of conversation.messages) {
    const blocks = m.content;
    if (m.role === "assistant") {
      out.push({ role: "assistant", reasoning: "", text: textOf(blocks),
        toolCalls: blocks.filter((b) => b.type === "tool_use").map((b) => ({ id: b.id, name: b.name, args: JSON.stringify(b.input) })) });
      continue;
    }
    for (const b of blocks.filter((x) => x.type === "tool_result")) {
      out.push({ role: "tool", id: b.tool_use_id, name: "", output: typeof b.content === "string" ? b.content : textOf(b.content || []) });
    }
    const text = textOf(blocks);
    if (text) out.push({ role: "user", text, images: [] });
  }
  return out;
}

function textOf(blocks) {
  return blocks.filter((b) => b.type === "text").map((b) => b.text).join("\n");
}
