"""A bounded schemathesis run against a real gateway: every operation of its
/openapi.json gets generated requests, valid and invalid, and every answer must be
a documented status, of a documented content type, with documented headers and a
body that matches the documented schema, and never a 5xx.

The gateway requires keys (so the key checks run on every request) and the fake
upstream answers every turn, so a generated request that is valid goes through the
real CLI and back. Generation is seeded: a run is reproducible. Every operation is
run; the WebSocket route is not in /openapi.json (OpenAPI cannot describe it).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply, Seen, ToolUse
from tests.conftest import Gateway, team_gateway

pytestmark = pytest.mark.e2e

EXAMPLES = 6  # per operation and kind (valid, invalid): bounds the run to ~30 s
REQUEST_TIMEOUT = 30.0  # seconds; a turn on a warm worker takes well under one
MODELS = ["sonnet", "haiku", "claude-sonnet-4-5"]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance,
          negative_data_rejection]


@pytest.fixture(scope="module")
def team(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[Gateway, dict[str, str]]]:
    # A budget that is never spent: checked on every model call. One live session at
    # most: each holds a worker until it idles out.
    yield from team_gateway(upstream, tmp_path_factory.mktemp("fuzzed"),
                            {"fuzzer": ("--budget-usd", "100")}, auth__required="true",
                            sessions__max_live="1")


def answer(seen: Seen) -> Reply:
    """Text; or, when the CLI asks for structured output, an empty document (the
    answer to a generated schema that requires nothing)."""
    if any(tool.get("name") == "StructuredOutput" for tool in seen.body.get("tools", [])):
        return Reply(blocks=[ToolUse("StructuredOutput", {})], stop_reason="tool_use")
    return Reply.text("A generated request's answer.")


def with_model(drawn: tuple[schemathesis.Case, str]) -> schemathesis.Case:
    case, model = drawn
    if isinstance(case.body, dict) and "model" in case.body:
        case.body["model"] = model
    return case


def strategies(operation: schemathesis.APIOperation
               ) -> Iterator[tuple[str, st.SearchStrategy[schemathesis.Case]]]:
    """The documented examples, valid requests, then invalid ones. A generated model
    name is almost never one the CLI knows (a 404 before any turn): half the valid
    requests name a real one, so that they run a turn."""
    for number, example in enumerate(operation.get_strategies_from_examples(), 1):
        yield f"example {number}", example
    valid = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
    yield "valid", st.one_of(valid, st.tuples(valid, st.sampled_from(MODELS)).map(with_model))
    # A path parameter is any string: only a body or a query can be made invalid.
    if operation.body or len(operation.query):
        yield "invalid", operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)


class Run:
    """Sends the cases; records each distinct failure (does not stop at the first)."""

    def __init__(self, gateway: Gateway, token: str) -> None:
        self.base_url = gateway.url
        self.headers = {"Authorization": f"Bearer {token}"}
        self.statuses: dict[str, Counter[int]] = {}
        self.failures: dict[str, str] = {}

    def fuzz(self, operation: schemathesis.APIOperation, kind: str,
             strategy: st.SearchStrategy[schemathesis.Case]) -> None:
        statuses = self.statuses.setdefault(operation.label, Counter())

        @given(case=strategy)
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def send(case: schemathesis.Case) -> None:
            response = case.call(base_url=self.base_url, headers=self.headers,
                                 timeout=REQUEST_TIMEOUT)
            statuses[response.status_code] += 1
            try:
                case.validate_response(response, checks=CHECKS, headers=self.headers)
            except FailureGroup as group:
                for failure in group.exceptions:
                    key = (f"{operation.label} ({kind}) -> {response.status_code}: "
                           f"{failure.title}")
                    self.failures.setdefault(key, f"{key}\n{failure.message}\n"
                                                  f"{case.as_curl_command(self.headers)}")

        send()

    def report(self) -> str:
        lines = [f"{label}: " + " ".join(f"{status}x{n}" for status, n in sorted(c.items()))
                 for label, c in sorted(self.statuses.items())]
        return "\n".join(lines)


def test_generated_requests_get_documented_answers_and_no_server_error(
        team: tuple[Gateway, dict[str, str]], upstream: FakeUpstream) -> None:
    gateway, tokens = team
    upstream.reset()
    upstream.responder = answer
    schema = schemathesis.openapi.from_url(gateway.url + "/openapi.json")
    run = Run(gateway, tokens["fuzzer"])
    started = time.monotonic()
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            pytest.fail(f"/openapi.json has an invalid operation: {result.err()}")
        operation = result.ok()
        for kind, strategy in strategies(operation):
            run.fuzz(operation, kind, strategy)
    cases = sum(sum(c.values()) for c in run.statuses.values())
    print(f"\nschemathesis: {cases} cases, {len(upstream.message_requests())} turns, "
          f"{time.monotonic() - started:.1f}s\n{run.report()}")
    assert not run.failures, "\n\n".join(run.failures.values())
    assert set(run.statuses) == {f"{m.upper()} {p}" for p, ops in
                                 schema.raw_schema["paths"].items() for m in ops}
    assert len(upstream.message_requests()) > 0  # some requests ran real turns
