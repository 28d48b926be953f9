"""Wire models of batches: the synchronous ``POST /v1/batch`` body, OpenAI's
``POST /v1/batches`` body, and the JSONL lines of a batch input file.

An item's ``body`` is checked only when the item runs, so one malformed item
fails alone with the error its endpoint would give; the shape around it (ids,
method, URL) is checked up front.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..body import check_text
from ..errors import InvalidRequest

CHAT = "/v1/chat/completions"
ENDPOINTS = (CHAT,)  # what a batch item may call
COMPLETION_WINDOW = "24h"


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow")


class BatchItem(_Wire):
    """One request of a batch: a line of an input file, or an entry of ``requests``."""

    custom_id: str = Field(min_length=1, max_length=512)
    method: str = "POST"
    url: str = CHAT
    body: Any = None


class BatchRequest(_Wire):
    """``POST /v1/batch``: run these now and answer with every result."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"requests": [
        {"custom_id": "q1", "body": {"model": "sonnet",
                                     "messages": [{"role": "user", "content": "Say hello"}]}}]}]})

    requests: list[BatchItem] = Field(min_length=1)
    max_concurrency: int | None = Field(None, ge=1)


class CreateBatchRequest(_Wire):
    """``POST /v1/batches`` (OpenAI's Batch API)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"input_file_id": "file-abc123", "endpoint": "/v1/chat/completions",
         "completion_window": "24h"}]})

    input_file_id: str = Field(min_length=1)
    # Documented as the only values taken; the service refuses others with its own 400.
    endpoint: str = Field(json_schema_extra={"enum": list(ENDPOINTS)})
    completion_window: str = Field(json_schema_extra={"enum": [COMPLETION_WINDOW]})
    metadata: dict[str, str] | None = None


def unique_ids(items: list[BatchItem]) -> None:
    seen: set[str] = set()
    for i, item in enumerate(items):
        if item.custom_id in seen:
            raise InvalidRequest(f"custom_id `{item.custom_id}` is used twice; each request "
                                 "of a batch needs its own", param=f"requests[{i}].custom_id")
        seen.add(item.custom_id)


@dataclass(frozen=True)
class LineError:
    """What is wrong with one line of an input file (OpenAI's ``BatchError``)."""

    code: str
    message: str
    line: int | None = None
    param: str | None = None

    def wire(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "param": self.param,
                "line": self.line}


def parse_input(content: bytes, endpoint: str, limit: int
                ) -> tuple[list[BatchItem], list[LineError]]:
    """The requests of a JSONL input file, or what is wrong with its lines."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return [], [LineError("invalid_file", "the input file is not UTF-8 text")]
    items: list[BatchItem] = []
    errors: list[LineError] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        item, error = _line(raw, number, endpoint)
        if item is not None and item.custom_id in seen:
            error = LineError("duplicate_custom_id", f"custom_id `{item.custom_id}` is used "
                              "on an earlier line", number, "custom_id")
        if error is not None:
            errors.append(error)
        elif item is not None:
            seen.add(item.custom_id)
            items.append(item)
    if not items and not errors:
        errors.append(LineError("empty_file", "the input file holds no requests"))
    if len(items) > limit:
        errors.append(LineError("too_many_requests", f"the input file holds {len(items)} "
                                f"requests; a batch takes at most {limit}"))
    return items, errors


def _line(raw: str, number: int, endpoint: str) -> tuple[BatchItem | None, LineError | None]:
    try:
        document = json.loads(raw)
        check_text(raw, document)
        item = BatchItem.model_validate(document)
    except InvalidRequest as exc:  # text that cannot be encoded
        return None, LineError("invalid_text", f"line {number}: {exc.message}", number,
                               exc.param)
    except ValueError as exc:  # JSON or the shape around the body
        param = None
        if isinstance(exc, ValidationError) and exc.errors():
            param = ".".join(str(p) for p in exc.errors()[0]["loc"]) or None
        return None, LineError("invalid_json_line", f"line {number} is not a batch request "
                               "object with custom_id, method, url and body", number, param)
    if item.method.upper() != "POST":
        return None, LineError("invalid_method", "batch requests use method POST", number,
                               "method")
    if item.url != endpoint:
        return None, LineError("mismatched_endpoint", f"the line's url `{item.url}` is not "
                               f"the batch's endpoint `{endpoint}`", number, "url")
    if not isinstance(item.body, dict):
        return None, LineError("invalid_body", "body must be a JSON object", number, "body")
    return item, None
