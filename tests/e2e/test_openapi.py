"""/openapi.json is true to the routes: each error a route answers is a status it
documents, with a body of the documented schema in the route's dialect."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply
from tests.conftest import Gateway, team_gateway

pytestmark = pytest.mark.e2e

USER = [{"role": "user", "content": "hi"}]
TURNS: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"model": "sonnet", "messages": USER},
    "/v1/completions": {"model": "sonnet", "prompt": "hi"},
    "/v1/responses": {"model": "sonnet", "input": "hi"},
    "/v1/messages": {"model": "sonnet", "max_tokens": 64, "messages": USER},
}
MAX_FILE_BYTES = 512
MAX_BODY_BYTES = 64 * 1024
TIMEOUT_SECONDS = 2  # a silent upstream costs each of its four cases this long


@pytest.fixture(scope="module")
def team(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[Gateway, dict[str, str]]]:
    keys = {"alice": (), "bob": (), "haiku-only": ("--models", "haiku"),
            "broke": ("--budget-usd", "0.000001"), "hasty": ("--rpm", "1")}
    yield from team_gateway(upstream, tmp_path_factory.mktemp("openapi"), keys,
                            auth__required="true", batch__max_file_bytes=str(MAX_FILE_BYTES),
                            server__max_body_bytes=str(MAX_BODY_BYTES),
                            claude__timeout_seconds=str(TIMEOUT_SECONDS))


@pytest.fixture(scope="module")
def spec(team: tuple[Gateway, dict[str, str]]) -> dict[str, Any]:
    response = httpx.get(team[0].url + "/openapi.json", timeout=30)
    assert response.status_code == 200
    return dict(response.json())


def call(gw: Gateway, method: str, path: str, token: str | None = None,
         **kw: Any) -> httpx.Response:
    headers = {**kw.pop("headers", {}), **({"Authorization": f"Bearer {token}"}
                                           if token else {})}
    return httpx.request(method, gw.url + path, headers=headers, timeout=60, **kw)


def assert_documented(spec: dict[str, Any], method: str, template: str,
                      response: httpx.Response, status: int) -> dict[str, Any]:
    """The answer has ``status``, the route documents it, and the body matches the
    documented schema (which is the route's dialect's error envelope)."""
    assert response.status_code == status, response.text
    responses = spec["paths"][template][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {template} answered {status}, undocumented"
    schema = responses[str(status)]["content"]["application/json"]["schema"]
    body = response.json()
    jsonschema.validate(body, {**schema, "components": spec["components"]})
    assert (body.get("type") == "error") == template.startswith("/v1/messages"), body
    assert "Traceback" not in response.text and "/tmp" not in response.text
    return dict(body)


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for template, methods in spec["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), template, operation


def test_openapi_json_and_docs_are_served(gw: Gateway, spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.")
    docs = httpx.get(gw.url + "/docs", timeout=30)
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in docs.text
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for method, template, operation in operations(spec):
        assert "422" not in operation["responses"], f"{method} {template}"
        envelope = "AnthropicError" if template.startswith("/v1/messages") else "OpenAIError"
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == f"#/components/schemas/{envelope}", f"{method} {template}"


def test_request_bodies_are_described_by_the_request_models(spec: dict[str, Any]) -> None:
    bodies = {f"{m} {t}": op["requestBody"]["content"] for m, t, op in operations(spec)
              if "requestBody" in op}
    assert set(bodies) == {"POST /v1/chat/completions", "POST /v1/completions",
                           "POST /v1/responses",
                           "POST /v1/messages", "POST /v1/messages/count_tokens",
                           "POST /v1/sessions", "POST /v1/batch", "POST /v1/files",
                           "POST /v1/batches"}
    assert bodies["POST /v1/chat/completions"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ChatCompletionRequest"}
    assert bodies["POST /v1/completions"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CompletionRequest"}
    assert bodies["POST /v1/messages"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/MessagesRequest"}
    upload = bodies["POST /v1/files"]["multipart/form-data"]["schema"]
    assert upload["required"] == ["file", "purpose"]
    assert "sonnet" in json.dumps(spec["components"]["schemas"]["ChatCompletionRequest"]
                                  ["examples"])


def test_every_route_but_health_documents_401_without_a_key(
        gw: Gateway, spec: dict[str, Any]) -> None:
    checked = []
    for method, template, _ in operations(spec):
        if template == "/health":
            continue
        response = call(gw, method, template.replace("{", "").replace("}", ""))
        assert_documented(spec, method, template, response, 401)
        checked.append(template)
    assert len(checked) == sum(1 for _ in operations(spec)) - 1


def test_every_json_body_documents_400_for_malformed_json(
        gw: Gateway, tokens: dict[str, str], spec: dict[str, Any]) -> None:
    for method, template, operation in operations(spec):
        if "application/json" in operation.get("requestBody", {}).get("content", {}):
            response = call(gw, method, template, tokens["alice"], content=b'{"model": ',
                            headers={"content-type": "application/json"})
            assert_documented(spec, method, template, response, 400)


@pytest.mark.parametrize(("method", "path", "request_args", "template"), [
    # A body in the other dialect's shape.
    ("POST", "/v1/chat/completions", {"json": {"model": "sonnet", "max_tokens": 64, "messages": [
        {"role": "user", "content": [{"type": "image", "source": {
            "type": "base64", "media_type": "image/png", "data": "AAAA"}}]}]}}, None),
    ("POST", "/v1/messages", {"json": {"model": "sonnet", "messages": [
        {"role": "system", "content": "Be brief."}, *USER]}}, None),
    ("POST", "/v1/messages/count_tokens", {"json": {"model": "sonnet", "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}},
     None),
    ("POST", "/v1/responses", {"json": {"model": "sonnet", "messages": USER}}, None),
    ("POST", "/v1/completions", {"json": {"model": "sonnet", "messages": USER}}, None),
    ("POST", "/v1/completions", {"json": {"model": "sonnet", "prompt": [1212, 318]}}, None),
    ("POST", "/v1/sessions", {"json": {"model": "sonnet", "stream": True}}, None),
    ("POST", "/v1/batch", {"json": {"requests": []}}, None),
    ("POST", "/v1/batches", {"json": {"input_file_id": "file-x", "endpoint": "/v1/embeddings",
                                      "completion_window": "24h"}}, None),
    ("POST", "/v1/files", {"files": {"file": ("a.jsonl", b"{}\n")},
                           "data": {"purpose": "fine-tune"}}, None),
    ("GET", "/v1/batches?limit=0", {}, "/v1/batches"),
    ("GET", "/v1/conversations?limit=many", {}, "/v1/conversations"),
])
def test_invalid_requests_are_documented_400s(
        gw: Gateway, tokens: dict[str, str], spec: dict[str, Any], method: str, path: str,
        request_args: dict[str, Any], template: str | None) -> None:
    response = call(gw, method, path, tokens["alice"], **request_args)
    assert_documented(spec, method, template or path, response, 400)


@pytest.mark.parametrize(("method", "path", "template"), [
    ("GET", "/v1/models/gpt-9", "/v1/models/{model_id}"),
    ("GET", "/v1/responses/resp_none", "/v1/responses/{response_id}"),
    ("DELETE", "/v1/responses/resp_none", "/v1/responses/{response_id}"),
    ("GET", "/v1/responses/resp_none/input_items", "/v1/responses/{response_id}/input_items"),
    ("GET", "/v1/conversations/conv_none", "/v1/conversations/{conversation_id}"),
    ("DELETE", "/v1/conversations/conv_none", "/v1/conversations/{conversation_id}"),
    ("GET", "/v1/conversations/conv_none/replica",
     "/v1/conversations/{conversation_id}/replica"),
    ("GET", "/v1/sessions/sess_none", "/v1/sessions/{session_id}"),
    ("DELETE", "/v1/sessions/sess_none", "/v1/sessions/{session_id}"),
    ("GET", "/v1/files/file-none", "/v1/files/{file_id}"),
    ("GET", "/v1/files/file-none/content", "/v1/files/{file_id}/content"),
    ("DELETE", "/v1/files/file-none", "/v1/files/{file_id}"),
    ("GET", "/v1/batches/batch_none", "/v1/batches/{batch_id}"),
    ("POST", "/v1/batches/batch_none/cancel", "/v1/batches/{batch_id}/cancel"),
])
def test_unknown_objects_are_documented_404s(gw: Gateway, tokens: dict[str, str],
                                            spec: dict[str, Any], method: str, path: str,
                                            template: str) -> None:
    assert_documented(spec, method, template, call(gw, method, path, tokens["alice"]), 404)


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", {"model": "sonnet", "messages": [
        {"role": "system", "content": "Be\u0000brief."}, *USER]}),
    ("/v1/responses", {"model": "sonnet", "instructions": "Be\u0000brief.", "input": "hi"}),
    ("/v1/messages", {**TURNS["/v1/messages"], "system": "Be\u0000brief."}),
    ("/v1/sessions", {"model": "sonnet", "system": "Be\u0000brief."}),
])
def test_a_nul_in_the_system_prompt_is_a_documented_400(
        gw: Gateway, tokens: dict[str, str], spec: dict[str, Any], path: str,
        body: dict[str, Any]) -> None:
    # A CLI argument cannot hold a NUL: the worker would not start (it was a 502).
    response = call(gw, "POST", path, tokens["alice"], json=body)
    error = assert_documented(spec, "POST", path, response, 400)
    assert "NUL" in json.dumps(error)
    assert gw.health()["status"] == "ok"


@pytest.mark.parametrize(("path", "body", "keyword"), [
    ("/v1/chat/completions", {**TURNS["/v1/chat/completions"], "response_format": {
        "type": "json_schema", "json_schema": {"name": "answer", "schema": {
            "type": "object", "properties": {"a": {"type": "string", "strict": True}}}}}},
     "properties.a.strict"),
    ("/v1/responses", {**TURNS["/v1/responses"], "text": {"format": {
        "type": "json_schema", "name": "answer",
        "schema": {"type": "object", "unevaluatedProperties": False}}}},
     "unevaluatedProperties"),
])
def test_an_output_schema_the_cli_would_refuse_is_a_documented_400(
        gw: Gateway, tokens: dict[str, str], spec: dict[str, Any], path: str,
        body: dict[str, Any], keyword: str) -> None:
    # Claude Code checks output schemas strictly (draft-07): it would not start (a 502).
    response = call(gw, "POST", path, tokens["alice"], json=body)
    error = assert_documented(spec, "POST", path, response, 400)
    assert f"`{keyword}`" in error["error"]["message"]
    assert "last_start_error" not in gw.health()


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("PUT", "/v1/chat/completions", {"POST"}),
    ("GET", "/v1/messages", {"POST"}),
    ("PUT", "/v1/files/file-x", {"GET", "DELETE"}),  # two routes on one path
])
def test_a_method_the_route_lacks_is_405_with_allow_in_its_dialect(
        gw: Gateway, tokens: dict[str, str], method: str, path: str,
        allowed: set[str]) -> None:
    response = call(gw, method, path, tokens["alice"])
    assert response.status_code == 405
    # RFC 9110: Allow names every method of the resource.
    assert set(response.headers["allow"].split(", ")) == allowed
    body = response.json()
    assert set(body) == ({"type", "error"} if path == "/v1/messages" else {"error"})


UNKNOWN = {**{path: {**body, "model": "gpt-9"} for path, body in TURNS.items()},
           "/v1/messages/count_tokens": {"model": "gpt-9", "messages": USER},
           "/v1/sessions": {"model": "gpt-9"},
           "/v1/batches": {"input_file_id": "file-none", "endpoint": "/v1/chat/completions",
                           "completion_window": "24h"}}


@pytest.mark.parametrize("path", list(UNKNOWN))
def test_unknown_models_and_files_are_documented_404s(
        gw: Gateway, tokens: dict[str, str], spec: dict[str, Any], path: str) -> None:
    response = call(gw, "POST", path, tokens["alice"], json=UNKNOWN[path])
    assert_documented(spec, "POST", path, response, 404)


@pytest.mark.parametrize("path", [*TURNS, "/v1/sessions"])
def test_a_model_the_key_may_not_use_is_a_documented_403(
        gw: Gateway, tokens: dict[str, str], spec: dict[str, Any], path: str) -> None:
    body = TURNS.get(path, {"model": "sonnet"})
    response = call(gw, "POST", path, tokens["haiku-only"], json=body)
    assert_documented(spec, "POST", path, response, 403)


def test_a_conversation_id_of_another_key_is_a_documented_409(
        gw: Gateway, tokens: dict[str, str], spec: dict[str, Any]) -> None:
    claimed = {"X-Conversation-ID": "claimed-by-alice"}
    first = call(gw, "POST", "/v1/chat/completions", tokens["alice"], headers=claimed,
                 json=TURNS["/v1/chat/completions"])
    assert first.status_code == 200, first.text
    for path, body in TURNS.items():
        response = call(gw, "POST", path, tokens["bob"], headers=claimed, json=body)
        if path == "/v1/completions":
            # A completion belongs to no conversation: the id is not read, no 409.
            assert response.status_code == 200, response.text
            assert "409" not in spec["paths"][path]["post"]["responses"]
            continue
        assert_documented(spec, "POST", path, response, 409)


def test_cancelling_a_finished_batch_is_a_documented_409(
        gw: Gateway, tokens: dict[str, str], spec: dict[str, Any],
        upstream: FakeUpstream) -> None:
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
            "body": TURNS["/v1/chat/completions"]}
    file = call(gw, "POST", "/v1/files", tokens["alice"], data={"purpose": "batch"},
                files={"file": ("in.jsonl", json.dumps(line).encode())}).json()
    batch = call(gw, "POST", "/v1/batches", tokens["alice"], json={
        "input_file_id": file["id"], "endpoint": "/v1/chat/completions",
        "completion_window": "24h"}).json()
    deadline = time.monotonic() + 60
    while batch["status"] not in ("completed", "failed") and time.monotonic() < deadline:
        time.sleep(0.2)
        batch = call(gw, "GET", f"/v1/batches/{batch['id']}", tokens["alice"]).json()
    assert batch["status"] == "completed", batch
    response = call(gw, "POST", f"/v1/batches/{batch['id']}/cancel", tokens["alice"])
    assert_documented(spec, "POST", "/v1/batches/{batch_id}/cancel", response, 409)


def test_an_upload_over_the_limit_is_a_documented_413(
        gw: Gateway, tokens: dict[str, str], spec: dict[str, Any]) -> None:
    response = call(gw, "POST", "/v1/files", tokens["alice"], data={"purpose": "batch"},
                    files={"file": ("big.jsonl", b"x" * (MAX_FILE_BYTES + 1))})
    assert_documented(spec, "POST", "/v1/files", response, 413)


def test_every_body_over_the_limit_or_with_unencodable_text_is_documented(
        gw: Gateway, tokens: dict[str, str], spec: dict[str, Any]) -> None:
    """Every POST body but an upload's is read by the access layer before its route:
    too large is 413, a lone surrogate is 400, on every route, in its dialect."""
    posts = [t for m, t, _ in operations(spec) if m == "POST" and t != "/v1/files"]
    assert "/v1/batches/{batch_id}/cancel" in posts and "/v1/messages" in posts
    for template in posts:
        path = template.replace("{batch_id}", "batch_0")
        big = call(gw, "POST", path, tokens["alice"],
                   json={"model": "sonnet", "padding": "x" * MAX_BODY_BYTES})
        assert_documented(spec, "POST", template, big, 413)
        unencodable = call(gw, "POST", path, tokens["alice"],
                           content=b'{"model": "sonnet", "note": "\\ud800"}',
                           headers={"content-type": "application/json"})
        assert "note" in assert_documented(spec, "POST", template, unencodable, 400)[
            "error"]["message"]


def test_a_spent_budget_is_a_documented_429_or_anthropic_402(
        gw: Gateway, tokens: dict[str, str], spec: dict[str, Any]) -> None:
    spend = call(gw, "POST", "/v1/chat/completions", tokens["broke"],
                 json=TURNS["/v1/chat/completions"])
    assert spend.status_code == 200, spend.text
    bodies = {**TURNS, "/v1/messages/count_tokens": {"model": "sonnet", "messages": USER},
              "/v1/batch": {"requests": [{"custom_id": "a",
                                          "body": TURNS["/v1/chat/completions"]}]},
              "/v1/batches": {"input_file_id": "file-x", "endpoint": "/v1/chat/completions",
                              "completion_window": "24h"},
              "/v1/sessions": {"model": "sonnet"}}
    for path, body in bodies.items():
        response = call(gw, "POST", path, tokens["broke"], json=body)
        status = 402 if path.startswith("/v1/messages") else 429
        assert_documented(spec, "POST", path, response, status)


def test_an_anthropic_rate_limit_is_a_documented_429(
        gw: Gateway, tokens: dict[str, str], spec: dict[str, Any]) -> None:
    body = {"model": "sonnet", "messages": USER}
    first = call(gw, "POST", "/v1/messages/count_tokens", tokens["hasty"], json=body)
    assert first.status_code == 200, first.text
    response = call(gw, "POST", "/v1/messages", tokens["hasty"], json=TURNS["/v1/messages"])
    assert_documented(spec, "POST", "/v1/messages", response, 429)
    assert int(response.headers["retry-after"]) > 0


@pytest.mark.parametrize("path", list(TURNS))
@pytest.mark.parametrize(("reply", "openai_status", "anthropic_status"), [
    # First: the fake's delayed answers end while the later cases run.
    (Reply.text("far too slow", first_delay=2 * TIMEOUT_SECONDS), 504, 504),
    (Reply.error(429, "rate_limit_error"), 429, 429),
    (Reply.error(401, "authentication_error"), 502, 502),
    (Reply.error(529, "overloaded_error"), 503, 529),
], ids=["silent", "rate-limited", "rejected", "overloaded"])
def test_upstream_failures_are_documented(
        gw: Gateway, tokens: dict[str, str], spec: dict[str, Any], upstream: FakeUpstream,
        path: str, reply: Reply, openai_status: int, anthropic_status: int) -> None:
    upstream.script(reply)
    response = call(gw, "POST", path, tokens["alice"], json=TURNS[path])
    status = anthropic_status if path.startswith("/v1/messages") else openai_status
    assert_documented(spec, "POST", path, response, status)
