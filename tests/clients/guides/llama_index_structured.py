from llama_index.core.prompts import PromptTemplate
from llama_index.llms.anthropic import Anthropic
from pydantic import BaseModel

llm = Anthropic(model="claude-sonnet-4-5", base_url="http://127.0.0.1:8080", api_key="unused")


class Person(BaseModel):
    name: str
    age: int


print(llm.structured_predict(Person, PromptTemplate("{text} Extract the person."),
                             text="Ann is 31."))
