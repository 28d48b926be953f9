"""Wire model of a legacy OpenAI Completions request (``POST /v1/completions``).

Our own pydantic model, as for chat; unknown fields are accepted and logged.
``prompt`` takes every form the spec allows so that token arrays get a clear
refusal from the translator rather than a schema error.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..openai_chat.models import StreamOptions

# OpenAI's documented default: a request without max_tokens gets at most 16 tokens.
DEFAULT_MAX_TOKENS = 16
# LangChain's `OpenAI` LLM sends up to 20 prompts in one request (its batch_size).
MAX_PROMPTS = 20


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"model": "sonnet", "prompt": "Once upon a time", "max_tokens": 32},
        {"model": "sonnet", "prompt": "def add(a, b):\n    return ",
         "suffix": "\n\nprint(add(1, 2))\n", "max_tokens": 32, "stop": ["\n\n"]},
        {"model": "sonnet", "prompt": "Say hi", "stream": True}]})

    model: str = Field(min_length=1)
    prompt: str | list[str] | list[int] | list[list[int]] | None
    suffix: str | None = None
    max_tokens: int | None = Field(DEFAULT_MAX_TOKENS, ge=1)
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    echo: bool | None = False
    n: int | None = Field(None, ge=1, le=128)
    best_of: int | None = Field(None, ge=0, le=20)
    logprobs: int | None = Field(None, ge=0, le=5)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    seed: int | None = None
    user: str | None = None
    metadata: dict[str, Any] | None = None

    def stop_sequences(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
