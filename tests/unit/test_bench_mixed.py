"""bench/bench_mixed.py does not rot: it imports and parses its flags as it would run
(its folder on the path, as `python bench/bench_mixed.py` puts it), and its mix is the
one it reports.

A run takes minutes (every mixed request may start a CLI), so it is not run here;
benchmarks are not tests.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from claude_code_api.testing.fake_upstream import Seen, Text, ToolUse


@pytest.fixture(scope="module")
def bench_mixed() -> ModuleType:
    """The benchmark's module, imported as `python bench/bench_mixed.py` finds it (its
    folder on the path); imported here rather than at collection, which every test
    process does (it imports the anthropic client: 1.7 s of CPU)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    return importlib.import_module("bench_mixed")


def test_help_names_every_flag(bench_mixed: ModuleType,
                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        bench_mixed.parse_args(["--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    for flag in ("--quick", "--pool", "--seed", "--output"):
        assert flag in shown
    assert f"default {bench_mixed.DEFAULT_POOL}" in shown


def test_a_bad_pool_size_is_refused(bench_mixed: ModuleType,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        bench_mixed.parse_args(["--pool", "0"])
    assert exited.value.code == 2
    assert "--pool must be at least 1" in capsys.readouterr().err


def test_the_mix_is_seeded_and_covers_every_shape_the_issue_names(bench_mixed: ModuleType
                                                                   ) -> None:
    mix = bench_mixed.mixed_traffic(200, seed=14)
    assert mix == bench_mixed.mixed_traffic(200, seed=14)
    assert mix != bench_mixed.mixed_traffic(200, seed=15)
    assert {s.kind for s in mix} == set(bench_mixed.KINDS)
    assert {s.max_tokens for s in mix} == {None, 256, 1024, 4096, 32000}
    assert all(s.max_tokens for s in mix if s.endpoint == "messages")  # required there
    assert all(s.system for s in mix if s.kind in ("responses", "chat+system",
                                                   "messages+system"))
    assert all(s.effort in ("low", "high") for s in mix if s.kind == "chat+effort")
    assert not any(s.system or s.effort for s in mix if s.kind == "chat")


def seen(tools: list[str], last: Any) -> Seen:
    body = {"tools": [{"name": name} for name in tools],
            "messages": [{"role": "user", "content": last}]}
    return Seen("/v1/messages", {}, body, 0.0)


def test_the_fake_answers_structured_output_with_the_document_once(bench_mixed: ModuleType
                                                                    ) -> None:
    first = bench_mixed.answer(seen(["StructuredOutput"], "Say hi"))
    assert first.blocks == [ToolUse("StructuredOutput", bench_mixed.DOCUMENT)]
    result = [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]
    assert bench_mixed.answer(seen(["StructuredOutput"], result)).blocks == [
        Text(bench_mixed.REPLY)]
    # Client tools are offered but not called: the answer is text.
    assert bench_mixed.answer(seen(["get_weather"], "Say hi")).blocks == [
        Text(bench_mixed.REPLY)]
