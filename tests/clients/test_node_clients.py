"""The README's Node guides, run as they are shown: the openai SDK and the Vercel AI SDK
with each of its providers, against a gateway and the fake upstream.

All guides run at once (each is a Node process with its own gateway key); the fake
answers every request from what it carries, so the order of arrival does not matter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from claude_code_api.testing.fake_upstream import FakeUpstream, Seen
from tests.clients.node import GUIDES, NodeClients, Run, finish_all, prepared
from tests.clients.replies import answer
from tests.conftest import ROOT, Gateway, team_gateway

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

# Each run: the guides it is made of (a Vercel AI SDK provider's set-up, then the calls).
RUNS = {
    "openai-node": ["openai-node.mjs"],
    "ai-sdk-openai-compatible": ["ai-sdk-openai-compatible.mjs", "ai-sdk.mjs"],
    "ai-sdk-openai": ["ai-sdk-openai.mjs", "ai-sdk.mjs"],
    "ai-sdk-anthropic": ["ai-sdk-anthropic.mjs", "ai-sdk.mjs"],
}


@dataclass
class Results:
    runs: dict[str, Run]
    requests: list[Seen]
    metrics: str


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> NodeClients:
    return prepared(tmp_path_factory.mktemp("node"))


@pytest.fixture(scope="module")
def team(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[Gateway, dict[str, str]]]:
    yield from team_gateway(upstream, tmp_path_factory.mktemp("node-team"),
                            dict.fromkeys(RUNS, ()))


@pytest.fixture(scope="module")
def results(node: NodeClients, team: tuple[Gateway, dict[str, str]],
            upstream: FakeUpstream) -> Results:
    gateway, tokens = team
    upstream.reset()
    upstream.responder = answer
    processes = {run: node.start(f"{run}.mjs", guides,
                                 {"CLAUDE_CODE_API_URL": gateway.base_url,
                                  "CLAUDE_CODE_API_KEY": tokens[run]})
                 for run, guides in RUNS.items()}
    runs = finish_all(processes)
    requests = list(upstream.requests)
    upstream.reset()
    metrics = httpx.get(gateway.url + "/metrics", timeout=10,
                        headers={"Authorization": f"Bearer {tokens['openai-node']}"}).text
    return Results(runs, requests, metrics)


def output(results: Results, name: str) -> list[str]:
    run = results.runs[name]
    assert run.returncode == 0, run.explain()
    return run.lines


def test_every_guide_is_in_the_readme_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    for path in sorted(GUIDES.iterdir()):
        assert path.read_text() in readme, f"README does not show {path.name} as it is"


def test_openai_node_sdk(results: Results) -> None:
    assert output(results, "openai-node") == [
        "You said: Say hello",
        "You said: Count to 5",
        "The tool says: Sunny, 21°C in Paris",
        "{ city: 'Paris', country: 'France' }",
        "You said: What is Claude Code?",
    ]


@pytest.mark.parametrize("provider", ["ai-sdk-openai-compatible", "ai-sdk-openai",
                                      "ai-sdk-anthropic"])
def test_vercel_ai_sdk(results: Results, provider: str) -> None:
    assert output(results, provider) == [
        "You said: Say hello",
        "You said: Count to 5",
        "The tool says: Sunny, 21°C in Paris",
        "{ city: 'Paris', country: 'France' }",
    ]


def requests_by_key(metrics: str) -> dict[str, set[str]]:
    """Routes each key's (by its id) successful requests went to, from /metrics."""
    out: dict[str, set[str]] = {}
    for line in metrics.splitlines():
        if not line.startswith("claude_code_api_requests_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if labels.get("status") == "200":
            out.setdefault(labels["key"], set()).add(labels["route"])
    return out


def test_each_client_speaks_its_dialect(results: Results, tokens: dict[str, str]) -> None:
    routes = requests_by_key(results.metrics)
    by_run = {run: routes.get(tokens[run].split("-")[2]) for run in RUNS}
    assert by_run == {
        "openai-node": {"/v1/chat/completions", "/v1/responses"},
        "ai-sdk-openai-compatible": {"/v1/chat/completions"},
        "ai-sdk-openai": {"/v1/responses"},  # @ai-sdk/openai's default
        "ai-sdk-anthropic": {"/v1/messages"},
    }


def test_the_schema_and_tool_reach_claude(results: Results) -> None:
    """Claude is offered each guide's output schema and its weather tool as written."""
    schemas = [tool["input_schema"] for seen in results.requests
               for tool in seen.body.get("tools", []) if tool["name"] == "StructuredOutput"]
    assert len(schemas) == 4
    for schema in schemas:
        assert schema["properties"] == {"city": {"type": "string"},
                                        "country": {"type": "string"}}
        assert sorted(schema["required"]) == ["city", "country"]
    weather: list[dict[str, Any]] = [
        tool for seen in results.requests for tool in seen.body.get("tools", [])
        if tool["name"] == "get_weather"]
    assert weather and all(tool["description"] == "Current weather in a city"
                           for tool in weather)
    assert {json.dumps(tool["input_schema"]["properties"]) for tool in weather} == {
        json.dumps({"city": {"type": "string"}})}

