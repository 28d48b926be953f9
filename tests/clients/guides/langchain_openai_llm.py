from langchain_openai import OpenAI

# LangChain's legacy text LLM class calls /v1/completions
llm = OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="unused", model="haiku")
print(llm.invoke("Say hello"))
for text in llm.stream("Count to 3"):
    print(text, end="", flush=True)
print()
