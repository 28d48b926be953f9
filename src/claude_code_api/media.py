"""Images from clients, turned into Anthropic base64 image blocks, safely.

Dialects emit a placeholder ``{"type": "image", "source": {"type": "url", "url": ...},
"_param": ...}`` for every image (also inside tool results); ``MediaResolver.resolve``
replaces it with the image bytes or refuses with a 400 naming the param. Sources:

- ``data:`` URLs: decoded, size-checked, format sniffed;
- ``http(s)://``: fetched with a size and time limit. Every address a host
  resolves to must be public (no private, loopback, link-local, CGNAT, metadata
  or multicast address) unless the host is explicitly allowed; the connection
  goes to the address that was checked (no DNS rebinding), and redirects are
  followed only under the same rule;
- ``file://`` URLs and bare paths: refused unless ``media.allowed_local_dirs``
  names directories, and then only for files inside them after resolving links.

The model never sees a path: images always reach it as image blocks.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import socket
import ssl
import urllib.parse
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpcore

from .errors import InvalidRequest
from .events import Message, TurnRequest
from .settings import MediaSettings

_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
SUPPORTED = ("image/png", "image/jpeg", "image/gif", "image/webp")


def sniff(data: bytes) -> str | None:
    """The image type the bytes really are, or None."""
    for magic, media_type in _SIGNATURES:
        if data.startswith(magic):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def is_public(address: str) -> bool:
    """Whether an IP address is one the gateway may fetch from."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def image_placeholder(url: str, param: str) -> dict[str, Any]:
    return {"type": "image", "source": {"type": "url", "url": url}, "_param": param}


class _Refused(Exception):
    pass


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host itself, refuses non-public addresses, connects to the one
    it checked. TLS still verifies the certificate against the host name."""

    def __init__(self, allowed_hosts: Iterable[str]) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allowed = {h.lower() for h in allowed_hosts}

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port,
                                                                 type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):  # no such name, or no valid one (IDNA)
            infos = []
        addresses = [str(info[4][0]) for info in infos]
        if not addresses:
            raise _Refused(f"the host {host} does not resolve")
        if host.lower() not in self._allowed and not all(is_public(a) for a in addresses):
            raise _Refused(f"{host} resolves to a private or reserved address")
        return await self._inner.connect_tcp(addresses[0], port, timeout=timeout,
                                             local_address=local_address,
                                             socket_options=socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        raise _Refused("unix sockets are not fetched")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class MediaResolver:
    def __init__(self, settings: MediaSettings) -> None:
        self.settings = settings
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl.create_default_context(), max_connections=16,
            network_backend=_GuardedBackend(settings.allowed_hosts))

    async def close(self) -> None:
        await self._pool.aclose()

    async def resolve(self, request: TurnRequest) -> TurnRequest:
        if not any(_has_image(m.content) for m in (*request.history, Message("user",
                                                                             request.prompt))):
            return request
        history = tuple([Message(m.role, await self._blocks(m.content))
                         for m in request.history])
        return replace(request, history=history, prompt=await self._blocks(request.prompt))

    async def _blocks(self, blocks: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
        out = []
        for block in blocks:
            if block.get("type") == "image" and "_param" in block:
                block = await self._image(block["source"]["url"], block["_param"])
            elif _results_image(block):
                block = {**block, "content": list(await self._blocks(tuple(block["content"])))}
            out.append(block)
        return tuple(out)

    async def _image(self, url: str, param: str) -> dict[str, Any]:
        try:
            data, declared = await self._load(url)
        except _Refused as exc:
            raise InvalidRequest(f"image refused: {exc}", param=param) from None
        media_type = sniff(data)
        if media_type is None:
            raise InvalidRequest("image refused: the data is not a PNG, JPEG, GIF or WebP "
                                 "image", param=param)
        if declared and declared != media_type:
            raise InvalidRequest(f"image refused: declared {declared} but the data is "
                                 f"{media_type}", param=param)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type,
                                            "data": base64.b64encode(data).decode()}}

    async def _load(self, url: str) -> tuple[bytes, str | None]:
        try:
            scheme = urllib.parse.urlsplit(url).scheme.lower()
        except ValueError:  # e.g. an unclosed [ in the host
            raise _Refused("the URL is not valid") from None
        if scheme == "data":
            return self._data_url(url)
        if scheme in ("http", "https"):
            return await self._fetch(url)
        if scheme == "file" or (not scheme and url.startswith(("/", "~", "."))):
            return self._local(url), None
        raise _Refused("use a data: URL or an http(s) URL")

    def _data_url(self, url: str) -> tuple[bytes, str]:
        header, _, payload = url[len("data:"):].partition(",")
        parts = header.split(";")
        media_type = parts[0].lower()
        if media_type not in SUPPORTED:
            raise _Refused(f"data URL type {media_type or '(none)'} is not one of "
                           f"{', '.join(SUPPORTED)}")
        if "base64" not in parts[1:]:
            raise _Refused("data URLs must be base64-encoded")
        if len(payload) * 3 // 4 > self.settings.max_image_bytes:
            raise _Refused(f"larger than {self.settings.max_image_bytes} bytes")
        try:
            return base64.b64decode(payload, validate=True), media_type
        except (binascii.Error, ValueError):
            raise _Refused("the data URL is not valid base64") from None

    def _local(self, url: str) -> bytes:
        roots = [Path(d).expanduser().resolve() for d in self.settings.allowed_local_dirs]
        if not roots:
            raise _Refused("local files are not served (no media.allowed_local_dirs)")
        raw = urllib.parse.unquote(urllib.parse.urlsplit(url).path) if url.startswith(
            "file:") else url
        try:
            path = Path(raw).expanduser().resolve()  # links resolved before the check
            if not any(path.is_relative_to(root) for root in roots):
                raise _Refused("the file is outside media.allowed_local_dirs")
            if not path.is_file():
                raise _Refused("no such file")
            if path.stat().st_size > self.settings.max_image_bytes:
                raise _Refused(f"larger than {self.settings.max_image_bytes} bytes")
            return path.read_bytes()
        except (OSError, ValueError, RuntimeError):  # unreadable, a NUL, ~nosuchuser
            raise _Refused("the file cannot be read") from None

    async def _fetch(self, url: str) -> tuple[bytes, str | None]:
        try:
            return await asyncio.wait_for(self._follow(url), self.settings.fetch_timeout_seconds)
        except TimeoutError:
            raise _Refused(f"no answer within {self.settings.fetch_timeout_seconds:g} "
                           "seconds") from None
        except httpcore.ConnectError as exc:
            cause = exc.__context__
            if isinstance(cause, _Refused):
                raise cause from None
            raise _Refused("could not connect") from None
        except httpcore.TimeoutException:
            raise _Refused("the fetch timed out") from None
        except (httpcore.ProtocolError, httpcore.NetworkError, httpcore.UnsupportedProtocol,
                OSError):
            raise _Refused("the fetch failed") from None

    async def _follow(self, url: str) -> tuple[bytes, str | None]:
        for _ in range(self.settings.max_redirects + 1):
            _check_web_url(url)
            async with self._pool.stream("GET", url, headers={
                    "Accept": ", ".join(SUPPORTED), "User-Agent": "claude-code-api"}) as resp:
                headers = {k.decode().lower(): v.decode("latin-1") for k, v in resp.headers}
                if 300 <= resp.status < 400 and "location" in headers:
                    url = urllib.parse.urljoin(url, headers["location"])
                    continue
                if resp.status != 200:
                    raise _Refused(f"the server answered {resp.status}")
                declared = headers.get("content-type", "").split(";")[0].strip().lower()
                if declared not in SUPPORTED:
                    raise _Refused(f"content type {declared or '(none)'} is not an image "
                                   "type Claude reads")
                return await self._read(resp), declared
        raise _Refused("too many redirects")

    async def _read(self, response: httpcore.Response) -> bytes:
        data = bytearray()
        async for chunk in response.aiter_stream():
            data += chunk
            if len(data) > self.settings.max_image_bytes:
                raise _Refused(f"larger than {self.settings.max_image_bytes} bytes")
        return bytes(data)


def _check_web_url(url: str) -> None:
    """Refuse, with a reason, the URLs httpcore would fail on with a bare ValueError or
    TypeError (no host, a bad port, spaces, non-ASCII) instead of a network error."""
    if not url.isascii() or any(c <= " " or c == "\x7f" for c in url):
        raise _Refused("the URL must be ASCII without spaces or control characters "
                       "(percent-encode the path, write the host in punycode)")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018  (raises for a port that is not a number in range)
    except ValueError:
        raise _Refused("the URL is not valid") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise _Refused("redirects may only lead to http(s) URLs")
    if not parts.hostname:
        raise _Refused("the URL names no host")


def _has_image(blocks: tuple[dict[str, Any], ...]) -> bool:
    return any((b.get("type") == "image" and "_param" in b) or _results_image(b)
               for b in blocks)


def _results_image(block: dict[str, Any]) -> bool:
    """A tool result carrying images (Anthropic's tool_result content blocks)."""
    content = block.get("content")
    return block.get("type") == "tool_result" and isinstance(content, list) and \
        _has_image(tuple(c for c in content if isinstance(c, dict)))
