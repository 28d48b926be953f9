"""Who may use the console's admin API.

The access middleware has already authenticated the request (a key in
``Authorization: Bearer`` or ``x-api-key``; never a cookie, so a page of another
site cannot act for the operator, and never a URL). Here the key must be an admin
key; a request without a key passes only where the middleware let it through
without one (auth not required, so the server is on loopback), and only when it
names a loopback host, so that a page on a rebound DNS name cannot read the API.
"""

from __future__ import annotations

from fastapi import Request

from ..access.caller import Caller, caller_of
from ..deps import Services, services
from ..errors import Forbidden

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})


def gateway_of(request: Request) -> Services:
    """The app's services (what the console reads and administers)."""
    return services(request)


def admin(request: Request) -> Caller:
    """The caller, when it may administer the gateway (a FastAPI dependency)."""
    caller = caller_of(request)
    if caller.key is not None:
        if not caller.key.admin:
            raise Forbidden(f"The API key `{caller.key.name}` is not an admin key. Make one "
                            "with `claude-code-api keys create --name NAME --admin` (or "
                            "`keys update NAME --admin`).")
        return caller
    host = _host_name(request.headers.get("host", ""))
    if gateway_of(request).settings.auth_required() or host not in _LOOPBACK_HOSTS:
        raise Forbidden("The console needs an admin key here "
                        "(`claude-code-api keys create --name NAME --admin`).")
    return caller


def _host_name(host: str) -> str:
    """The Host header without its port ("[::1]:8080" -> "[::1]")."""
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0]
