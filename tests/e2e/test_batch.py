"""Batches end to end: POST /v1/batch and OpenAI's Files + Batch APIs (driven with
the official openai client), real CLI behind the fake upstream, a pool of three."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply, Seen
from tests.conftest import Gateway, start_gateway, team_gateway
from tests.openapi import validate

pytestmark = pytest.mark.e2e

POOL = 3
MAX_REQUESTS = 25
MAX_FILE_BYTES = 100_000
_QUESTION = re.compile(r"\bq-([\w-]+)")


@pytest.fixture(scope="module")
def team(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[Gateway, dict[str, str]]]:
    keys = {"alice": (), "bob": (), "single": ("--concurrency", "1", "--rpm", "2"),
            "haiku-only": ("--models", "haiku")}
    yield from team_gateway(upstream, tmp_path_factory.mktemp("batch"), keys,
                            auth__required="true", claude__max_concurrent_sessions=str(POOL),
                            batch__max_requests=str(MAX_REQUESTS),
                            batch__max_file_bytes=str(MAX_FILE_BYTES))


def answering(upstream: FakeUpstream, delay: float = 0.2) -> None:
    """The fake answers "q-<id>" with "answer <id>", whatever order turns arrive in."""
    def respond(seen: Seen) -> Reply:
        match = _QUESTION.search(seen.last_user_text())
        return Reply.text(f"answer {match.group(1) if match else '?'}", first_delay=delay)
    upstream.responder = respond


def chat_body(ident: str, **extra: Any) -> dict[str, Any]:
    return {"model": "sonnet", "messages": [{"role": "user", "content": f"q-{ident}"}],
            **extra}


def post_batch(gateway: Gateway, token: str, requests: list[dict[str, Any]],
               **extra: Any) -> httpx.Response:
    return httpx.post(gateway.base_url + "/batch", json={"requests": requests, **extra},
                      headers={"Authorization": f"Bearer {token}"}, timeout=120)


@contextmanager
def watching(gateway: Gateway) -> Iterator[dict[str, int]]:
    """The most workers and busy workers /health showed while the block ran."""
    seen = {"size": 0, "busy": 0}
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            health = gateway.health()
            seen["size"] = max(seen["size"], health["pool"]["size"], len(health["workers"]))
            seen["busy"] = max(seen["busy"], health["pool"]["busy"])
            time.sleep(0.02)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(10)


def wait_batch(api: openai.OpenAI, batch_id: str, until: Callable[[Any], bool],
               timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = api.batches.retrieve(batch_id)
        if until(batch):
            return batch
        time.sleep(0.1)
    raise AssertionError(f"batch not there in time: {batch}")


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def answers(text: str) -> dict[str, tuple[int, Any]]:
    """custom_id -> (status_code, body) of an output or error file."""
    out = {}
    for raw in text.splitlines():
        line = json.loads(raw)
        assert line["id"].startswith("batch_req_") and line["error"] is None
        assert line["response"]["request_id"].startswith("req_")
        out[line["custom_id"]] = (line["response"]["status_code"], line["response"]["body"])
    return out


# -- POST /v1/batch ---------------------------------------------------------------------
def test_twenty_prompts_complete_within_the_pool(gw: Gateway, upstream: FakeUpstream,
                                                 tokens: dict[str, str]) -> None:
    answering(upstream)
    requests = [{"custom_id": f"item-{i}", "body": chat_body(str(i))} for i in range(20)]
    other: dict[str, httpx.Response] = {}

    def someone_else() -> None:  # another key's request while the batch fills the pool
        time.sleep(0.5)
        other["response"] = httpx.post(
            gw.base_url + "/chat/completions", json=chat_body("bob"), timeout=60,
            headers={"Authorization": f"Bearer {tokens['bob']}"})

    bob = threading.Thread(target=someone_else)
    with watching(gw) as pool:
        bob.start()
        response = post_batch(gw, tokens["alice"], requests)
        bob.join(60)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "batch.result"
    assert body["counts"] == {"total": 20, "completed": 20, "failed": 0}
    assert [r["custom_id"] for r in body["results"]] == [f"item-{i}" for i in range(20)]
    for i, result in enumerate(body["results"]):
        assert result["status_code"] == 200
        validate(result["body"], "CreateChatCompletionResponse")
        assert result["body"]["choices"][0]["message"]["content"] == f"answer {i}"
    assert other["response"].status_code == 200  # it waited in the queue, no 429
    assert other["response"].json()["choices"][0]["message"]["content"] == "answer bob"
    assert 1 < pool["busy"] <= POOL
    assert pool["size"] <= POOL
    gw.wait_idle()


def test_a_bad_item_fails_alone_with_the_single_endpoints_error(
        gw: Gateway, upstream: FakeUpstream, tokens: dict[str, str]) -> None:
    answering(upstream, delay=0)
    bad_model = chat_body("x", model="gpt-nonexistent")
    bad_body = {"model": "sonnet", "messages": [{"role": "user", "content": 42}]}
    requests = [{"custom_id": "good-1", "body": chat_body("1")},
                {"custom_id": "bad-model", "body": bad_model},
                {"custom_id": "bad-body", "body": bad_body},
                {"custom_id": "streaming", "body": chat_body("s", stream=True)},
                {"custom_id": "elsewhere", "url": "/v1/embeddings", "body": chat_body("e")},
                {"custom_id": "good-2", "method": "POST", "url": "/v1/chat/completions",
                 "body": chat_body("2")}]
    body = post_batch(gw, tokens["alice"], requests).json()

    results = {r["custom_id"]: r for r in body["results"]}
    assert body["counts"] == {"total": 6, "completed": 2, "failed": 4}
    assert results["good-1"]["body"]["choices"][0]["message"]["content"] == "answer 1"
    assert results["good-2"]["body"]["choices"][0]["message"]["content"] == "answer 2"
    for custom_id, single_body in (("bad-model", bad_model), ("bad-body", bad_body)):
        single = httpx.post(gw.base_url + "/chat/completions", json=single_body, timeout=60,
                            headers={"Authorization": f"Bearer {tokens['alice']}"})
        assert results[custom_id]["status_code"] == single.status_code
        assert results[custom_id]["error"] == single.json()["error"]
        assert "body" not in results[custom_id]
    assert results["bad-model"]["status_code"] == 404
    assert results["bad-model"]["error"]["code"] == "model_not_found"
    assert results["bad-body"]["status_code"] == 400
    assert results["bad-body"]["error"]["param"] == "messages[0].content"
    assert results["streaming"]["status_code"] == 400
    assert results["streaming"]["error"]["param"] == "stream"
    assert results["elsewhere"]["status_code"] == 404
    assert results["elsewhere"]["error"]["param"] == "url"


def test_batch_shape_and_size_are_checked_up_front(gw: Gateway, upstream: FakeUpstream,
                                                   tokens: dict[str, str]) -> None:
    too_many = [{"custom_id": str(i), "body": chat_body(str(i))}
                for i in range(MAX_REQUESTS + 1)]
    response = post_batch(gw, tokens["alice"], too_many)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "requests"
    twice = [{"custom_id": "same", "body": chat_body("1")},
             {"custom_id": "same", "body": chat_body("2")}]
    response = post_batch(gw, tokens["alice"], twice)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "requests[1].custom_id"
    response = post_batch(gw, tokens["alice"], [])
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert not upstream.message_requests()  # nothing ran


def test_key_limits_apply_once_to_the_batch_and_per_item_to_its_turns(
        gw: Gateway, upstream: FakeUpstream, tokens: dict[str, str]) -> None:
    """`single` may make 2 requests a minute and run 1 at once: its batch of four is one
    request, runs one item at a time, and each item is charged in the ledger."""
    answering(upstream, delay=0.1)
    requests = [{"custom_id": f"s{i}", "body": chat_body(f"s{i}")} for i in range(4)]
    with watching(gw) as pool:
        body = post_batch(gw, tokens["single"], requests, max_concurrency=3).json()
    assert body["counts"]["completed"] == 4
    assert pool["busy"] == 1
    stats = httpx.get(gw.url + "/stats", timeout=10,
                      headers={"Authorization": f"Bearer {tokens['single']}"}).json()
    assert sum(row["requests"] for row in stats["key"]["usage"]) == 4

    mixed = [{"custom_id": "haiku", "body": chat_body("h", model="haiku")},
             {"custom_id": "sonnet", "body": chat_body("o", model="sonnet")}]
    results = post_batch(gw, tokens["haiku-only"], mixed).json()["results"]
    assert [r["status_code"] for r in results] == [200, 403]
    assert results[1]["error"]["param"] == "model"


def test_hanging_up_cancels_the_unfinished_items(gw: Gateway, upstream: FakeUpstream,
                                                 tokens: dict[str, str]) -> None:
    answering(upstream, delay=3)
    requests = [{"custom_id": f"h{i}", "body": chat_body(f"h{i}")} for i in range(12)]
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(gw.base_url + "/batch", json={"requests": requests}, timeout=1.5,
                   headers={"Authorization": f"Bearer {tokens['alice']}"})
    gw.wait_idle(timeout=20)
    started = len(upstream.message_requests())
    assert 0 < started <= POOL  # the first lane-full was interrupted, the rest never ran
    time.sleep(1)
    assert len(upstream.message_requests()) == started


# -- Files + Batches (the openai client) ---------------------------------------------
def test_file_batch_runs_in_the_background_with_output_and_error_files(
        gw: Gateway, upstream: FakeUpstream, tokens: dict[str, str]) -> None:
    answering(upstream, delay=0.1)
    api = gw.client(api_key=tokens["alice"])
    lines = [{"custom_id": f"f{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": chat_body(f"f{i}")} for i in range(6)]
    lines[4]["body"]["model"] = "gpt-nonexistent"
    uploaded = api.files.create(file=("requests.jsonl", jsonl(lines)), purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.filename == "requests.jsonl"
    assert uploaded.bytes == len(jsonl(lines))
    validate(uploaded.model_dump(exclude_none=True), "OpenAIFile")
    assert api.files.retrieve(uploaded.id).id == uploaded.id
    assert api.files.content(uploaded.id).content == jsonl(lines)

    batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                               completion_window="24h", metadata={"job": "nightly"})
    assert batch.status in ("validating", "in_progress")
    assert batch.metadata == {"job": "nightly"}
    done = wait_batch(api, batch.id, lambda b: b.status == "completed")

    raw = httpx.get(f"{gw.base_url}/batches/{batch.id}", timeout=10,
                    headers={"Authorization": f"Bearer {tokens['alice']}"}).json()
    validate(raw, "Batch")
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed,
            done.request_counts.failed) == (6, 5, 1)
    assert done.in_progress_at and done.completed_at and done.output_file_id
    outputs = answers(api.files.content(done.output_file_id).text)
    assert sorted(outputs) == ["f0", "f1", "f2", "f3", "f5"]
    for custom_id, (status, body) in outputs.items():
        assert status == 200
        assert body["choices"][0]["message"]["content"] == f"answer {custom_id}"
    assert done.error_file_id is not None
    errors = answers(api.files.content(done.error_file_id).text)
    assert errors["f4"][0] == 404
    assert errors["f4"][1]["error"]["code"] == "model_not_found"
    output_file = api.files.retrieve(done.output_file_id)
    assert output_file.purpose == "batch_output"

    assert batch.id in [b.id for b in api.batches.list()]
    listed = httpx.get(gw.base_url + "/batches", timeout=10,
                       headers={"Authorization": f"Bearer {tokens['alice']}"}).json()
    validate(listed, "ListBatchesResponse")
    with pytest.raises(openai.ConflictError):
        api.batches.cancel(batch.id)
    deleted = api.files.delete(uploaded.id)
    assert deleted.deleted
    with pytest.raises(openai.NotFoundError):
        api.files.retrieve(uploaded.id)


def test_another_key_cannot_see_files_or_batches(gw: Gateway, upstream: FakeUpstream,
                                                 tokens: dict[str, str]) -> None:
    answering(upstream, delay=0)
    alice, bob = gw.client(api_key=tokens["alice"]), gw.client(api_key=tokens["bob"])
    uploaded = alice.files.create(file=("mine.jsonl", jsonl([
        {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
         "body": chat_body("a")}])), purpose="batch")
    batch = alice.batches.create(input_file_id=uploaded.id,
                                 endpoint="/v1/chat/completions", completion_window="24h")
    for call in (lambda: bob.files.retrieve(uploaded.id),
                 lambda: bob.files.content(uploaded.id),
                 lambda: bob.files.delete(uploaded.id),
                 lambda: bob.batches.retrieve(batch.id),
                 lambda: bob.batches.cancel(batch.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    with pytest.raises(openai.NotFoundError):  # nor start a batch on alice's file
        bob.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                           completion_window="24h")
    assert batch.id not in [b.id for b in bob.batches.list()]
    assert uploaded.id not in [f.id for f in bob.files.list()]
    wait_batch(alice, batch.id, lambda b: b.status == "completed")


def test_cancel_stops_a_running_batch_and_keeps_what_was_done(
        gw: Gateway, upstream: FakeUpstream, tokens: dict[str, str]) -> None:
    answering(upstream, delay=0.5)
    api = gw.client(api_key=tokens["alice"])
    lines = [{"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": chat_body(f"c{i}")} for i in range(30)]
    uploaded = api.files.create(file=("many.jsonl", jsonl(lines)), purpose="batch")
    batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                               completion_window="24h")
    wait_batch(api, batch.id, lambda b: b.request_counts.completed >= 1)
    cancelling = api.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled")
    cancelled = wait_batch(api, batch.id, lambda b: b.status == "cancelled")
    assert cancelled.cancelled_at is not None and cancelled.cancelling_at is not None
    assert cancelled.request_counts.total == 30
    assert cancelled.request_counts.completed >= 1
    # Stopped at once: the items running then were interrupted, none started after.
    assert len(upstream.message_requests()) <= cancelling.request_counts.completed + POOL
    outputs = answers(api.files.content(cancelled.output_file_id).text)
    assert len(outputs) == cancelled.request_counts.completed
    assert all(body["choices"][0]["message"]["content"] == f"answer {cid}"
               for cid, (_, body) in outputs.items())
    gw.wait_idle(timeout=20)
    assert api.batches.cancel(batch.id).status == "cancelled"  # cancelling twice is fine


def test_bad_files_and_batch_requests_get_openai_errors(gw: Gateway,
                                                        tokens: dict[str, str]) -> None:
    api = gw.client(api_key=tokens["alice"])
    with pytest.raises(openai.BadRequestError) as bad:
        api.files.create(file=("x.jsonl", b"{}\n"), purpose="fine-tune")
    assert bad.value.body["param"] == "purpose"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        api.batches.create(input_file_id="file-missing", endpoint="/v1/chat/completions",
                           completion_window="24h")
    good = api.files.create(file=("ok.jsonl", jsonl([
        {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
         "body": chat_body("a")}])), purpose="batch")
    with pytest.raises(openai.BadRequestError):
        api.batches.create(input_file_id=good.id, endpoint="/v1/embeddings",
                           completion_window="24h")
    broken = api.files.create(file=("broken.jsonl", b'{"custom_id": "a", "body": {}}\nnot '
                                    b'json\n'), purpose="batch")
    batch = api.batches.create(input_file_id=broken.id, endpoint="/v1/chat/completions",
                               completion_window="24h")
    failed = wait_batch(api, batch.id, lambda b: b.status == "failed")
    assert failed.errors is not None and failed.errors.data
    assert failed.errors.data[0].line == 2
    assert failed.errors.data[0].code == "invalid_json_line"


def test_uploads_over_the_size_limit_get_413(gw: Gateway, tokens: dict[str, str]) -> None:
    api = gw.client(api_key=tokens["alice"])
    with pytest.raises(openai.APIStatusError) as too_big:
        api.files.create(file=("big.jsonl", b"x" * (MAX_FILE_BYTES + 1)), purpose="batch")
    assert too_big.value.status_code == 413
    assert too_big.value.body["code"] == "file_too_large"  # type: ignore[index]
    fits = api.files.create(file=("fits.jsonl", b"x" * MAX_FILE_BYTES), purpose="batch")
    assert fits.bytes == MAX_FILE_BYTES


def test_a_batch_running_when_the_server_stops_resumes_on_start(
        upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.reset()
    answering(upstream, delay=0.4)
    lines = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": chat_body(f"r{i}")} for i in range(9)]
    gateway = start_gateway(upstream, tmp_path, claude__max_concurrent_sessions="2")
    try:
        api = gateway.client()
        uploaded = api.files.create(file=("r.jsonl", jsonl(lines)), purpose="batch")
        batch = api.batches.create(input_file_id=uploaded.id,
                                   endpoint="/v1/chat/completions", completion_window="24h")
        wait_batch(api, batch.id, lambda b: b.request_counts.completed >= 1)
    finally:
        gateway.stop()
    gateway = start_gateway(upstream, tmp_path, claude__max_concurrent_sessions="2")
    try:
        api = gateway.client()
        assert api.files.retrieve(uploaded.id).filename == "r.jsonl"
        done = wait_batch(api, batch.id, lambda b: b.status == "completed")
        assert done.request_counts.completed == 9
        outputs = answers(api.files.content(done.output_file_id).text)
        assert {cid: body["choices"][0]["message"]["content"]
                for cid, (_, body) in outputs.items()} == {
            f"r{i}": f"answer r{i}" for i in range(9)}
    finally:
        gateway.stop()
    upstream.reset()
