import asyncio

from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI
from openai.types.responses import ResponseTextDeltaEvent
from pydantic import BaseModel

set_tracing_disabled(True)  # traces would go to OpenAI's servers
client = AsyncOpenAI(base_url="http://127.0.0.1:8080/v1", api_key="unused")
model = OpenAIChatCompletionsModel(model="sonnet", openai_client=client)


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny, 24 °C in {city}"


class Person(BaseModel):
    name: str
    age: int


async def main() -> None:
    # A plain answer
    agent = Agent(name="Assistant", model=model)
    print((await Runner.run(agent, "Say hello")).final_output)

    # Streaming
    result = Runner.run_streamed(agent, "Count to 3")
    async for event in result.stream_events():
        if event.type == "raw_response_event" and isinstance(event.data,
                                                             ResponseTextDeltaEvent):
            print(event.data.delta, end="", flush=True)
    print()

    # A tool round trip: the agent calls the tool and answers with its result
    weather = Agent(name="Weather", model=model, tools=[get_weather])
    print((await Runner.run(weather, "What is the weather in Paris?")).final_output)

    # Structured output
    extractor = Agent(name="Extractor", model=model, output_type=Person)
    print((await Runner.run(extractor, "Ann is 31. Extract the person.")).final_output)


asyncio.run(main())
