import { createOpenAICompatible } from "@ai-sdk/openai-compatible";

// Chat Completions (/v1/chat/completions).
const claudeCode = createOpenAICompatible({
  name: "claude-code",
  baseURL: process.env.CLAUDE_CODE_API_URL ?? "http://127.0.0.1:8080/v1",
  apiKey: process.env.CLAUDE_CODE_API_KEY ?? "unused",
  supportsStructuredOutputs: true, // generateObject sends its schema (json_schema)
});
const model = claudeCode("sonnet");
