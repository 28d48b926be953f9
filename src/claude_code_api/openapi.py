"""What ``/openapi.json`` says about errors: each route lists the statuses it can
answer, with its dialect's error envelope as the body.

Routes pass ``responses=openai_errors(...)`` or ``anthropic_errors(...)``; the
statuses come from the ``GatewayError`` tree (errors.py) as each dialect renders
it (dialects/errors.py: Anthropic says 529 for overload and 402 for a spent
budget). ``install`` removes the 422 FastAPI documents for every route with
parameters: our handler answers a validation error with 400 in the dialect's shape.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, Field


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(examples=["invalid_request_error"])
    param: str | None = Field(description="the request field at fault, e.g. "
                                          "messages[0].content")
    code: str | None = Field(examples=["model_not_found"])


class OpenAIError(BaseModel):
    """OpenAI's error envelope (Chat Completions, Responses and every other route)."""

    error: OpenAIErrorDetail


class AnthropicErrorDetail(BaseModel):
    type: str = Field(examples=["invalid_request_error", "overloaded_error"])
    message: str


class AnthropicError(BaseModel):
    """Anthropic's error envelope (``/v1/messages`` and ``/v1/messages/count_tokens``)."""

    type: Literal["error"]
    error: AnthropicErrorDetail


_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying",
                                "schema": {"type": "integer"}}}

_OPENAI = {
    400: "Malformed JSON, a body that breaks the schema (`param` names the field), an "
         "invalid value, or a parameter we refuse (`unsupported_parameter`).",
    401: "No API key where one is required (`missing_api_key`), or a wrong or revoked key "
         "(`invalid_api_key`).",
    403: "The API key may not use this model, or agent mode (`permission_denied`).",
    404: "No such model (`model_not_found`) or object (`not_found`), or not the caller's.",
    409: "The object's state forbids this, or the conversation id belongs to another "
         "caller (`conflict`).",
    413: "The request body is larger than `server.max_body_bytes` (`request_too_large`), "
         "or an upload larger than `batch.max_file_bytes` (`file_too_large`).",
    429: "The key's requests per minute or at once are used up (`rate_limit_exceeded`), its "
         "budget is spent (`insufficient_quota`), every worker is busy and the queue full "
         "(`gateway_busy`), or the Anthropic API rate-limited the request.",
    500: "Claude Code ended the turn without a result, or the gateway failed.",
    502: "Claude Code could not authenticate (`upstream_auth_failed`), its process died "
         "(`worker_crashed`), or it could not give the answer asked for (`upstream_error`).",
    503: "The Anthropic API is overloaded or failing (`upstream_overloaded`).",
    504: "Claude Code was silent for `claude.timeout_seconds` (`worker_timeout`).",
}

_ANTHROPIC = {
    400: "Malformed JSON, a body that breaks the schema, an invalid value, or a feature we "
         "refuse (`invalid_request_error`).",
    401: "No API key where one is required, or a wrong or revoked key "
         "(`authentication_error`).",
    402: "The API key's budget is spent (`billing_error`).",
    403: "The API key may not use this model, or agent mode (`permission_error`).",
    404: "No such model (`not_found_error`).",
    409: "The conversation id belongs to another caller (`invalid_request_error`).",
    413: "The request body is larger than `server.max_body_bytes` (`request_too_large`).",
    429: "The key's requests per minute or at once are used up, every worker is busy and "
         "the queue full, or the Anthropic API rate-limited the request "
         "(`rate_limit_error`).",
    500: "Claude Code ended the turn without a result, or the gateway failed (`api_error`).",
    502: "Claude Code could not authenticate, its process died, or it could not give the "
         "answer asked for (`api_error`).",
    504: "Claude Code was silent for `claude.timeout_seconds` (`timeout_error`).",
    529: "The Anthropic API is overloaded or failing (`overloaded_error`).",
}

_WITH_RETRY_AFTER = frozenset({429, 503, 529})

# A model turn answers JSON, or Server-Sent Events when the body says `"stream": true`;
# ``itemSchema`` (OpenAPI 3.2, as FastAPI writes it) describes one event.
_SSE_EVENT = {"type": "object", "required": ["data"], "properties": {
    "event": {"type": "string", "description": "the event's name (Responses, Anthropic)"},
    "data": {"type": "string", "description": "a JSON document; `[DONE]` ends a Chat "
                                              "Completions stream"}}}
STREAMED: dict[int | str, dict[str, Any]] = {200: {
    "description": "The answer; with `\"stream\": true`, Server-Sent Events",
    "content": {"application/json": {}, "text/event-stream": {"itemSchema": _SSE_EVENT}}}}

# The statuses a model turn can end with, before its first byte (later errors travel
# inside the stream): the access checks, the request, the model, the conversation id,
# the pool and queue, and whatever Claude Code or the API behind it said.
OPENAI_TURN = (400, 401, 403, 404, 409, 413, 429, 500, 502, 503, 504)
ANTHROPIC_TURN = (400, 401, 402, 403, 404, 409, 413, 429, 500, 502, 504, 529)
# Every POST body but an upload's is read by the access layer first: larger than
# server.max_body_bytes is 413, text that cannot be encoded is 400 (see body.py).
BODY = (400, 413)


def openai_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route in OpenAI's dialect."""
    return _errors(OpenAIError, _OPENAI, statuses)


def anthropic_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route in Anthropic's dialect."""
    return _errors(AnthropicError, _ANTHROPIC, statuses)


def _errors(model: type[BaseModel], when: dict[int, str], statuses: tuple[int, ...]
            ) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted(set(statuses)):
        entry: dict[str, Any] = {"model": model, "description": when[status]}
        if status in _WITH_RETRY_AFTER:
            entry["headers"] = _RETRY_AFTER
        out[status] = entry
    return out


def install(app: FastAPI) -> None:
    """Serve the app's OpenAPI description without FastAPI's 422s (see above)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _drop_validation_422(build())
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def _drop_validation_422(schema: dict[str, Any]) -> None:
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
