"""Request bodies before any route reads them: bounded in size, and text that can
be encoded.

A body larger than ``server.max_body_bytes`` is refused with 413: at once when its
``Content-Length`` says so, else as soon as the bytes read pass the limit, so it is
never held in memory whole.

JSON may escape a lone UTF-16 surrogate (``"\\ud800"``): a valid JSON string that
is not text, since it has no UTF-8 encoding. Nothing downstream can write it (the
store, the CLI's input, the upstream request), so it would fail late, as a 5xx
after the upstream was called. One check over the whole document refuses it first
with a 400 naming the field, in every dialect and every field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .errors import InvalidRequest, PayloadTooLarge

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]

# A surrogate can only reach a JSON string through a \uD800-\uDFFF escape (UTF-8 has
# no bytes for one), so bodies without such an escape are never parsed twice. It
# also matches surrogate pairs (escaped emoji), which the full check then accepts.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than {limit} bytes, this server's "
                           "limit (server.max_body_bytes).", code="request_too_large")


async def read_within(receive: Receive, limit: int, declared: str | None) -> bytes:
    """The whole body, or 413 once it is known to be larger than ``limit`` bytes
    (``declared`` is the Content-Length header, trusted only to refuse early)."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away; the route notices on its next receive
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def check_text(raw: bytes | str, document: Any = None) -> None:
    """400 naming the first field whose text cannot be encoded as UTF-8.

    ``raw`` is the JSON text; ``document`` its parsed value when the caller has it.
    Text that is not JSON is left alone: the route reports it as malformed.
    """
    found = _SURROGATE_ESCAPE_BYTES.search(raw) if isinstance(raw, bytes) else \
        _SURROGATE_ESCAPE.search(raw)
    if found is None:
        return
    if document is None:
        try:
            document = json.loads(raw)
        except (ValueError, RecursionError):
            return
    path = unencodable(document)
    if path is None:
        return
    param = param_path(path)
    where = f"'{param}'" if param else "the request body"
    raise InvalidRequest(f"Invalid value for {where}: the text holds a lone UTF-16 "
                         "surrogate (such as \\ud800), which is not a character and "
                         "cannot be encoded as UTF-8. Send complete surrogate pairs, or "
                         "the characters themselves.", param=param)


def unencodable(document: Any) -> list[str | int] | None:
    """The path to the first string (or object key) without a UTF-8 encoding.

    A key that cannot be encoded is reported by the object holding it: the path
    must itself be text the error can carry.
    """
    pending: list[tuple[Any, list[str | int]]] = [(document, [])]
    while pending:  # iterative: a deeply nested document must not exhaust the stack
        node, path = pending.pop()
        if isinstance(node, str):
            if not _encodable(node):
                return path
        elif isinstance(node, dict):
            if not all(_encodable(k) for k in node):
                return path
            pending.extend((v, [*path, k]) for k, v in reversed(node.items()))
        elif isinstance(node, list):
            pending.extend((v, [*path, i]) for i, v in reversed(list(enumerate(node))))
    return None


def param_path(path: list[str | int]) -> str | None:
    """OpenAI's way of naming a field: ``messages[0].content``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or None


def _encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
