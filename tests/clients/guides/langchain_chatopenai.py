from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

llm = ChatOpenAI(base_url="http://127.0.0.1:8080/v1", api_key="unused", model="sonnet")

# A plain answer
print(llm.invoke("Say hello").content)

# Streaming
for chunk in llm.stream("Count to 3"):
    print(chunk.content, end="", flush=True)
print()


# A tool round trip
@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny, 24 °C in {city}"


with_tools = llm.bind_tools([get_weather])
messages = [HumanMessage("What is the weather in Paris?")]
reply = with_tools.invoke(messages)
messages.append(reply)
for call in reply.tool_calls:
    messages.append(ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"]))
print(with_tools.invoke(messages).content)


# Structured output
class Person(BaseModel):
    name: str
    age: int


print(llm.with_structured_output(Person).invoke("Ann is 31. Extract the person."))
