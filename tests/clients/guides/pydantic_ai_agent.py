from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

model = OpenAIChatModel(
    "sonnet", provider=OpenAIProvider(base_url="http://127.0.0.1:8080/v1", api_key="unused"))

# A plain answer
agent = Agent(model)
print(agent.run_sync("Say hello").output)

# Streaming
with agent.run_stream_sync("Count to 3") as result:
    for text in result.stream_text(delta=True):
        print(text, end="", flush=True)
print()

# A tool round trip
weather = Agent(model)


@weather.tool_plain
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny, 24 °C in {city}"


print(weather.run_sync("What is the weather in Paris?").output)


# Structured output
class Person(BaseModel):
    name: str
    age: int


print(Agent(model, output_type=Person).run_sync("Ann is 31. Extract the person.").output)
