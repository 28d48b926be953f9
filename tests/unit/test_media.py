"""Pure checks behind image fetching: address classes and format sniffing."""

from __future__ import annotations

from pathlib import Path

import pytest

from claude_code_api.errors import InvalidRequest
from claude_code_api.events import TurnRequest
from claude_code_api.media import MediaResolver, image_placeholder, is_public, sniff
from claude_code_api.settings import MediaSettings

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
    "100.64.0.1", "0.0.0.0", "224.0.0.1", "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1",
    "::ffff:10.0.0.1", "fe80::1%eth0",
])
def test_private_reserved_and_metadata_addresses_are_refused(address: str) -> None:
    assert not is_public(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888",
                                     "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_public(address)


def test_sniff_knows_the_four_formats_and_nothing_else() -> None:
    assert sniff(PNG) == "image/png"
    assert sniff(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert sniff(b"GIF89a...") == "image/gif"
    assert sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff(b"<html>") is None
    assert sniff(b"") is None


@pytest.mark.parametrize(("url", "phrase"), [
    ("http://no-such-host.invalid/x.png", "no-such-host.invalid does not resolve"),
    ("http://a..b.invalid/x.png", "does not resolve"),
    ("http://" + "a" * 64 + ".invalid/x.png", "does not resolve"),
    ("http://[::1/x.png", "not valid"),
    ("http://example.invalid:99999/x.png", "not valid"),
    ("http://example.invalid:port/x.png", "not valid"),
    ("http:///x.png", "names no host"),
    ("http://user:pw@/x.png", "names no host"),
    ("http://exa mple.invalid/x.png", "ASCII without spaces"),
    ("http://exämple.invalid/x.png", "ASCII without spaces"),
    ("http://example.invalid/a\nb", "ASCII without spaces"),
])
async def test_urls_that_cannot_be_fetched_are_a_400_naming_the_image(url: str,
                                                                      phrase: str) -> None:
    resolver = MediaResolver(MediaSettings(fetch_timeout_seconds=5))
    turn = TurnRequest(model="sonnet", prompt=(image_placeholder(url, "input[0].image"),))
    try:
        with pytest.raises(InvalidRequest) as caught:
            await resolver.resolve(turn)
    finally:
        await resolver.close()
    assert caught.value.param == "input[0].image"
    assert phrase in caught.value.message


async def test_local_files_that_cannot_be_read_are_a_400(tmp_path: Path) -> None:
    resolver = MediaResolver(MediaSettings(allowed_local_dirs=[tmp_path]))
    for url in (f"{tmp_path}/a\x00b.png", "~no-such-user-here/x.png"):
        turn = TurnRequest(model="sonnet", prompt=(image_placeholder(url, "p"),))
        with pytest.raises(InvalidRequest):
            await resolver.resolve(turn)
    await resolver.close()
