"""Errors on the wire in the dialect of the route: Anthropic's for /v1/messages*,
OpenAI's everywhere else (the Responses API shares OpenAI's envelope); and the
message and ``param`` for a body that fails validation (a route's, or a batch item's)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from ..errors import GatewayError
from .anthropic_messages import render as anthropic_wire
from .anthropic_messages.models import BLOCK_TAGS
from .openai_chat import render as openai_wire
from .openai_chat.models import ROLE_TAGS


def is_anthropic(path: str) -> bool:
    return path.startswith("/v1/messages")


def error_response(path: str, status: int, message: str, type_: str = "api_error",
                   param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    if is_anthropic(path):
        # Anthropic says 529 for overload and 402 for an exhausted budget.
        status = 402 if type_ == "insufficient_quota" else anthropic_wire.error_status(status)
        if param and param not in message:
            # Its envelope has no param: the field leads the message, as in Anthropic's.
            message = f"{param}: {message}"
        return JSONResponse(anthropic_wire.error_body(status, message), status, headers=headers)
    return JSONResponse(openai_wire.error_body(message, type_, param, code), status,
                        headers=headers)


def gateway_error_response(path: str, exc: GatewayError,
                           headers: dict[str, str] | None = None) -> JSONResponse:
    merged = {**(headers or {}), **exc.headers}
    if exc.retry_after:
        merged["Retry-After"] = str(exc.retry_after)
    return error_response(path, exc.status, exc.message, exc.type, exc.param, exc.code,
                          merged or None)


def describe_validation(errors: Any) -> tuple[str, str | None]:
    """A message and an OpenAI-style ``param`` ("messages[0].content") for the error.

    A union reports one error per member; the deepest one is the most telling
    (a list given for ``str | list[part]`` fails inside the list, not as a str).
    """
    if not errors:
        return "invalid request", None
    first = max(errors, key=lambda e: len(e.get("loc", ())))
    if first.get("type") == "json_invalid":
        return "We could not parse the JSON body of your request: it is not valid JSON.", None
    loc = [p for p in first.get("loc", ()) if p != "body"]
    param = _param_path(loc)
    if first.get("type") == "missing" and not loc:
        return "The request needs a JSON body.", None
    detail = first.get("msg", "invalid value")
    if param:
        return f"Invalid value for '{param}': {detail}", param
    return f"Invalid request body: {detail}", None


_UNION_MEMBERS = frozenset({"str", "int", "float", "bool", "dict", "list", "none"})
_TAGS = ROLE_TAGS | BLOCK_TAGS


def _param_path(loc: list[Any]) -> str | None:
    out = ""
    previous_int = False
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            previous_int = True
            continue
        # Unions add the member ("str", "list[...]") and discriminated unions the
        # tag ("user") to the location: neither is a field name.
        if "[" in part or part in _UNION_MEMBERS or (previous_int and part in _TAGS):
            previous_int = False
            continue
        out += f".{part}" if out else part
        previous_int = False
    return out or None
