"""GET /v1/models, /v1/models/{id}, /health and /docs."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import Gateway
from tests.openapi import validate

pytestmark = pytest.mark.e2e


def test_models_list_has_aliases_and_full_ids(client: openai.OpenAI, gateway: Gateway) -> None:
    ids = [m.id for m in client.models.list()]
    for expected in ("opus", "sonnet", "haiku", "claude-sonnet-5-5", "claude-opus-5-5",
                     "claude-haiku-5-5", "gpt-4o"):
        assert expected in ids
    raw = httpx.get(gateway.base_url + "/models", timeout=10).json()
    validate(raw, "ListModelsResponse")
    assert all(m["owned_by"] == "anthropic" and m["object"] == "model" for m in raw["data"])


def test_model_retrieve(client: openai.OpenAI, gateway: Gateway) -> None:
    model = client.models.retrieve("claude-sonnet-5-5")
    assert model.id == "claude-sonnet-5-5"
    validate(httpx.get(gateway.base_url + "/models/sonnet", timeout=10).json(), "Model")
    # Any claude-* id is served, so it can be retrieved too.
    assert client.models.retrieve("claude-future-9").id == "claude-future-9"


def test_unknown_model_retrieve_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("llama-3-70b")
    assert caught.value.code == "model_not_found"


def test_health_reports_cli_version_and_pool(gateway: Gateway) -> None:
    health = gateway.health()
    assert health["status"] == "ok"
    assert health["cli_version"].startswith("2.")
    assert health["pool"]["size"] >= 1 and health["pool"]["max"] >= 1
    assert {"idle", "busy", "queued", "starting", "restarts"} <= set(health["pool"])
    worker = health["workers"][0]
    assert worker["pid"] in [p.pid for p in gateway.cli_processes()]
    assert worker["rss_bytes"] > 10_000_000


def test_openapi_docs_are_served(gateway: Gateway) -> None:
    assert httpx.get(gateway.url + "/docs", timeout=10).status_code == 200
    schema = httpx.get(gateway.url + "/openapi.json", timeout=10).json()
    assert "/v1/chat/completions" in schema["paths"]
    assert "/v1/models" in schema["paths"]
