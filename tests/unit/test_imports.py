"""The package's imports run one way: no module imports, directly or through others,
a module that imports it back. Module-level, function-level and ``TYPE_CHECKING``
imports all count: a circle hidden from the interpreter is still a circle in the
design (the one this test was written after ran gateway -> batch -> dialects ->
gateway, with its back edges under ``TYPE_CHECKING``)."""

from __future__ import annotations

import ast
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import claude_code_api

PACKAGE = "claude_code_api"
ROOT = Path(claude_code_api.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import in ``node``, at any depth (in functions, under ``if``...)."""
    for child in ast.walk(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child


def _imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that module ``name`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")
            anchor = anchor[:len(anchor) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        out.add(base)
        out.update(f"{base}.{alias.name}" for alias in node.names)  # `from . import x`
    return {target for target in out if target in modules and target != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imported(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each group of modules that reach one another (Tarjan), as one import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(_circle(graph, sorted(group)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _circle(graph: dict[str, set[str]], group: list[str]) -> list[str]:
    """One path through the group that comes back to where it started."""
    start, members = group[0], set(group)
    paths = [[start]]
    while paths:
        path = paths.pop(0)
        for target in sorted(graph[path[-1]] & members):
            if target == start:
                return [*path, start]
            if target not in path:
                paths.append([*path, target])
    return group


def test_the_package_has_no_import_circle() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_check_finds_a_circle_and_names_it() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_relative_and_function_level_imports() -> None:
    graph = _graph()
    assert f"{PACKAGE}.gateway" in graph[f"{PACKAGE}.batch.runner"]
    assert f"{PACKAGE}.engine.engine" in graph[f"{PACKAGE}.gateway"]
    # cli.py imports the app inside a function, so that `--help` stays fast.
    assert f"{PACKAGE}.app" in graph[f"{PACKAGE}.cli"]


def test_the_app_imports_the_anthropic_sdk_only_when_used_or_warmed(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """The anthropic package (about 3,700 modules, 40 % of the app's imports) is imported
    when a non-streaming Messages body is first built, and ahead of that in a thread once
    the server has started (``app.warm``), which logs a module it cannot import."""
    code = ("import sys, claude_code_api.app as app\n"
            "print('anthropic' in sys.modules, app.ANTHROPIC_IMPORTS)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.split() == ["False", "('anthropic.types',)"], done.stderr

    from claude_code_api import app

    (tmp_path / "cca_warm_probe.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    with caplog.at_level(logging.ERROR, "claude_code_api.app"):
        app.warm(["cca_warm_probe", "claude_code_api.no_such_module"])  # in this order
        deadline = time.monotonic() + 10
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.01)
    assert "cca_warm_probe" in sys.modules
    assert caplog.records[0].getMessage() == "could not import claude_code_api.no_such_module"
    monkeypatch.delitem(sys.modules, "cca_warm_probe")
