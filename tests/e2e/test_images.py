"""Images: delivered to Claude as image blocks, from data URLs, URLs and allowed files."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply, Served
from tests.conftest import Gateway, free_port, start_gateway

pytestmark = pytest.mark.e2e

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00"
       b"\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05"
       b"\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")
GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00"
       b"\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")


def ask(url: str, text: str = "What is in this image?") -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": text},
                                         {"type": "image_url", "image_url": {"url": url}}]}]


def images_seen(upstream: FakeUpstream) -> list[dict[str, Any]]:
    return [b for m in upstream.message_requests()[-1].messages if m["role"] == "user"
            and isinstance(m["content"], list) for b in m["content"] if b.get("type") == "image"]


def refused(gateway: Gateway, url: str) -> str:
    response = httpx.post(gateway.base_url + "/chat/completions", timeout=60,
                          json={"model": "sonnet", "messages": ask(url)})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "messages[0].content[1].image_url.url"
    assert error["type"] == "invalid_request_error"
    return str(error["message"])


def test_a_data_url_image_reaches_claude_as_an_image_block(client: openai.OpenAI,
                                                           upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("A single pixel."))
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    completion = client.chat.completions.create(model="sonnet", messages=ask(data_url))
    assert completion.choices[0].message.content == "A single pixel."
    [image] = images_seen(upstream)
    assert image["source"] == {"type": "base64", "media_type": "image/png",
                               "data": base64.b64encode(PNG).decode()}
    user_text = upstream.message_requests()[-1].last_user_text()
    assert "What is in this image?" in user_text


def test_images_in_earlier_turns_are_replayed(client: openai.OpenAI,
                                              upstream: FakeUpstream) -> None:
    data_url = "data:image/gif;base64," + base64.b64encode(GIF).decode()
    client.chat.completions.create(model="sonnet", messages=[
        *ask(data_url), {"role": "assistant", "content": "A photo."},
        {"role": "user", "content": "Which colours?"}])
    first_user = next(m for m in upstream.message_requests()[-1].messages if m["role"] == "user")
    assert any(b.get("type") == "image" and b["source"]["media_type"] == "image/gif"
               for b in first_user["content"])


@pytest.mark.parametrize(("url", "phrase"), [
    ("data:image/png;base64,not-base64!!", "not valid base64"),
    ("data:text/html;base64,PGh0bWw+", "not one of"),
    ("data:image/png;base64," + base64.b64encode(b"<html>").decode(), "not a PNG"),
    ("data:image/gif;base64," + base64.b64encode(PNG).decode(), "declared image/gif"),
    ("file:///etc/passwd", "local files are not served"),
    ("/etc/hostname", "local files are not served"),
    ("ftp://example.com/a.png", "data: URL or an http(s) URL"),
    ("http://169.254.169.254/latest/meta-data/", "private or reserved"),
    ("http://[::1]:9/x.png", "private or reserved"),
])
def test_unsafe_or_invalid_image_sources_are_refused(gateway: Gateway, url: str,
                                                     phrase: str) -> None:
    assert phrase in refused(gateway, url)


def test_a_loopback_url_is_refused_even_when_it_serves_an_image(gateway: Gateway,
                                                                upstream: FakeUpstream) -> None:
    upstream.files["pixel.png"] = Served(PNG)
    assert "private or reserved" in refused(gateway, f"{upstream.url}/files/pixel.png")
    assert upstream.fetched == []  # refused before any connection


@pytest.fixture(scope="module")
def fetching_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fetching")


@pytest.fixture(scope="module")
def fetching_server(upstream: FakeUpstream, fetching_root: Path) -> Iterator[Gateway]:
    """Allows the loopback test server by name, as an operator could for an internal host,
    and one local directory."""
    tmp_path = fetching_root
    (tmp_path / "allowed").mkdir()
    gateway = start_gateway(upstream, tmp_path, media__allowed_hosts='["127.0.0.1"]',
                            media__allowed_local_dirs=f'["{tmp_path / "allowed"}"]',
                            media__max_image_bytes="4096", media__fetch_timeout_seconds="1")
    gateway.wait_idle()
    yield gateway
    gateway.stop()


@pytest.fixture
def fetching_gateway(fetching_server: Gateway, upstream: FakeUpstream) -> Gateway:
    upstream.reset()
    fetching_server.wait_idle()
    return fetching_server


def test_an_http_image_is_fetched_and_sent_as_bytes(fetching_gateway: Gateway,
                                                    upstream: FakeUpstream) -> None:
    upstream.files["pixel.png"] = Served(PNG)
    upstream.files["moved"] = Served(status=302, location="/files/pixel.png")
    upstream.script(Reply.text("Fetched."))
    completion = fetching_gateway.client().chat.completions.create(
        model="sonnet", messages=ask(f"{upstream.url}/files/moved"))
    assert completion.choices[0].message.content == "Fetched."
    [image] = images_seen(upstream)
    assert base64.b64decode(image["source"]["data"]) == PNG
    assert upstream.fetched == ["moved", "pixel.png"]


@pytest.mark.parametrize(("served", "phrase"), [
    (Served(b"<html>hi</html>", content_type="text/html"), "content type text/html"),
    (Served(PNG + b"\x00" * 5000), "larger than 4096 bytes"),
    (Served(PNG, delay=3), "within 1 seconds"),
    (Served(status=404), "answered 404"),
    (Served(status=302, location="http://localhost:9/x.png"), "private or reserved"),
    (Served(status=302, location="http://169.254.169.254/"), "private or reserved"),
    (Served(status=302, location="file:///etc/passwd"), "only lead to http(s)"),
])
def test_fetch_limits_and_redirect_rules(fetching_gateway: Gateway, upstream: FakeUpstream,
                                         served: Served, phrase: str) -> None:
    upstream.files["thing"] = served
    assert phrase in refused(fetching_gateway, f"{upstream.url}/files/thing")


def test_files_inside_allowed_dirs_only(fetching_gateway: Gateway, upstream: FakeUpstream,
                                        fetching_root: Path) -> None:
    tmp_path = fetching_root
    allowed = tmp_path / "allowed"
    (allowed / "ok.png").write_bytes(PNG)
    (tmp_path / "secret.png").write_bytes(PNG)
    (allowed / "sneaky.png").symlink_to(tmp_path / "secret.png")
    upstream.script(Reply.text("Local file read."))
    completion = fetching_gateway.client().chat.completions.create(
        model="sonnet", messages=ask(f"file://{allowed / 'ok.png'}"))
    assert completion.choices[0].message.content == "Local file read."
    assert "outside" in refused(fetching_gateway, f"file://{allowed / 'sneaky.png'}")
    assert "outside" in refused(fetching_gateway, str(allowed / ".." / "secret.png"))
    assert "outside" in refused(fetching_gateway, "/etc/hostname")


def test_a_host_that_refuses_the_connection_is_a_400(fetching_gateway: Gateway) -> None:
    assert "could not connect" in refused(fetching_gateway,
                                          f"http://127.0.0.1:{free_port()}/x.png")
