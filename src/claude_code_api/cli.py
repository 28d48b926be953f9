"""The ``claude-code-api`` command."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__
from .settings import load_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="claude-code-api",
        description="Serve Claude Code (the claude CLI) as an OpenAI-compatible model endpoint.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve", help="start the HTTP server",
        description="Start the HTTP server. Settings come from CLAUDE_CODE__SECTION__KEY "
                    "environment variables and config/local.toml (or --config); the flags "
                    "below win over both.")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default 8080)")
    serve.add_argument("--config", type=Path, metavar="FILE",
                       help="TOML configuration file (default config/local.toml if present)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return 2


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app

    server: dict[str, object] = {}
    if args.host is not None:
        server["host"] = args.host
    if args.port is not None:
        server["port"] = args.port
    try:
        settings = load_settings(args.config, **({"server": server} if server else {}))
    except (FileNotFoundError, ValueError) as exc:
        print(f"claude-code-api: {exc}", file=sys.stderr)
        return 2
    if not settings.server.is_loopback():
        print("claude-code-api: refusing to bind to "
              f"{settings.server.host}: this version has no client authentication yet, so it "
              "only listens on loopback (127.0.0.1, ::1, localhost).", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.server.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.server.host, port=settings.server.port,
                log_level=settings.server.log_level, timeout_graceful_shutdown=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
