import { createAnthropic } from "@ai-sdk/anthropic";

// Anthropic Messages (/v1/messages).
const claudeCode = createAnthropic({
  baseURL: process.env.CLAUDE_CODE_API_URL ?? "http://127.0.0.1:8080/v1",
  apiKey: process.env.CLAUDE_CODE_API_KEY ?? "unused",
});
const model = claudeCode("claude-sonnet-4-5");
