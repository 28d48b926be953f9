"""``/ui``: the console's page and its files, under a strict Content-Security-Policy.

The files ship inside the package (``static/``) and are read once, at import: a
request can name only a file that is in that table, so no path from a client ever
reaches the file system. Scripts run only from this origin, plus the one inline
import map of the page, allowed by its hash.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from ..errors import NotFound
from .admin import router as admin_router
from .live import router as live_router

_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".svg": "image/svg+xml", ".png": "image/png", ".md": "text/plain; charset=utf-8",
          ".txt": "text/plain; charset=utf-8"}


def _load() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    root = resources.files(__package__).joinpath("static")

    def walk(folder: resources.abc.Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            if entry.is_dir():
                walk(entry, f"{prefix}{entry.name}/")
            elif any(entry.name.endswith(suffix) for suffix in _TYPES):
                files[prefix + entry.name] = entry.read_bytes()

    walk(root, "")
    return files


_FILES = _load()
_PAGE = _FILES.pop("index.html")


def _inline_hashes(page: bytes) -> str:
    scripts = re.findall(rb"<script type=\"importmap\">(.*?)</script>", page, re.S)
    return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s).digest()).decode()}'"
                    for s in scripts)


CSP = ("default-src 'none'; "
       f"script-src 'self' {_inline_hashes(_PAGE)}; "
       "style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}

router = APIRouter(include_in_schema=False)
router.include_router(admin_router)
router.include_router(live_router)


@router.get("/ui")
@router.get("/ui/")
async def page() -> Response:
    """The console (one page; its sections are addressed by the URL's fragment)."""
    return Response(_PAGE, media_type=_TYPES[".html"],
                    headers={**_HEADERS, "Cache-Control": "no-store"})


@router.get("/ui/static/{name:path}")
async def static(name: str) -> Response:
    content = _FILES.get(name)
    if content is None:
        raise NotFound(f"no console file `{name[:100]}`")
    suffix = "." + name.rsplit(".", 1)[-1]
    return Response(content, media_type=_TYPES[suffix],
                    headers={**_HEADERS, "Cache-Control": "no-cache"})
