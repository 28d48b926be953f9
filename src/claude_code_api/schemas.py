"""Checks on JSON schemas that clients send (tool inputs, structured output)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import jsonschema

from .errors import InvalidRequest
from .events import Effort, ToolSpec

# Anthropic tool names are capped at 64 characters.
MAX_TOOL_NAME = 64


def check_schema(schema: Any, param: str, *, want_object: bool = True) -> dict[str, Any]:
    """The schema if it is a valid JSON schema for an object, else a 400."""
    if not isinstance(schema, dict):
        raise InvalidRequest("must be a JSON schema object", param=param)
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidRequest(f"is not a valid JSON schema: {exc.message}", param=param) from None
    if want_object and schema.get("type", "object") != "object":
        raise InvalidRequest("must describe a JSON object (\"type\": \"object\")", param=param)
    return schema


def tool_specs(tools: Iterable[tuple[str, str | None, Any, str]]) -> tuple[ToolSpec, ...]:
    """Specs for (name, description, schema, param prefix) entries; names must differ."""
    specs: list[ToolSpec] = []
    for name, description, parameters, param in tools:
        if any(spec.name == name for spec in specs):
            raise InvalidRequest(f"two tools are named '{name}'", param=f"{param}.name")
        specs.append(tool_spec(name, description, parameters, param))
    return tuple(specs)


def tool_spec(name: str, description: str | None, parameters: Any, param: str) -> ToolSpec:
    if len(name) > MAX_TOOL_NAME:
        raise InvalidRequest(f"tool names may have at most {MAX_TOOL_NAME} characters here",
                             param=f"{param}.name")
    schema = check_schema(parameters if parameters is not None else
                          {"type": "object", "properties": {}}, f"{param}.parameters")
    schema = {"type": "object", **schema}
    signature = json.dumps([description or "", schema], sort_keys=True, separators=(",", ":"))
    return ToolSpec(name, description or "", schema, signature)


# OpenAI's reasoning effort -> the CLI's effort. Claude's thinking cannot be
# switched off on current models, so "none" and "minimal" are the lowest effort.
OPENAI_EFFORTS: dict[str, Effort] = {"none": "low", "minimal": "low", "low": "low",
                                     "medium": "medium", "high": "high", "xhigh": "xhigh"}


def openai_temperature(value: float | None) -> float | None:
    """OpenAI's temperature (0-2) on Claude's scale (0-1): above 1 is taken as 1."""
    return None if value is None else min(value, 1.0)


def output_schema(kind: str | None, schema: dict[str, Any] | None, param: str) -> str | None:
    """The canonical JSON schema an answer must match, for json_object/json_schema."""
    if kind == "json_object":
        checked: dict[str, Any] = {"type": "object"}
    elif kind == "json_schema":
        checked = check_schema(schema or {"type": "object"}, param)
        _check_cli_keywords(checked, param)
    else:
        return None
    return json.dumps(checked, sort_keys=True, separators=(",", ":"))


# Claude Code checks an output schema as Ajv does in strict mode, for JSON Schema
# draft-07: an unknown keyword (or another draft's $schema) stops the CLI from starting,
# so it is a 400 here rather than a 502 there.
_CLI_KEYWORDS = frozenset({
    "$id", "$schema", "$ref", "$comment", "$defs", "$async", "$vocabulary", "definitions",
    "title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly",
    "type", "enum", "const", "nullable", "format", "contentMediaType", "contentEncoding",
    "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
    "maxLength", "minLength", "pattern", "items", "additionalItems", "maxItems", "minItems",
    "uniqueItems", "contains", "maxProperties", "minProperties", "required", "properties",
    "patternProperties", "additionalProperties", "dependencies", "propertyNames",
    "if", "then", "else", "allOf", "anyOf", "oneOf", "not"})
_SUBSCHEMA = frozenset({"items", "additionalItems", "contains", "additionalProperties",
                        "propertyNames", "if", "then", "else", "not"})
_SUBSCHEMA_LISTS = frozenset({"items", "allOf", "anyOf", "oneOf"})
_SUBSCHEMA_MAPS = frozenset({"properties", "patternProperties", "definitions", "$defs",
                             "dependencies"})
_DRAFT_07 = "http://json-schema.org/draft-07/schema"


def _check_cli_keywords(schema: Any, param: str, where: str = "") -> None:
    if not isinstance(schema, dict):
        return  # true/false are schemas too
    for key, value in schema.items():
        if key not in _CLI_KEYWORDS:
            raise InvalidRequest(f"uses `{where}{key}`, which Claude Code does not accept "
                                 "in an output schema (JSON Schema draft-07 keywords only)",
                                 param=param)
        if key == "$schema" and str(value).rstrip("#") != _DRAFT_07:
            raise InvalidRequest(f"`$schema` must be {_DRAFT_07}# (or absent): Claude Code "
                                 "checks output schemas as draft-07", param=param)
        if key in _SUBSCHEMA:
            _check_cli_keywords(value, param, f"{where}{key}.")
        if key in _SUBSCHEMA_LISTS and isinstance(value, list):
            for i, item in enumerate(value):
                _check_cli_keywords(item, param, f"{where}{key}[{i}].")
        if key in _SUBSCHEMA_MAPS and isinstance(value, dict):
            for name, item in value.items():
                _check_cli_keywords(item, param, f"{where}{key}.{name}.")
