"""Agent mode's path and pattern checks on a real directory tree; no processes.

The end-to-end tests in tests/e2e/test_agent.py show the same escapes through the
real CLI; these cover the corners quickly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from claude_code_api.engine.confinement import Confinement
from claude_code_api.engine.permissions import AgentKey, Permissions


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/ws (the workspace) with ws/link -> root/outside, ws/hop -> ws/sub/deeper,
    a sibling workspace root/other, and root/shared (an additional dir)."""
    for name in ("ws/sub/deeper", "outside/deep", "other", "shared"):
        (tmp_path / name).mkdir(parents=True)
    (tmp_path / "ws" / "sub" / "in.txt").write_text("in")
    (tmp_path / "outside" / "secret.txt").write_text("secret")
    (tmp_path / "ws" / "link").symlink_to(tmp_path / "outside")
    (tmp_path / "ws" / "hop").symlink_to(tmp_path / "ws" / "sub" / "deeper")
    (tmp_path / "ws" / "x[1]").symlink_to(tmp_path / "outside")
    return tmp_path


@pytest.fixture
def confinement(tree: Path) -> Confinement:
    return Confinement(str(tree / "ws"), [str(tree / "shared")])


@pytest.mark.parametrize("pattern", ["**/*.txt", "sub/*", "*", "{sub,hop}/*", "link*",
                                     "sub/**", "[a-z]*/in.txt", "notes~"])
def test_patterns_inside_the_workspace_pass(confinement: Confinement, pattern: str) -> None:
    assert confinement.pattern(pattern, None) is None


def test_absolute_patterns_inside_the_roots_pass(confinement: Confinement, tree: Path) -> None:
    assert confinement.pattern(f"{tree}/ws/**/*.txt", None) is None
    assert confinement.pattern(f"{tree}/shared/*", None) is None
    assert confinement.pattern("*.txt", str(tree / "shared")) is None
    assert confinement.pattern(f"{tree}/ws/l*/*", None) is None  # a walk does not follow


@pytest.mark.parametrize("pattern", [
    "{root}/outside/*", "{root}/*/secret*", "{root}/{{ws,outside}}/*", "/*",
    "{root}/ws/link/*", "link/*", "link", "link/**/*.txt", "x[1]/*", "{root}/ws/l\\ink/*",
])
def test_patterns_that_search_outside_are_refused(confinement: Confinement, tree: Path,
                                                  pattern: str) -> None:
    reason = confinement.pattern(pattern.format(root=tree), None)
    assert reason is not None and "outside this conversation's workspace" in reason


@pytest.mark.parametrize("pattern", ["../outside/*", "sub/../../outside/*", "**/../*",
                                     "{root}/ws/../outside/*", "{{sub,..}}/*", "\\.\\./x",
                                     "~/*", "~root/*", "{{sub,~}}/*", "{{sub,/etc}}/*"])
def test_dotdot_home_and_absolute_alternatives_are_refused(confinement: Confinement,
                                                           tree: Path, pattern: str) -> None:
    reason = confinement.pattern(pattern.format(root=tree), None)
    assert reason is not None and "outside this conversation's workspace" in reason


def test_a_pattern_is_relative_to_its_base(confinement: Confinement, tree: Path) -> None:
    assert confinement.pattern("*", str(tree / "ws" / "sub")) is None
    assert confinement.pattern("deep/*", str(tree / "ws" / "link")) is not None
    assert confinement.pattern("*", "sub") is None


def test_paths_are_checked_as_the_cli_and_the_kernel_read_them(confinement: Confinement,
                                                               tree: Path) -> None:
    ws = tree / "ws"
    assert confinement.path(str(ws / "sub" / "in.txt")) is None
    assert confinement.path("sub/in.txt") is None
    assert confinement.path(str(ws / "link" / "secret.txt")) is not None
    # The kernel reads hop/../.. as ws (hop is ws/sub/deeper), the CLI collapses it
    # by name first and reads the sibling workspace: refused.
    assert os.path.realpath(ws / "hop" / ".." / ".." / "other") == str(ws / "other")
    assert confinement.path(str(ws / "hop" / ".." / ".." / "other")) is not None
    assert confinement.path("hop/../../other") is not None
    assert confinement.path("~") is not None
    assert confinement.path("~no-such-user-here/x") is not None
    assert confinement.path("sub/\x00") is not None
    assert confinement.pattern("sub\x00/*", None) is not None


def test_the_policy_checks_glob_and_grep_fields_only_where_they_are_paths(tree: Path) -> None:
    policy = Permissions(AgentKey(workspace=str(tree / "ws"), tools=("Glob", "Grep", "Read")))
    outside = f"{tree}/outside/*"
    assert policy.decide("Glob", {"pattern": outside}) is not None
    assert policy.decide("Glob", {"pattern": "*", "path": str(tree / "outside")}) is not None
    assert policy.decide("Glob", {"pattern": "deep/*", "path": "link"}) is not None
    assert policy.decide("Grep", {"pattern": "x", "glob": outside}) is not None
    assert policy.decide("Grep", {"pattern": "x", "path": "hop/../../other"}) is not None
    # Grep's pattern is a regular expression over contents, not a path.
    assert policy.decide("Grep", {"pattern": "/etc/.*|\\.\\./~"}) is None
    assert policy.decide("Glob", {"pattern": "**/*.txt"}) is None
    assert policy.decide("Read", {"file_path": "hop/../../other/x"}) is not None
