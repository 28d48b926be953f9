import instructor
from openai import OpenAI
from pydantic import BaseModel

client = instructor.from_openai(OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="unused"))


class Person(BaseModel):
    name: str
    age: int


# Structured output: a validated Person
person = client.chat.completions.create(
    model="sonnet", response_model=Person,
    messages=[{"role": "user", "content": "Ann is 31. Extract the person."}])
print(person)

# Streaming: the object as it is filled in
for partial in client.chat.completions.create_partial(
        model="sonnet", response_model=Person,
        messages=[{"role": "user", "content": "Ann is 31. Extract the person."}]):
    print(partial)
