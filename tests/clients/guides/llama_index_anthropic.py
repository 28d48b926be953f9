import asyncio

from llama_index.core.agent.workflow import FunctionAgent
from llama_index.llms.anthropic import Anthropic

llm = Anthropic(model="claude-sonnet-4-5", base_url="http://127.0.0.1:8080", api_key="unused")

# A plain answer
print(llm.complete("Say hello"))

# Streaming
for response in llm.stream_complete("Count to 3"):
    print(response.delta, end="", flush=True)
print()


# A tool round trip: the agent calls the tool and answers with its result
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny, 24 °C in {city}"


async def ask_agent() -> None:
    agent = FunctionAgent(tools=[get_weather], llm=llm)
    print(await agent.run("What is the weather in Paris?"))


asyncio.run(ask_agent())
