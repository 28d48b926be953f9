"""Batch input parsing, result shapes and the batch store, without processes."""

from __future__ import annotations

import json

from claude_code_api.access.caller import Caller
from claude_code_api.access.keys import ApiKey
from claude_code_api.batch.models import parse_input
from claude_code_api.batch.runner import Outcome, Runner

CHAT = "/v1/chat/completions"


def line(custom_id: str, **extra: object) -> str:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": CHAT,
                       "body": {"model": "sonnet", "messages": []}, **extra})


def test_input_lines_become_items_and_blank_lines_are_skipped() -> None:
    content = f"{line('a')}\n\n{line('b')}\r\n".encode()
    items, errors = parse_input(content, CHAT, 10)
    assert errors == []
    assert [i.custom_id for i in items] == ["a", "b"]


def test_each_bad_line_is_reported_with_its_number() -> None:
    content = "\n".join([line("a"), "not json", line("a"), line("c", url="/v1/embeddings"),
                         line("d", method="GET"), line("e", body="text"),
                         json.dumps({"method": "POST"})]).encode()
    _, errors = parse_input(content, CHAT, 10)
    assert [(e.line, e.code) for e in errors] == [
        (2, "invalid_json_line"), (3, "duplicate_custom_id"), (4, "mismatched_endpoint"),
        (5, "invalid_method"), (6, "invalid_body"), (7, "invalid_json_line")]
    assert errors[-1].param == "custom_id"


def test_whole_file_problems() -> None:
    assert parse_input(b"\xff\xfe", CHAT, 10)[1][0].code == "invalid_file"
    assert parse_input(b"\n\n", CHAT, 10)[1][0].code == "empty_file"
    many = "\n".join(line(str(i)) for i in range(3)).encode()
    assert parse_input(many, CHAT, 2)[1][0].code == "too_many_requests"


def test_outcomes_render_as_results_and_openai_output_lines() -> None:
    ok = Outcome(0, "a", 200, {"object": "chat.completion"}, "req_1")
    failed = Outcome(1, "b", 404, {"error": {"message": "m", "type": "t", "param": "model",
                                             "code": "model_not_found"}}, "req_2")
    assert ok.result() == {"custom_id": "a", "status_code": 200,
                           "body": {"object": "chat.completion"}}
    assert failed.result() == {"custom_id": "b", "status_code": 404,
                               "error": failed.body["error"]}
    output = failed.line()
    assert output["id"].startswith("batch_req_") and output["error"] is None
    assert output["response"] == {"status_code": 404, "request_id": "req_2",
                                  "body": failed.body}


def test_a_batch_runs_no_more_items_at_once_than_pool_request_and_key_allow() -> None:
    runner = Runner(None, None, 4)  # type: ignore[arg-type]  # limit() reads neither
    assert runner.limit(Caller()) == 4
    assert runner.limit(Caller(), 2) == 2
    assert runner.limit(Caller(), 10) == 4
    assert runner.limit(Caller(key=ApiKey("k", "k", concurrency=1)), 3) == 1


def test_a_line_with_text_that_cannot_be_encoded_fails_validation_naming_the_field() -> None:
    bad = json.dumps({"custom_id": "b", "url": CHAT, "body": {
        "model": "sonnet", "messages": [{"role": "user", "content": "\ud800"}]}})
    items, errors = parse_input(f"{line('a')}\n{bad}\n".encode(), CHAT, 10)
    assert [(e.line, e.code, e.param) for e in errors] == [
        (2, "invalid_text", "body.messages[0].content")]
    assert "surrogate" in errors[0].message
