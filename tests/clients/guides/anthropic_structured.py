from anthropic import Anthropic
from pydantic import BaseModel

client = Anthropic(base_url="http://127.0.0.1:8080", api_key="unused")


class Person(BaseModel):
    name: str
    age: int


parsed = client.messages.parse(
    model="sonnet", max_tokens=1024, output_format=Person,
    messages=[{"role": "user", "content": "Ann is 31. Extract the person."}])
print(parsed.parsed_output)
