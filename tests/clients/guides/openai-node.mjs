import OpenAI from "openai";

const client = new OpenAI({
  baseURL: process.env.CLAUDE_CODE_API_URL ?? "http://127.0.0.1:8080/v1",
  apiKey: process.env.CLAUDE_CODE_API_KEY ?? "unused",
});

// A plain answer.
const reply = await client.chat.completions.create({
  model: "sonnet",
  messages: [{ role: "user", content: "Say hello" }],
});
console.log(reply.choices[0].message.content);

// Streaming.
const stream = await client.chat.completions.create({
  model: "sonnet",
  stream: true,
  messages: [{ role: "user", content: "Count to 5" }],
});
for await (const chunk of stream) {
  process.stdout.write(chunk.choices[0]?.delta?.content ?? "");
}
console.log();

// A tool round trip: Claude asks for the tool, you run it and send the result back.
const tools = [{
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
}];
const messages = [{ role: "user", content: "What is the weather in Paris?" }];
const first = await client.chat.completions.create({ model: "sonnet", messages, tools });
const call = first.choices[0].message.tool_calls[0];
const { city } = JSON.parse(call.function.arguments);
messages.push(first.choices[0].message,
              { role: "tool", tool_call_id: call.id, content: `Sunny, 21°C in ${city}` });
const answer = await client.chat.completions.create({ model: "sonnet", messages, tools });
console.log(answer.choices[0].message.content);

// Structured output: the answer is JSON that matches your schema.
const structured = await client.chat.completions.create({
  model: "sonnet",
  messages: [{ role: "user", content: "Which city is the Eiffel Tower in?" }],
  response_format: {
    type: "json_schema",
    json_schema: {
      name: "place",
      strict: true,
      schema: {
        type: "object",
        properties: { city: { type: "string" }, country: { type: "string" } },
        required: ["city", "country"],
        additionalProperties: false,
      },
    },
  },
});
console.log(JSON.parse(structured.choices[0].message.content));

// The Responses API.
const response = await client.responses.create({
  model: "sonnet",
  instructions: "Answer in one sentence.",
  input: "What is Claude Code?",
});
console.log(response.output_text);
