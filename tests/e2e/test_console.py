"""The web console at /ui, in a real browser (Debian's Chromium, headless, driven by
Playwright) against a real gateway whose CLIs talk to the fake upstream: what an
operator sees when signing in, chatting, making a key, reading usage and the pool."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply, Text, Thinking, ToolUse
from tests.conftest import Gateway, offered_schema, settled, structured, team_gateway

pytestmark = pytest.mark.e2e

# Debian's Chromium in its headless shell (chromium-headless-shell, which scripts/test
# installs when it can): the browser Playwright itself runs headless tests in. A page
# load and screenshot takes it a third of the CPU the full browser takes in headless
# mode (this module: 34 against 57 CPU seconds). The full browser where it is missing.
CHROMIUM = next((path for path in ("/usr/bin/chromium-headless-shell", "/usr/bin/chromium")
                 if Path(path).exists()), "/usr/bin/chromium-headless-shell")
# Where the README's screenshots come from: `CCA_SCREENSHOTS=docs/console pytest ...`.
SHOTS = os.environ.get("CCA_SCREENSHOTS")
WIDE = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00"
       b"\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05"
       b"\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")


@pytest.fixture(scope="module")
def team(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[Gateway, dict[str, str]]]:
    keys = {"ops": ("--admin",), "app": ()}
    yield from team_gateway(upstream, tmp_path_factory.mktemp("console"), keys,
                            auth__required="true")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "the browser tests need Debian's Chromium " \
        "(apt-get install chromium-headless-shell, or chromium; scripts/test installs it)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, gw: Gateway, tmp_path: Path,
         request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh tab (its own session storage) with the console open, and a screenshot
    of where it ended (in the test's temp dir)."""
    context = browser.new_context(viewport=WIDE, accept_downloads=True)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: problems.append(str(e)))
    tab.goto(gw.url + "/ui")
    yield tab
    tab.screenshot(path=str(tmp_path / f"{request.node.name}.png"), full_page=True)
    context.close()
    # A CSP violation or a script error is a console error: none may happen.
    assert not [p for p in problems if "401" not in p and "403" not in p], problems


def sign_in(page: Page, key: str) -> None:
    page.get_by_label("Admin key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation", name="Console")).to_be_visible()


def shot(page: Page, name: str) -> None:
    """One of the README's screenshots, when asked for (see SHOTS)."""
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"))


def finished(page: Page) -> Any:
    """The assistant's answers that are complete (not the one still streaming)."""
    return page.locator(".msg.assistant:not(.streaming) .answer")


def admin_get(gw: Gateway, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(gw.url + path, headers=headers, timeout=30)


# -- serving and access ------------------------------------------------------------------
def test_page_is_public_under_a_strict_policy_and_the_api_needs_an_admin_key(
        gw: Gateway, tokens: dict[str, str]) -> None:
    page = httpx.get(gw.url + "/ui", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self' 'sha256-" in policy
    assert "unsafe" not in policy and "frame-ancestors 'none'" in policy
    script = httpx.get(gw.url + "/ui/static/js/main.js", timeout=30)
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    # Only the files of the table: no path reaches the file system.
    assert httpx.get(gw.url + "/ui/static/js/..%2F..%2Frouter.py", timeout=30).status_code == 404
    assert httpx.get(gw.url + "/ui/static/nothing.js", timeout=30).status_code == 404

    anonymous = admin_get(gw, "/ui/api/keys", None)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "missing_api_key"
    ordinary = admin_get(gw, "/ui/api/keys", tokens["app"])
    assert ordinary.status_code == 403 and "not an admin key" in ordinary.json()["error"]["message"]
    listing = admin_get(gw, "/ui/api/keys", tokens["ops"])
    assert listing.status_code == 200
    names = {k["name"]: k for k in listing.json()["data"]}
    assert names["ops"]["admin"] is True and names["app"]["admin"] is False
    # No stored key comes back, not even its hash.
    assert tokens["app"] not in listing.text and "secret" not in listing.text
    # The console's routes are not part of the public API's schema.
    assert not [p for p in httpx.get(gw.url + "/openapi.json").json()["paths"]
                if p.startswith("/ui")]


def test_the_admin_api_answers_mistakes_with_clear_errors(gw: Gateway,
                                                         tokens: dict[str, str]) -> None:
    auth = {"Authorization": f"Bearer {tokens['ops']}"}

    def call(method: str, path: str, **kw: Any) -> httpx.Response:
        kw["headers"] = {**auth, **kw.get("headers", {})}
        return httpx.request(method, gw.url + "/ui/api" + path, timeout=30, **kw)

    cases = [
        (call("POST", "/keys", content=b"{not json",
              headers={"Content-Type": "application/json"}), 400, ""),
        (call("POST", "/keys", json={"name": ""}), 400, "name"),
        (call("POST", "/keys", json={"name": "x", "rpm": -1}), 400, "rpm"),
        (call("POST", "/keys", json={"name": "x", "colour": "red"}), 400, "colour"),
        (call("POST", "/keys", json={"name": "app"}), 409, "exists"),
        (call("POST", "/keys/000000000000", json={"rpm": 1}), 404, "no active key"),
        (call("DELETE", "/keys/000000000000"), 404, "no active key"),
        (call("DELETE", "/keys/" + key_id(gw, tokens["ops"])), 400, "signed in with"),
        (call("GET", "/usage?since=yesterday"), 400, "YYYY-MM-DD"),
        (call("GET", "/conversations?limit=many"), 400, "limit"),
        (call("GET", "/conversations?since=2026-1-1"), 400, "YYYY-MM-DD"),
        (call("GET", "/conversations/conv_missing"), 404, "not found"),
        (call("DELETE", "/conversations/conv_missing"), 404, "not found"),
    ]
    for response, status, words in cases:
        assert response.status_code == status, (response.request.url, response.text)
        error = response.json()["error"]
        assert words in error["message"] + str(error.get("param")), error
    # Nothing of those changed a key.
    names = [k["name"] for k in call("GET", "/keys").json()["data"]]
    assert "x" not in names and names.count("app") == 1


def test_on_loopback_without_auth_the_console_needs_no_key(browser: Browser,
                                                          gateway: Gateway) -> None:
    assert admin_get(gateway, "/ui/api/session", None).json()["admin"] is None
    # A page on a rebound DNS name reaches the same socket: it is refused.
    rebound = httpx.get(gateway.url + "/ui/api/keys", headers={"Host": "evil.example:80"},
                        timeout=30)
    assert rebound.status_code == 403
    context = browser.new_context(viewport=WIDE)
    tab = context.new_page()
    tab.goto(gateway.url + "/ui#/keys")
    expect(tab.get_by_role("heading", name="Keys")).to_be_visible()
    expect(tab.get_by_text("loopback, no key")).to_be_visible()
    context.close()


def test_sign_in_refuses_a_key_that_is_not_an_admin_key(page: Page,
                                                       tokens: dict[str, str]) -> None:
    expect(page.get_by_label("Admin key")).to_be_visible()
    page.get_by_label("Admin key").fill(tokens["app"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not an admin key")
    sign_in(page, tokens["ops"])
    expect(page.get_by_role("heading", name="Playground")).to_be_visible()
    # Kept for this tab only, never as a cookie.
    assert page.context.cookies() == []
    assert page.evaluate("Object.values(sessionStorage)") == [tokens["ops"]]


# -- the playground ------------------------------------------------------------------
ANSWER = ("Claude Code answers through the gateway, one word after another, so that "
          "the page can show the text growing while it streams.")


def answer_lengths_while_streaming(page: Page) -> list[int]:
    """The answer's length, read repeatedly until the stream ends."""
    writing = page.locator(".msg.assistant.streaming .answer")
    expect(writing).to_be_visible()
    seen = []
    while writing.count():
        try:
            seen.append(len(writing.inner_text(timeout=1000)))
        except Exception:  # the streaming message was replaced by the finished one
            break
        time.sleep(0.05)
    return seen


@pytest.mark.parametrize("dialect", ["Chat Completions", "Responses", "Messages (Anthropic)"])
def test_playground_streams_an_answer(page: Page, gw: Gateway, tokens: dict[str, str],
                                      upstream: FakeUpstream, dialect: str) -> None:
    sign_in(page, tokens["ops"])
    upstream.script(Reply.text(ANSWER, chunk_delay=0.08))
    page.get_by_label("Dialect").select_option(label=dialect)
    page.get_by_label("System prompt").fill("Be brief.")
    page.get_by_label("Message", exact=True).fill("How do you answer?")
    page.get_by_role("button", name="Send").click()
    lengths = answer_lengths_while_streaming(page)
    growing = sorted({n for n in lengths if 0 < n < len(ANSWER)})
    assert len(growing) >= 3, f"the text did not grow while streaming: {lengths}"
    answer = finished(page).last
    expect(answer).to_have_text(ANSWER)
    assert upstream.message_requests()[-1].system_text.endswith("Be brief.")

    page.get_by_text("Request and response").click()
    code = page.get_by_role("tabpanel")
    expect(code).to_contain_text('"How do you answer?"')
    page.get_by_role("tab", name="Response").click()
    expect(code).to_contain_text("HTTP 200")
    page.get_by_role("tab", name="curl").click()
    expect(code).to_contain_text(f"curl -N {gw.url}/v1/")
    expect(code).to_contain_text("$CLAUDE_CODE_API_KEY")
    page.get_by_role("tab", name="Python").click()
    expect(code).to_contain_text("os.environ[\"CLAUDE_CODE_API_KEY\"]")
    # The key is never written into the page.
    assert tokens["ops"] not in page.content()
    if dialect == "Chat Completions":
        shot(page, "playground")


def test_stop_ends_the_turn_and_frees_its_worker(page: Page, gw: Gateway,
                                                 tokens: dict[str, str],
                                                 upstream: FakeUpstream) -> None:
    sign_in(page, tokens["ops"])
    upstream.script(Reply.text("word " * 200, chunk_delay=0.1))
    page.get_by_label("Message", exact=True).fill("Talk for a long time")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".msg.assistant.streaming .answer")).to_contain_text("word word")
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    expect(page.get_by_role("alert")).to_have_count(0)  # stopping is not an error
    # The gateway saw the hang-up and ended the turn; no CLI process is left over.
    gw.wait_for(lambda h: settled(h) and len(gw.cli_processes()) == h["pool"]["size"],
                timeout=30)


def test_playground_continues_the_conversation(page: Page, tokens: dict[str, str],
                                               upstream: FakeUpstream) -> None:
    sign_in(page, tokens["ops"])
    upstream.script(Reply.text("First answer."), Reply.text("Second answer."))
    page.get_by_label("Message", exact=True).fill("one")
    page.get_by_role("button", name="Send").click()
    expect(finished(page).last).to_have_text("First answer.")
    page.get_by_label("Message", exact=True).fill("two")
    page.get_by_label("Message", exact=True).press("Control+Enter")
    expect(finished(page).last).to_have_text("Second answer.")
    sent = upstream.message_requests()[-1].messages
    assert "First answer." in json.dumps(sent) and "two" in json.dumps(sent[-1])


@pytest.mark.parametrize("dialect", ["Responses", "Messages (Anthropic)"])
def test_reasoning_is_shown_apart_from_the_answer(page: Page, tokens: dict[str, str],
                                                  upstream: FakeUpstream, dialect: str) -> None:
    sign_in(page, tokens["ops"])
    upstream.script(Reply(blocks=[Thinking("Weighing the options first."),
                                  Text("The answer is 42.")]))
    page.get_by_label("Dialect").select_option(label=dialect)
    page.get_by_label("Message", exact=True).fill("What is the answer?")
    page.get_by_role("button", name="Send").click()
    expect(finished(page).last).to_have_text("The answer is 42.")
    reasoning = page.locator(".msg.assistant .reasoning").last
    reasoning.get_by_text("Reasoning").click()
    expect(reasoning).to_contain_text("Weighing the options first.")


CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
        "additionalProperties": False}


def test_a_structured_output_schema_shapes_the_answer(page: Page, tokens: dict[str, str],
                                                      upstream: FakeUpstream) -> None:
    sign_in(page, tokens["ops"])
    upstream.script(structured({"city": "Paris"}))
    page.get_by_label("Structured output").fill(json.dumps(CITY))
    page.get_by_label("Max tokens").fill("300")
    page.get_by_label("Message", exact=True).fill("Which city has the Louvre?")
    page.get_by_role("button", name="Send").click()
    expect(finished(page)).to_have_count(1)
    assert json.loads(finished(page).last.inner_text()) == {"city": "Paris"}
    assert offered_schema(upstream)["properties"] == CITY["properties"]
    page.get_by_text("Request and response").click()
    request = json.loads(page.get_by_role("tabpanel").inner_text().split("\n", 2)[2])
    assert request["response_format"]["json_schema"]["schema"] == CITY
    assert request["max_completion_tokens"] == 300


def test_an_attached_image_reaches_claude(page: Page, tokens: dict[str, str],
                                          upstream: FakeUpstream) -> None:
    sign_in(page, tokens["ops"])
    upstream.script(Reply.text("A single pixel."))
    page.get_by_label("Attach images").set_input_files(
        files=[{"name": "pixel.png", "mimeType": "image/png", "buffer": PNG}])
    expect(page.get_by_role("img", name="attachment 1")).to_be_visible()
    page.get_by_label("Message", exact=True).fill("What is in this image?")
    page.get_by_role("button", name="Send").click()
    expect(finished(page).last).to_have_text("A single pixel.")
    expect(page.get_by_role("img", name="image 1")).to_be_visible()  # in the transcript
    last_user = [m for m in upstream.message_requests()[-1].messages if m["role"] == "user"][-1]
    [image] = [b for b in last_user["content"] if b.get("type") == "image"]
    assert image["source"]["data"] == base64.b64encode(PNG).decode()


WEATHER = [{"name": "get_weather", "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]}}]


@pytest.mark.parametrize("dialect", ["Chat Completions", "Responses", "Messages (Anthropic)"])
def test_a_tool_call_is_answered_from_the_page(page: Page, tokens: dict[str, str],
                                               upstream: FakeUpstream, dialect: str) -> None:
    sign_in(page, tokens["ops"])
    page.get_by_label("Dialect").select_option(label=dialect)
    upstream.script(Reply(blocks=[Text("Let me check."),
                                  ToolUse("get_weather", {"city": "Paris"}, id="toolu_w1")],
                          stop_reason="tool_use"),
                    Reply.text("It is sunny in Paris."))
    page.get_by_label("Tools").fill(json.dumps(WEATHER))
    page.get_by_label("Message", exact=True).fill("Weather in Paris?")
    page.get_by_role("button", name="Send").click()
    cards = page.get_by_role("form", name="Answer the tool calls")
    expect(cards).to_contain_text("get_weather")
    expect(cards).to_contain_text('"city": "Paris"')
    if dialect == "Chat Completions":
        shot(page, "tool-call")
    page.get_by_label("Result of get_weather").fill("sunny, 21C")
    page.get_by_role("button", name="Send tool results").click()
    expect(finished(page).last).to_have_text("It is sunny in Paris.")
    expect(cards).to_have_count(0)
    last_user = [m for m in upstream.message_requests()[-1].messages if m["role"] == "user"][-1]
    results = [b for b in last_user["content"] if b.get("type") == "tool_result"]
    assert results and results[0]["tool_use_id"] == "toolu_w1"
    assert "sunny, 21C" in json.dumps(results[0]["content"])


def test_a_bad_tools_list_is_explained_and_nothing_is_sent(page: Page, tokens: dict[str, str],
                                                           upstream: FakeUpstream) -> None:
    sign_in(page, tokens["ops"])
    page.get_by_label("Tools").fill("[{not json")
    page.get_by_label("Message", exact=True).fill("hi")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("alert")).to_have_text("The tools are not valid JSON.")
    assert upstream.message_requests() == []


# -- keys and usage ------------------------------------------------------------------
def test_a_key_is_created_used_shown_in_usage_revoked_and_refused(
        page: Page, gw: Gateway, tokens: dict[str, str], upstream: FakeUpstream,
        tmp_path: Path) -> None:
    sign_in(page, tokens["ops"])
    page.get_by_role("link", name="Keys").click()
    page.get_by_text("Create a key").click()
    page.get_by_label("Name").fill("web-client")
    page.get_by_label("Requests per minute").fill("30")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label("New key value")
    expect(secret).to_contain_text("sk-cca-")
    token = secret.inner_text().strip()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gw.url)
    page.get_by_role("button", name="Copy key").click()
    expect(page.get_by_role("region", name="New key").get_by_role("status")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == token
    expect(page.get_by_role("row", name="web-client")).to_contain_text("30/min")
    page.get_by_role("button", name="Done").click()
    expect(secret).to_have_count(0)

    page.get_by_role("button", name="Limits of web-client").click()
    editor = page.locator("tr.edit")
    editor.get_by_label("Requests per minute").fill("")  # emptied: no limit
    editor.get_by_label("Concurrent requests").fill("2")
    editor.get_by_label("Models").fill("sonnet")
    editor.get_by_role("button", name="Save limits").click()
    row = page.get_by_role("row", name="web-client")
    expect(row).to_contain_text("2 at once · models: sonnet")
    expect(row).not_to_contain_text("/min")
    # The signed-in key cannot be revoked from its own console.
    expect(page.get_by_role("button", name="Revoke ops")).to_have_count(0)
    shot(page, "keys")

    upstream.script(Reply.text("Hello from the new key.", input_tokens=120, output_tokens=7))
    client = gw.client(api_key=token)
    reply = client.chat.completions.create(model="sonnet",
                                           messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "Hello from the new key."
    with pytest.raises(openai.PermissionDeniedError):  # the limits set on the page hold
        client.chat.completions.create(model="haiku",
                                       messages=[{"role": "user", "content": "hi"}])

    page.get_by_role("link", name="Usage").click()
    row = page.get_by_role("row").filter(has_text="web-client")
    expect(row).to_contain_text("sonnet")
    expect(row.get_by_role("cell").nth(3)).to_have_text("1")  # requests
    expect(row.get_by_role("cell").nth(4)).to_have_text("120")  # input tokens
    expect(page.get_by_role("img", name="Cost per day (USD), by key")).to_be_visible()
    page.get_by_label("Key", exact=True).select_option(label="web-client")
    expect(page.get_by_role("row")).to_have_count(2)  # the header and its one row
    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").click()
    csv_path = tmp_path / "usage.csv"
    download.value.save_as(csv_path)
    header, *lines = csv_path.read_text().splitlines()
    assert header.startswith("day,key_id,key_name,model,requests")
    assert len(lines) == 1 and ",web-client,claude-sonnet-5-5,1,0,120,7," in lines[0]
    shot(page, "usage")

    page.get_by_role("link", name="Keys").click()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke web-client").click()
    expect(page.get_by_role("row", name="web-client")).to_contain_text("revoked")
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="sonnet",
                                       messages=[{"role": "user", "content": "again"}])
    client.close()
    # The key was shown once: a new visit of the page never shows it again.
    page.reload()
    expect(page.get_by_role("heading", name="Keys")).to_be_visible()
    assert token not in page.content()


# -- live ------------------------------------------------------------------
def test_the_live_view_shows_a_worker_become_busy_and_idle(
        page: Page, gw: Gateway, tokens: dict[str, str], upstream: FakeUpstream) -> None:
    sign_in(page, tokens["ops"])
    page.get_by_role("link", name="Live").click()
    expect(page.get_by_role("status")).to_have_text("live")
    workers = page.get_by_role("table", name="Workers")
    expect(workers.get_by_text("idle").first).to_be_visible()
    expect(workers.get_by_text("busy")).to_have_count(0)

    upstream.script(Reply.text("slow answer " * 10, first_delay=1.5, chunk_delay=0.05))
    done: list[Any] = []
    caller = threading.Thread(target=lambda: done.append(httpx.post(
        gw.base_url + "/chat/completions", timeout=60,
        headers={"Authorization": f"Bearer {tokens['app']}"},
        json={"model": "sonnet", "messages": [{"role": "user", "content": "slow"}]})))
    caller.start()
    expect(workers.get_by_text("busy")).to_have_count(1, timeout=15000)
    shot(page, "live")
    caller.join(60)
    assert done and done[0].status_code == 200
    expect(workers.get_by_text("busy")).to_have_count(0, timeout=15000)
    # The worker keeps the conversation warm for its next turn, and says which.
    expect(workers).to_contain_text(done[0].headers["x-conversation-id"])
    recent = page.get_by_role("table", name="Recent requests")
    expect(recent.get_by_role("row").filter(has_text="POST /v1/chat/completions").first
           ).to_contain_text("200")
    expect(recent.get_by_role("row").filter(has_text="POST /v1/chat/completions").first
           ).to_contain_text("app")


def test_the_live_view_shows_a_batch_progress(page: Page, gw: Gateway,
                                              tokens: dict[str, str],
                                              upstream: FakeUpstream) -> None:
    sign_in(page, tokens["ops"])
    page.get_by_role("link", name="Live").click()
    upstream.responder = lambda seen: Reply.text("item done", first_delay=1.0)
    lines = [{"custom_id": f"item-{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "sonnet", "messages": [{"role": "user", "content": f"n{i}"}]}}
             for i in range(3)]
    api = gw.client(api_key=tokens["app"])
    uploaded = api.files.create(purpose="batch", file=(
        "requests.jsonl", "".join(json.dumps(line) + "\n" for line in lines).encode()))
    batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                               completion_window="24h")
    row = page.get_by_role("table", name="Batches").get_by_role("row").filter(has_text=batch.id)
    expect(row).to_contain_text("app")
    expect(row).to_contain_text("in_progress", timeout=15000)
    expect(row).to_contain_text("completed", timeout=30000)
    expect(row).to_contain_text("3 of 3")
    assert row.get_by_role("progressbar").get_attribute("value") == "3"
    api.close()


# -- conversations ------------------------------------------------------------------
def test_conversations_are_listed_read_continued_and_deleted(
        page: Page, gw: Gateway, tokens: dict[str, str], upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("Bonjour, Marie."))
    httpx.post(gw.base_url + "/chat/completions", timeout=60,
               headers={"Authorization": f"Bearer {tokens['app']}"},
               json={"model": "sonnet", "messages": [
                   {"role": "user", "content": "Say hello to Marie in French"}]}
               ).raise_for_status()
    sign_in(page, tokens["ops"])
    page.get_by_role("link", name="Conversations").click()
    row = page.get_by_role("row").filter(has_text="Say hello to Marie in French")
    expect(row).to_contain_text("app")
    page.get_by_label("Key", exact=True).select_option(label="ops")
    expect(row).to_have_count(0)
    page.get_by_label("Key", exact=True).select_option(label="app")
    row.get_by_role("button", name="Say hello to Marie in French", exact=True).click()
    reader = page.get_by_role("article")
    expect(reader).to_contain_text("Bonjour, Marie.")
    shot(page, "conversations")

    reader.get_by_role("button", name="Continue in playground").click()
    expect(page.get_by_role("heading", name="Playground")).to_be_visible()
    expect(finished(page)).to_have_text("Bonjour, Marie.")
    upstream.script(Reply.text("Au revoir, Marie."))
    page.get_by_label("Message", exact=True).fill("Now goodbye")
    page.get_by_role("button", name="Send").click()
    expect(finished(page).last).to_have_text("Au revoir, Marie.")
    assert "Bonjour, Marie." in json.dumps(upstream.message_requests()[-1].messages)

    # The continued conversation is the admin's own now; the app's stays the app's.
    page.get_by_role("link", name="Conversations").click()
    expect(row).to_have_count(2)
    page.get_by_label("Key", exact=True).select_option(label="app")
    expect(row).to_have_count(1)
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Delete Say hello to Marie in French").click()
    expect(row).to_have_count(0)
    stored = admin_get(gw, "/ui/api/conversations?key=" + key_id(gw, tokens["app"]),
                       tokens["ops"]).json()["data"]
    assert "Say hello to Marie in French" not in [c["title"] for c in stored]


def key_id(gw: Gateway, token: str) -> str:
    return token.split("-")[2]


# -- a phone's width ------------------------------------------------------------------------
@pytest.mark.parametrize("section", ["playground", "keys", "usage", "live", "conversations"])
def test_every_page_fits_a_phone(browser: Browser, gw: Gateway, tokens: dict[str, str],
                                 tmp_path: Path, section: str) -> None:
    context = browser.new_context(viewport=PHONE)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda e: problems.append(str(e)))
    tab.goto(gw.url + "/ui#/" + section)
    sign_in(tab, tokens["ops"])
    expect(tab.get_by_role("heading", level=1)).to_be_visible()
    tab.wait_for_load_state("networkidle") if section != "live" else time.sleep(0.5)
    overflow = tab.evaluate("document.documentElement.scrollWidth")
    tab.screenshot(path=str(tmp_path / f"phone-{section}.png"), full_page=True)
    if section == "playground":
        shot(tab, "phone-playground")
    context.close()
    assert overflow <= PHONE["width"], f"{section} is {overflow}px wide on a phone"
    assert not problems

