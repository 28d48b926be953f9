import json

from openai import OpenAI
from pydantic import BaseModel

client = OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="unused")

# A plain answer
reply = client.chat.completions.create(
    model="sonnet", messages=[{"role": "user", "content": "Say hello"}])
print(reply.choices[0].message.content)

# Streaming
stream = client.chat.completions.create(
    model="sonnet", stream=True, messages=[{"role": "user", "content": "Count to 3"}])
for chunk in stream:
    print(chunk.choices[0].delta.content or "", end="", flush=True)
print()

# A tool round trip: Claude calls your function, you send its result back
tools = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]
messages = [{"role": "user", "content": "What is the weather in Paris?"}]
reply = client.chat.completions.create(model="sonnet", messages=messages, tools=tools)
call = reply.choices[0].message.tool_calls[0]
city = json.loads(call.function.arguments)["city"]
messages += [reply.choices[0].message,
             {"role": "tool", "tool_call_id": call.id, "content": f"Sunny, 24 °C in {city}"}]
reply = client.chat.completions.create(model="sonnet", messages=messages, tools=tools)
print(reply.choices[0].message.content)


# Structured output
class Person(BaseModel):
    name: str
    age: int


parsed = client.chat.completions.parse(
    model="sonnet", response_format=Person,
    messages=[{"role": "user", "content": "Ann is 31. Extract the person."}])
print(parsed.choices[0].message.parsed)

# Legacy completions, with a suffix: fill in the middle
completion = client.completions.create(
    model="haiku", prompt="def add(a, b):\n", suffix="\n\nprint(add(1, 2))\n", max_tokens=64)
print(completion.choices[0].text)
