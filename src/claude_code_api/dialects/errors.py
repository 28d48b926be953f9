"""Errors on the wire in the dialect of the route: Anthropic's for /v1/messages*,
OpenAI's everywhere else (the Responses API shares OpenAI's envelope)."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from ..errors import GatewayError
from .anthropic_messages import render as anthropic_wire
from .openai_chat import render as openai_wire


def is_anthropic(path: str) -> bool:
    return path.startswith("/v1/messages")


def error_response(path: str, status: int, message: str, type_: str = "api_error",
                   param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    if is_anthropic(path):
        # Anthropic says 529 for overload and 402 for an exhausted budget.
        status = 402 if type_ == "insufficient_quota" else anthropic_wire.error_status(status)
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
