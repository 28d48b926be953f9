// The playground's three dialects: each builds its request from the conversation so
// far and reads its own stream of events into one shape:
// {text, reasoning, toolCalls: [{id, name, args}], stop, usage}.
//
// The conversation is kept dialect-neutral:
//   {role: "user", text, images: [{url, mediaType, data}]}
//   {role: "assistant", text, reasoning, toolCalls: [{id, name, args}]}
//   {role: "tool", id, name, output}

export const DIALECTS = {
  chat: { label: "Chat Completions", path: "/v1/chat/completions", build: chatBody, feed: chatFeed },
  responses: { label: "Responses", path: "/v1/responses", build: responsesBody, feed: responsesFeed },
  messages: { label: "Messages (Anthropic)", path: "/v1/messages", build: messagesBody, feed: messagesFeed },
};

export function emptyTurn() {
  return { text: "", reasoning: "", toolCalls: [], stop: null, usage: null };
}

// -- Chat Completions ----------------------------------------------------------------
function chatBody(o, history) {
  const messages = o.system ? [{ role: "system", content: o.system }] : [];
  for (const item of history) {
    if (item.role === "user") {
      messages.push({ role: "user", content: item.images.length ? [
        { type: "text", text: item.text },
        ...item.images.map((i) => ({ type: "image_url", image_url: { url: i.url } })),
      ] : item.text });
    } else if (item.role === "assistant") {
      const message = { role: "assistant", content: item.text || null };
      if (item.toolCalls.length) {
        message.tool_calls = item.toolCalls.map((c) => ({
          id: c.id, type: "function", function: { name: c.name, arguments: c.args } }));
      }
      messages.push(message);
    } else {
      messages.push({ role: "tool", tool_call_id: item.id, content: item.output });
    }
  }
  const body = { model: o.model, messages, stream: true, stream_options: { include_usage: true } };
  if (o.maxTokens) body.max_completion_tokens = o.maxTokens;
  if (o.effort) body.reasoning_effort = o.effort;
  if (o.schema) body.response_format = { type: "json_schema", json_schema: { name: "answer", schema: o.schema } };
  if (o.tools.length) body.tools = o.tools.map((t) => ({ type: "function", function: t }));
  return body;
}

function chatFeed(turn, { data }) {
  if (data === "[DONE]") return;
  const chunk = parse(data);
  if (chunk.usage) turn.usage = chunk.usage;
  const choice = (chunk.choices || [])[0];
  if (!choice) return;
  const delta = choice.delta || {};
  if (delta.content) turn.text += delta.content;
  if (delta.reasoning_content) turn.reasoning += delta.reasoning_content;
  for (const call of delta.tool_calls || []) {
    const known = turn.toolCalls[call.index] ||= { id: call.id, name: "", args: "" };
    if (call.function?.name) known.name = call.function.name;
    if (call.function?.arguments) known.args += call.function.arguments;
  }
  if (choice.finish_reason) turn.stop = choice.finish_reason;
}

// -- Responses -------------------------------------------------------------------------
function responsesBody(o, history) {
  const input = [];
  for (const item of history) {
    if (item.role === "user") {
      input.push({ role: "user", content: [
        { type: "input_text", text: item.text },
        ...item.images.map((i) => ({ type: "input_image", image_url: i.url })),
      ] });
    } else if (item.role === "assistant") {
      if (item.text) input.push({ role: "assistant", content: item.text });
      for (const c of item.toolCalls) {
        input.push({ type: "function_call", call_id: c.id, name: c.name, arguments: c.args });
      }
    } else {
      input.push({ type: "function_call_output", call_id: item.id, output: item.output });
    }
  }
  const body = { model: o.model, input, stream: true };
  if (o.system) body.instructions = o.system;
  if (o.maxTokens) body.max_output_tokens = o.maxTokens;
  // Ask for a summary of the reasoning, so that the playground can show it apart.
  body.reasoning = o.effort ? { effort: o.effort, summary: "auto" } : { summary: "auto" };
  if (o.schema) body.text = { format: { type: "json_schema", name: "answer", schema: o.schema } };
  if (o.tools.length) body.tools = o.tools.map((t) => ({ type: "function", ...t }));
  return body;
}

function responsesFeed(turn, { data }) {
  const event = parse(data);
  switch (event.type) {
    case "response.output_text.delta": turn.text += event.delta; break;
    case "response.reasoning_summary_text.delta":
    case "response.reasoning_text.delta": turn.reasoning += event.delta; break;
    case "response.output_item.added":
      if (event.item.type === "function_call") {
        turn.toolCalls.push({ id: event.item.call_id, name: event.item.name, args: "" });
      }
      break;
    case "response.function_call_arguments.delta":
      turn.toolCalls[turn.toolCalls.length - 1].args += event.delta; break;
    case "response.completed":
    case "response.incomplete":
      turn.stop = event.response.status; turn.usage = event.response.usage; break;
    case "response.failed":
      throw new Error(event.response.error?.message || "the response failed");
    case "error": throw new Error(event.message || event.error?.message || "error");
    default: break;
  }
}

// -- Messages (Anthropic) -----------------------------------------------------------------
function messagesBody(o, history) {
  const messages = [];
  for (const item of history) {
    if (item.role === "user") {
      messages.push({ role: "user", content: [
        ...item.images.map((i) => ({ type: "image", source: { type: "base64", media_type: i.mediaType, data: i.data } })),
        { type: "text", text: item.text },
      ] });
    } else if (item.role === "assistant") {
      const content = item.text ? [{ type: "text", text: item.text }] : [];
      for (const c of item.toolCalls) {
        content.push({ type: "tool_use", id: c.id, name: c.name, input: parse(c.args || "{}") });
      }
      messages.push({ role: "assistant", content });
    } else {
      const block = { type: "tool_result", tool_use_id: item.id, content: item.output };
      const last = messages[messages.length - 1];
      if (last.role === "user") last.content.push(block);
      else messages.push({ role: "user", content: [block] });
    }
  }
  const body = { model: o.model, max_tokens: o.maxTokens || 4096, messages, stream: true };
  if (o.system) body.system = o.system;
  const config = {};
  if (o.effort) config.effort = o.effort;
  if (o.schema) config.format = { type: "json_schema", schema: o.schema };
  if (Object.keys(config).length) body.output_config = config;
  if (o.tools.length) {
    body.tools = o.tools.map((t) => ({ name: t.name, description: t.description, input_schema: t.parameters || { type: "object" } }));
  }
  return body;
}

function messagesFeed(turn, { data }) {
  const event = parse(data);
  if (event.type === "content_block_start" && event.content_block.type === "tool_use") {
    turn.toolCalls.push({ id: event.content_block.id, name: event.content_block.name, args: "" });
  } else if (event.type === "content_block_delta") {
    const d = event.delta;
    if (d.type === "text_delta") turn.text += d.text;
    else if (d.type === "thinking_delta") turn.reasoning += d.thinking;
    else if (d.type === "input_json_delta") turn.toolCalls[turn.toolCalls.length - 1].args += d.partial_json;
  } else if (event.type === "message_delta") {
    turn.stop = event.delta.stop_reason;
    turn.usage = event.usage;
  } else if (event.type === "error") {
    throw new Error(event.error?.message || "error");
  }
}

function parse(text) {
  const value = JSON.parse(text);
  if (value && value.error && !value.type) throw new Error(value.error.message || "error");
  return value;
}

// -- the same request, to copy ----------------------------------------------------------------
export function curlSnippet(dialect, body) {
  const d = DIALECTS[dialect];
  const auth = dialect === "messages" ? "x-api-key: $CLAUDE_CODE_API_KEY" : "Authorization: Bearer $CLAUDE_CODE_API_KEY";
  return [`curl -N ${location.origin}${d.path} \\`, `  -H "${auth}" \\`,
    '  -H "Content-Type: application/json" \\', "  -d @- <<'JSON'",
    JSON.stringify(body, null, 2), "JSON"].join("\n");
}

export function pythonSnippet(dialect, body) {
  const json = JSON.stringify(body, null, 2);
  const base = `${location.origin}${dialect === "messages" ? "" : "/v1"}`;
  const client = dialect === "messages"
    ? ["from anthropic import Anthropic", "", `client = Anthropic(base_url="${base}", api_key=os.environ["CLAUDE_CODE_API_KEY"])`]
    : ["from openai import OpenAI", "", `client = OpenAI(base_url="${base}", api_key=os.environ["CLAUDE_CODE_API_KEY"])`];
  const call = { chat: "client.chat.completions.create", responses: "client.responses.create", messages: "client.messages.create" }[dialect];
  return ["import json", "import os", ...client, `body = json.loads(r'''${json}''')`,
    `for event in ${call}(**body):`, "    print(event)"].join("\n");
}
