"""A tiny stdio MCP server for the agent-mode tests: one tool, `add`.

Newline-delimited JSON-RPC 2.0 on stdin/stdout, as the MCP stdio transport
specifies; written by hand so that it depends on nothing.
"""

from __future__ import annotations

import json
import sys
from typing import Any

TOOLS = [{
    "name": "add",
    "description": "Add two integers.",
    "inputSchema": {"type": "object", "properties": {"a": {"type": "integer"},
                                                     "b": {"type": "integer"}},
                    "required": ["a", "b"]},
}]


def answer(request: dict[str, Any]) -> dict[str, Any] | None:
    method = request.get("method")
    if method == "initialize":
        return {"protocolVersion": request["params"].get("protocolVersion", "2025-06-18"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "calc", "version": "1.0"}}
    if method == "tools/list":
        return {"tools": TOOLS}
    if method == "tools/call":
        args = request["params"].get("arguments") or {}
        total = int(args.get("a", 0)) + int(args.get("b", 0))
        return {"content": [{"type": "text", "text": f"sum={total}"}], "isError": False}
    if method == "ping":
        return {}
    return None


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if "id" not in request:
            continue  # a notification
        result = answer(request)
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request["id"]}
        if result is None:
            reply["error"] = {"code": -32601, "message": f"unknown method {request.get('method')}"}
        else:
            reply["result"] = result
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
