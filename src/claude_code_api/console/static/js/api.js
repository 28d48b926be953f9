// Talking to the gateway: the admin key lives in this tab's sessionStorage and goes
// out as a header (never a cookie, never in a URL).
const STORAGE = "claude-code-api.admin-key";

export const auth = {
  get key() { return sessionStorage.getItem(STORAGE) || ""; },
  set(key) { sessionStorage.setItem(STORAGE, key); },
  clear() { sessionStorage.removeItem(STORAGE); },
};

export function headers(extra = {}) {
  const out = { ...extra };
  if (auth.key) out.Authorization = `Bearer ${auth.key}`;
  return out;
}

export class ApiError extends Error {
  constructor(status, body) {
    super(errorMessage(body) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

// The message of an error body in any dialect's shape (OpenAI's or Anthropic's).
export function errorMessage(body) {
  if (body && typeof body === "object" && body.error) {
    return typeof body.error === "string" ? body.error : body.error.message;
  }
  return typeof body === "string" ? body.slice(0, 300) : "";
}

export async function api(path, { method = "GET", body } = {}) {
  const init = { method, cache: "no-store", headers: headers() };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = text;
  try { data = JSON.parse(text); } catch { /* not JSON: keep the text */ }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// Server-sent events from a fetch response: yields {event, data, raw} per event.
export async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const raw = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of raw.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: data.join("\n"), raw };
    }
  }
}

export function money(value) {
  return `$${Number(value || 0).toFixed(4)}`;
}

export function when(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : "—";
}

// Copy text, reporting whether the browser allowed it.
export async function copy(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}
