"""The body checks every request passes before a route: size and encodable text."""

from __future__ import annotations

import json
from typing import Any

import pytest

from claude_code_api.body import check_text, read_within, unencodable
from claude_code_api.errors import InvalidRequest, PayloadTooLarge

LONE = "\ud800"


def encoded(document: Any) -> bytes:
    return json.dumps(document).encode()  # lone surrogates become \ud800 escapes


@pytest.mark.parametrize(("document", "param"), [
    ({"messages": [{"role": "user", "content": f"a{LONE}b"}]}, "messages[0].content"),
    ({"tools": [{"function": {"parameters": {"properties": {"x": {"enum": ["ok", LONE]}}}}}]},
     "tools[0].function.parameters.properties.x.enum[1]"),
    ({"input": "fine", "instructions": "\udfff"}, "instructions"),
    ({"metadata": {LONE: "a key"}}, "metadata"),
    ([LONE], "[0]"),
])
def test_a_lone_surrogate_is_refused_naming_its_field(document: Any, param: str | None) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_text(encoded(document))
    assert caught.value.param == param
    assert "surrogate" in caught.value.message
    caught.value.message.encode("utf-8")  # the error itself can be sent


@pytest.mark.parametrize("document", [
    {"content": "plain ascii"}, {"content": "naïve 😀 中文"}, {"content": "\\ud800 is text"},
    {"n": 1, "x": None, "ok": True},
])
def test_text_that_encodes_passes(document: Any) -> None:
    check_text(encoded(document))
    check_text(json.dumps(document, ensure_ascii=False))


def test_the_first_field_in_document_order_is_named() -> None:
    document = {"a": ["fine", {"b": LONE}], "c": LONE}
    assert unencodable(document) == ["a", 1, "b"]


def test_deep_nesting_and_bad_json_are_left_to_the_route() -> None:
    deep = "[" * 100_000 + '"\\ud800"' + "]" * 100_000
    check_text(deep)  # not parsed here (too deep for json): the route answers 400
    check_text(b'{"content": "\\ud800", oops')
    nested: Any = LONE
    for _ in range(5000):
        nested = [nested]
    assert unencodable(nested) == [0] * 5000  # no recursion limit in the walk


def body_messages(*chunks: bytes) -> Any:
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                for i, c in enumerate(chunks)]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    return receive


async def test_a_body_within_the_limit_is_read_whole() -> None:
    assert await read_within(body_messages(b"ab", b"cd"), 4, None) == b"abcd"


async def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    async def receive() -> dict[str, Any]:
        raise AssertionError("the body was read")

    with pytest.raises(PayloadTooLarge) as caught:
        await read_within(receive, 4, "5")
    assert caught.value.status == 413 and caught.value.code == "request_too_large"


async def test_an_undeclared_body_is_refused_once_it_passes_the_limit() -> None:
    receive = body_messages(b"abc", b"de", b"never read")
    with pytest.raises(PayloadTooLarge):
        await read_within(receive, 4, None)
