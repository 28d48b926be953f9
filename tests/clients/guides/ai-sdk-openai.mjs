import { createOpenAI } from "@ai-sdk/openai";

// The Responses API (/v1/responses): what @ai-sdk/openai speaks by default.
const claudeCode = createOpenAI({
  baseURL: process.env.CLAUDE_CODE_API_URL ?? "http://127.0.0.1:8080/v1",
  apiKey: process.env.CLAUDE_CODE_API_KEY ?? "unused",
});
const model = claudeCode("sonnet");
