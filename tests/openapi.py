"""Validate bodies against OpenAI's published OpenAPI description."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC = Path(__file__).resolve().parent / "fixtures" / "openai-openapi.json"


def _denull(node: Any) -> Any:
    """OpenAPI 3.0 ``nullable: true`` -> JSON Schema ``anyOf [X, null]``."""
    if isinstance(node, list):
        return [_denull(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _denull(v) for k, v in node.items()}
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


def _with_completion_chunk(spec: dict[str, Any]) -> dict[str, Any]:
    """``CompletionChunk``: the spec's ``CreateCompletionResponse`` ("streamed and
    non-streamed response objects share the same shape"), except that a choice's
    ``finish_reason`` is null until its last chunk, as OpenAI streams it and as for
    chat chunks (the spec's enum has no value for "not finished yet")."""
    schemas = spec["components"]["schemas"]
    chunk = copy.deepcopy(schemas["CreateCompletionResponse"])
    choice = chunk["properties"]["choices"]["items"]["properties"]
    choice["finish_reason"] = {"anyOf": [choice["finish_reason"], {"type": "null"}]}
    schemas["CompletionChunk"] = chunk
    return spec


@functools.cache
def _registry() -> tuple[Registry, dict[str, Any]]:
    spec = _with_completion_chunk(_denull(json.loads(SPEC.read_text())))
    resource = Resource.from_contents(spec, default_specification=DRAFT202012)
    return Registry().with_resource("openapi.yaml", resource), spec


def validate(body: Any, schema_name: str) -> None:
    registry, _ = _registry()
    schema = {"$ref": f"openapi.yaml#/components/schemas/{schema_name}"}
    jsonschema.Draft202012Validator(schema, registry=registry).validate(body)
