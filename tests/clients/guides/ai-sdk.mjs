import { generateObject, generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const { text } = await generateText({ model, prompt: "Say hello" });
console.log(text);

const stream = streamText({ model, prompt: "Count to 5" });
for await (const delta of stream.textStream) process.stdout.write(delta);
console.log();

// Tools with `execute` run in your process; the SDK sends their results back to Claude.
const weather = await generateText({
  model,
  prompt: "What is the weather in Paris?",
  tools: {
    get_weather: tool({
      description: "Current weather in a city",
      inputSchema: z.object({ city: z.string() }),
      execute: async ({ city }) => `Sunny, 21°C in ${city}`,
    }),
  },
  stopWhen: stepCountIs(5),
});
console.log(weather.text);

const { object } = await generateObject({
  model,
  schema: z.object({ city: z.string(), country: z.string() }),
  prompt: "Which city is the Eiffel Tower in?",
});
console.log(object);
