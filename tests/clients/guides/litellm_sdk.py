import json

import litellm
from pydantic import BaseModel

# Either dialect: "openai/<model>" with the /v1 base, or "anthropic/<model>" without it
for model, api_base in [("openai/sonnet", "http://127.0.0.1:8080/v1"),
                        ("anthropic/sonnet", "http://127.0.0.1:8080")]:
    # A plain answer
    reply = litellm.completion(model=model, api_base=api_base, api_key="unused",
                               messages=[{"role": "user", "content": "Say hello"}])
    print(reply.choices[0].message.content)

    # Streaming
    for chunk in litellm.completion(model=model, api_base=api_base, api_key="unused",
                                    stream=True,
                                    messages=[{"role": "user", "content": "Count to 3"}]):
        print(chunk.choices[0].delta.content or "", end="", flush=True)
    print()

    # A tool round trip
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}]
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    reply = litellm.completion(model=model, api_base=api_base, api_key="unused",
                               messages=messages, tools=tools)
    call = reply.choices[0].message.tool_calls[0]
    city = json.loads(call.function.arguments)["city"]
    messages += [reply.choices[0].message,
                 {"role": "tool", "tool_call_id": call.id, "content": f"Sunny, 24 °C in {city}"}]
    reply = litellm.completion(model=model, api_base=api_base, api_key="unused",
                               messages=messages, tools=tools)
    print(reply.choices[0].message.content)

    # Structured output
    class Person(BaseModel):
        name: str
        age: int

    reply = litellm.completion(
        model=model, api_base=api_base, api_key="unused", response_format=Person,
        messages=[{"role": "user", "content": "Ann is 31. Extract the person."}])
    print(Person.model_validate_json(reply.choices[0].message.content))
