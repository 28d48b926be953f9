"""Pure translation of a legacy completion request into neutral turns, one per prompt.

Claude is a chat model: the system prompt tells it to act as a completion engine.
The prompt itself reaches Claude verbatim as the user message; with a ``suffix``
(fill-in-the-middle) the user message holds the prefix and the suffix, each in its
own tag, and Claude is told to answer with exactly the text of the gap. Its answer
is passed through as it comes: nothing is trimmed or unwrapped.

A completion is asked for without extended thinking: its ``max_tokens`` is small (16
by default) and every token should be text, soon. So ``temperature`` and ``top_p``
always reach the model (it takes them only without thinking).
"""

from __future__ import annotations

from collections.abc import Mapping

from ...agent import select
from ...catalog import Catalog
from ...errors import InvalidRequest, Unsupported
from ...events import TurnRequest
from ...schemas import openai_temperature
from .models import DEFAULT_MAX_TOKENS, MAX_PROMPTS, CompletionRequest

CONTINUE = (
    "You are a text completion engine, not a chat assistant. The user message is the "
    "beginning of a document: prose, code or data. Reply with only the text that "
    "continues it, starting exactly where it stops, as it would appear in the document. "
    "Do not repeat any of the given text. Add no greeting, explanation, commentary, "
    "quotation marks or code fences, unless the document itself needs them at that point."
)
FILL = (
    "You are a fill-in-the-middle engine, not a chat assistant. The user message is a "
    "document with a gap: the text before the gap is between <prefix> and </prefix>, the "
    "text after it between <suffix> and </suffix>. Reply with only the text that goes in "
    "the gap, so that the prefix, your reply and the suffix joined with nothing in between "
    "make the whole document. Do not repeat the prefix or the suffix, and never write the "
    "tags. Add no explanation, commentary, quotation marks or code fences, unless the "
    "document itself needs them in the gap. If nothing is missing, reply with nothing."
)


def fill_prompt(prefix: str, suffix: str) -> str:
    return f"<prefix>{prefix}</prefix><suffix>{suffix}</suffix>"


def prompts(request: CompletionRequest) -> tuple[str, ...]:
    """The request's prompts as text; token ids and empty prompts are refused."""
    prompt = request.prompt
    if prompt is None:
        raise InvalidRequest("a prompt is required", param="prompt")
    texts = [prompt] if isinstance(prompt, str) else prompt
    if not texts:
        raise InvalidRequest("prompt must hold at least one prompt", param="prompt")
    if not all(isinstance(text, str) for text in texts):
        raise Unsupported("token ids are not supported (the gateway has no tokenizer for "
                          "Claude): send the prompt as text", param="prompt")
    if len(texts) > MAX_PROMPTS:
        raise InvalidRequest(f"at most {MAX_PROMPTS} prompts in one request", param="prompt")
    if len(texts) > 1 and request.stream:
        raise Unsupported("a streamed completion takes one prompt: send one request per "
                          "prompt", param="prompt")
    for i, text in enumerate(texts):
        if not text and request.suffix is None:
            param = "prompt" if isinstance(prompt, str) else f"prompt[{i}]"
            raise InvalidRequest("the prompt is empty: there is nothing to complete",
                                 param=param)
    return tuple(text for text in texts if isinstance(text, str))


def to_turns(request: CompletionRequest, catalog: Catalog,
             headers: Mapping[str, str]) -> tuple[TurnRequest, ...]:
    """One turn per prompt; agent mode (which acts on files) is refused here."""
    _refuse_unsupported(request, headers)
    model = catalog.resolve(request.model)
    fill = request.suffix is not None
    return tuple(
        TurnRequest(model=model, system=FILL if fill else CONTINUE,
                    prompt=({"type": "text",
                             "text": fill_prompt(text, request.suffix or "") if fill else text},),
                    max_tokens=request.max_tokens or DEFAULT_MAX_TOKENS,
                    stop=request.stop_sequences(), thinking=False,
                    temperature=openai_temperature(request.temperature), top_p=request.top_p)
        for text in prompts(request))


def _refuse_unsupported(request: CompletionRequest, headers: Mapping[str, str]) -> None:
    if request.n is not None and request.n > 1:
        raise Unsupported("n > 1 is not supported: send one request per choice", param="n")
    if request.best_of is not None and request.best_of > 1:
        raise Unsupported("best_of > 1 is not supported (Claude does not expose the "
                          "log probabilities to rank candidates by)", param="best_of")
    if request.logprobs is not None:
        raise Unsupported("logprobs are not available from Claude", param="logprobs")
    if isinstance(request.stop, list) and len(request.stop) > 4:
        raise InvalidRequest("stop may hold at most 4 sequences", param="stop")
    _, agent = select(request.model, request.model_extra, headers, "")
    if agent is not None:
        raise Unsupported("agent mode is not available on /v1/completions: use "
                          "/v1/chat/completions, /v1/responses or /v1/messages", param="model")
