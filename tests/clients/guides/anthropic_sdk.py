from anthropic import Anthropic

client = Anthropic(base_url="http://127.0.0.1:8080", api_key="unused")

# A plain answer
message = client.messages.create(
    model="sonnet", max_tokens=1024, messages=[{"role": "user", "content": "Say hello"}])
print(message.content[0].text)

# Streaming
with client.messages.stream(model="sonnet", max_tokens=1024,
                            messages=[{"role": "user", "content": "Count to 3"}]) as stream:
    for text in stream.text_stream:
        print(text, end="", flush=True)
print()

# A tool round trip: Claude calls your tool, you send its result back
tools = [{"name": "get_weather", "description": "The weather in a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]}}]
messages = [{"role": "user", "content": "What is the weather in Paris?"}]
message = client.messages.create(model="sonnet", max_tokens=1024, tools=tools,
                                 messages=messages)
call = next(block for block in message.content if block.type == "tool_use")
messages += [{"role": "assistant", "content": message.content},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                           "content": f"Sunny, 24 °C in {call.input['city']}"}]}]
message = client.messages.create(model="sonnet", max_tokens=1024, tools=tools,
                                 messages=messages)
print(message.content[0].text)
