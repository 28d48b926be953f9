"""The console's seams: the loopback host check, the page's policy hash, its files."""

from __future__ import annotations

import base64
import hashlib
import re

from claude_code_api.console import router
from claude_code_api.console.access import _host_name


def test_host_names_without_their_port() -> None:
    assert _host_name("127.0.0.1:8080") == "127.0.0.1"
    assert _host_name("localhost") == "localhost"
    assert _host_name("[::1]:8080") == "[::1]"
    assert _host_name("evil.example:80") == "evil.example"
    assert _host_name("") == ""


def test_the_policy_allows_exactly_the_pages_import_map() -> None:
    [importmap] = re.findall(rb'<script type="importmap">(.*?)</script>', router._PAGE, re.S)
    digest = base64.b64encode(hashlib.sha256(importmap).digest()).decode()
    script_src = next(d for d in router.CSP.split("; ") if d.startswith("script-src"))
    assert script_src == f"script-src 'self' 'sha256-{digest}'"
    # No other inline script, and no inline style anywhere in the page.
    assert router._PAGE.count(b"<script") == 3 and b"style=" not in router._PAGE
    assert b"<style" not in router._PAGE


def test_every_file_the_page_loads_is_served() -> None:
    page = router._PAGE.decode()
    wanted = re.findall(r'"/ui/static/([^"]+)"', page)
    assert wanted and all(name in router._FILES for name in wanted), wanted
    modules = [n for n in router._FILES if n.startswith("js/")]
    for name in modules:  # each module's relative imports resolve to a served file
        for target in re.findall(r'from "\./([^"]+)"', router._FILES[name].decode()):
            assert f"js/{target}" in router._FILES, (name, target)
