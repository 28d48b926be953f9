"""The ``claude-code-api`` command: ``serve``, ``keys`` and ``doctor``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from . import __version__
from .settings import Settings, load_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="claude-code-api",
        description="Serve Claude Code (the claude CLI) as an OpenAI- and "
                    "Anthropic-compatible model endpoint.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve", help="start the HTTP server",
        description="Start the HTTP server. Settings come from CLAUDE_CODE__SECTION__KEY "
                    "environment variables and config/local.toml (or --config); the flags "
                    "below win over both. Beyond loopback every request needs an API key "
                    "(see `claude-code-api keys create`), and the server refuses to start "
                    "until one exists.")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default 8080)")
    _config_flag(serve)
    _keys_parser(commands)
    _doctor_parser(commands)
    return parser


def _config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="TOML configuration file (default config/local.toml if present)")


def _doctor_parser(commands: Any) -> None:
    doctor = commands.add_parser(
        "doctor", help="check that everything the server needs works, one line each",
        description="Check what the server needs, one line each (what was found, or what "
                    "is wrong and what to do): Python, the configuration, the claude CLI, "
                    "a worker's start-up "
                    "handshake, upstream credentials (never printed), one minimal turn "
                    "upstream, the store, the agent workspace, the port. Exit status 0 "
                    "when all pass, 1 otherwise.")
    doctor.add_argument("--host", help="address `serve` would bind (default server.host)")
    doctor.add_argument("--port", type=int, help="port `serve` would bind (default "
                                                 "server.port)")
    _config_flag(doctor)
    doctor.add_argument("--offline", action="store_true",
                        help="skip the turn upstream (no request to the Anthropic API)")
    doctor.add_argument("--json", action="store_true",
                        help='print one JSON object: {"ok": ..., "checks": [...]}')
    doctor.add_argument("--timeout", type=_seconds, default=30.0, metavar="SECONDS",
                        help="longest wait for the CLI to start and for the turn "
                             "(default 30)")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, not {text!r}")
    return value


def _keys_parser(commands: Any) -> None:
    keys = commands.add_parser(
        "keys", help="create, list, change and revoke client API keys",
        description="Client API keys, kept hashed in the store (store.url, or store.path). "
                    "Changes take effect at once, also in a running server.")
    _config_flag(keys)
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a key and print it (shown only once)")
    create.add_argument("--name", required=True, help="who or what the key is for")
    _limit_flags(create)
    update = actions.add_parser("update", help="change a key's limits")
    update.add_argument("key", help="the key: its id, its name or the whole key")
    _limit_flags(update)
    update.add_argument("--reset-spent", action="store_true",
                        help="start the key's budget over (spent = 0)")
    listing = actions.add_parser("list", help="list keys with their limits and spending")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.add_argument("--json", action="store_true", help="print JSON")
    revoke = actions.add_parser("revoke", help="revoke a key (requests with it get 401)")
    revoke.add_argument("key", help="the key: its id, its name or the whole key")
    usage = actions.add_parser("usage", help="the usage ledger: requests, tokens and cost "
                                             "per key, model and day (UTC)")
    usage.add_argument("key", nargs="?", help="only this key (id, name or the whole key)")
    usage.add_argument("--json", action="store_true", help="print JSON")


def _limit_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rpm", type=int, metavar="N",
                        help="requests per minute (0: no limit)")
    parser.add_argument("--concurrency", type=int, metavar="N",
                        help="requests at once (0: no limit)")
    parser.add_argument("--budget-usd", type=float, metavar="USD",
                        help="spending limit in US dollars, from the cost Claude Code "
                             "reports (0: no limit)")
    parser.add_argument("--models", metavar="LIST",
                        help="comma-separated models the key may use (empty: any)")
    parser.add_argument("--agent", action=argparse.BooleanOptionalAction, default=None,
                        help="may use agent mode, when the server enables it (agent.enabled)")
    parser.add_argument("--max-turns", type=int, metavar="N",
                        help="agent mode: model calls per turn at most (0: the server's)")
    parser.add_argument("--admin", action=argparse.BooleanOptionalAction, default=None,
                        help="may use the web console at /ui (keys, usage, every "
                             "conversation)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "doctor":
        from .doctor import run

        return run(args)
    try:
        settings = _settings(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"claude-code-api: {exc}", file=sys.stderr)
        return 2
    from .store.database import StoreError

    try:
        if args.command == "serve":
            return serve(settings)
        return keys(args, settings)
    except StoreError as exc:  # PostgreSQL unreachable, a store newer than this release
        print(f"claude-code-api: {exc}", file=sys.stderr)
        return 2


def _settings(args: argparse.Namespace) -> Settings:
    server: dict[str, object] = {}
    if getattr(args, "host", None) is not None:
        server["host"] = args.host
    if getattr(args, "port", None) is not None:
        server["port"] = args.port
    return load_settings(args.config, **({"server": server} if server else {}))


def serve(settings: Settings) -> int:
    import uvicorn

    from .access.keys import KeyStore
    from .app import create_app
    from .logs import configure

    if not settings.server.is_loopback() or settings.auth.required:
        store = KeyStore(settings.store.target())
        has_keys = store.any_active()
        store.close()
        if not has_keys:
            where = "beyond loopback" if not settings.server.is_loopback() else "with auth"
            print(f"claude-code-api: refusing to serve on {settings.server.host} {where}: "
                  "no API key exists, so nobody could call it. Create one with "
                  "`claude-code-api keys create --name NAME` (same --config / "
                  "CLAUDE_CODE__STORE__URL or __PATH as the server).", file=sys.stderr)
            return 2
    configure(settings.server.log_level, settings.server.log_format)
    uvicorn.run(create_app(settings), host=settings.server.host, port=settings.server.port,
                log_level=settings.server.log_level, log_config=None, access_log=False,
                timeout_graceful_shutdown=10)
    return 0


def keys(args: argparse.Namespace, settings: Settings) -> int:
    from .access.keys import KeyStore

    store = KeyStore(settings.store.target())
    try:
        return _keys_action(args, store)
    except ValueError as exc:
        print(f"claude-code-api: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _keys_action(args: argparse.Namespace, store: Any) -> int:
    if args.action == "create":
        key, token = store.create(args.name, rpm=args.rpm or None,
                                  concurrency=args.concurrency or None,
                                  budget_usd=args.budget_usd or None,
                                  models=_models(args.models) or None,
                                  agent=bool(args.agent), max_turns=args.max_turns or None,
                                  admin=bool(args.admin))
        print(token)
        print(f"created key {key.id} ({key.name}); the key above is shown only once",
              file=sys.stderr)
        return 0
    if args.action == "update":
        models = _models(args.models)
        key = store.update(args.key, rpm=args.rpm, concurrency=args.concurrency,
                           budget_usd=args.budget_usd, models=models,
                           max_turns=args.max_turns, agent=args.agent, admin=args.admin,
                           reset_spent=args.reset_spent)
        return _print_key(key, args.key)
    if args.action == "revoke":
        return _print_key(store.revoke(args.key), args.key)
    if args.action == "list":
        found = [k.summary() for k in store.all(include_revoked=args.all)]
        _table(found, args.json, ("id", "name", "rpm", "concurrency", "budget_usd",
                                  "spent_usd", "models", "agent", "admin", "last_used_at",
                                  "revoked"))
        return 0
    key_id = None
    if args.key:
        key = store.find(args.key) or store.get(args.key)
        if key is None:
            return _print_key(None, args.key)
            return 1
        key_id = key.id
    _table(store.usage(key_id), args.json, ("day", "key_id", "model", "requests",
                                             "cached_requests", "input_tokens",
                                             "output_tokens", "cache_read_tokens",
                                             "cost_usd"))
    return 0


def _models(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [m.strip() for m in text.split(",") if m.strip()]


def _print_key(key: Any, wanted: str) -> int:
    if key is None:
        from .logs import mask  # a mistyped whole key is still nearly a secret

        print(f"claude-code-api: no active key {mask(wanted)!r}", file=sys.stderr)
        return 1
    print(json.dumps(key.summary(), indent=2))
    return 0


def _table(rows: list[dict[str, Any]], as_json: bool, columns: tuple[str, ...]) -> None:
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print("(none)")
        return
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(value) or "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int) and value > 1_000_000_000:
        return time.strftime("%Y-%m-%d %H:%M", time.gmtime(value))
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
