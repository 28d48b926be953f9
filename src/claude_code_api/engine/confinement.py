"""Whether a path or a glob pattern that a tool call names stays inside agent mode's
roots (the conversation's workspace and ``file_access.additional_dirs``).

What the bundled CLI (2.1.332) does with what it is given, as probed:

- **Paths** (Read's ``file_path``, Glob's and Grep's ``path``, NotebookEdit's
  ``notebook_path``): the CLI makes them absolute and collapses ``..`` by name
  (``ws/link/../../x`` becomes ``x`` beside ``ws``) before the kernel
  follows symbolic links, whereas the kernel alone follows ``link`` before its
  ``..``. With a symlink to a deeper directory the two readings differ, so both
  must land inside.
- **Glob's ``pattern``** is relative to Glob's ``path`` (or the working directory).
  An absolute pattern is split at its first component with glob syntax, and the part
  before it is the directory searched: ``/elsewhere/*`` lists ``/elsewhere``,
  ``ws/link/*`` lists what ``link`` points to.
- **Grep's ``glob``** is a file-name filter (``rg --glob``) under Grep's ``path``. It
  selects among the files found under that path and never widens the search; it is
  checked like Glob's pattern all the same, so that a pattern is refused the same way
  wherever it appears. (Grep's ``pattern`` is a regular expression over file
  contents, not a path, and is not checked.)
- **Walking**: Glob and Grep search with ripgrep without ``--follow``. A symbolic
  link met while walking (``**/*``) is neither entered nor listed; only the directory
  the search starts from is followed. So the start directory is what must resolve
  inside: for a pattern, its components before the first glob syntax, and every
  longer prefix that exists as a name (a directory literally called ``x[1]``, in
  case a CLI reads it literally).

A pattern is also refused outright when it holds ``..`` (a walk could climb out past
any check made before it runs), ``~`` (home), or an absolute alternative in braces.
Refusals name only what the call itself named, never where a link points.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

# ripgrep's glob syntax; ``\`` escapes.
_GLOB_SYNTAX = re.compile(r"[*?\[\]{}\\]")
# What separates names in a pattern: directories, and alternatives in braces.
_NAME_BREAKS = re.compile(r"[/{},]")
_ABSOLUTE_ALTERNATIVE = re.compile(r"[{,]/")

_OUTSIDE = "outside this conversation's workspace"


class Confinement:
    """The roots one agent worker may touch, and the checks against them."""

    def __init__(self, workspace: str, extra_dirs: Sequence[str] = ()) -> None:
        self.workspace = os.path.realpath(workspace)
        self.roots = tuple(os.path.realpath(p) for p in (workspace, *extra_dirs))

    def path(self, value: str) -> str | None:
        """Why the path ``value`` is refused, or None when it stays inside."""
        if self._contains(self._absolute(value)):
            return None
        return f"{value} is {_OUTSIDE}; use paths inside the working directory"

    def pattern(self, pattern: str, base: str | None) -> str | None:
        """Why the glob ``pattern``, relative to the directory ``base`` (the working
        directory when None), is refused, or None when its search stays inside."""
        names = _NAME_BREAKS.split(pattern.replace("\\", ""))
        if ".." in names:
            return f"{pattern}: '..' is not allowed in a pattern, it could reach {_OUTSIDE}" \
                "; use a pattern relative to the working directory"
        if any(name.startswith("~") for name in names):
            return f"{pattern}: '~' names a home directory, {_OUTSIDE}"
        if _ABSOLUTE_ALTERNATIVE.search(pattern.replace("\\", "")):
            return f"{pattern}: an absolute path inside braces could reach {_OUTSIDE}"
        start = self._absolute(base) if base else Path(self.workspace)
        if start is not None and all(self._contains(d) for d in _search_starts(start, pattern)):
            return None
        return f"{pattern} searches {_OUTSIDE}; use a pattern relative to the working " \
            "directory"

    def _absolute(self, value: str) -> Path | None:
        try:
            return Path(self.workspace) / Path(value).expanduser()  # absolute stays as is
        except RuntimeError:  # "~someone" without such a user: nowhere to allow
            return None

    def _contains(self, path: Path | None) -> bool:
        if path is None:
            return False
        try:
            readings = {os.path.realpath(path), os.path.realpath(os.path.normpath(path))}
        except ValueError:  # a NUL byte: no such file, and nothing to allow
            return False
        return all(any(_under(reading, root) for root in self.roots) for reading in readings)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _search_starts(start: Path, pattern: str) -> Iterator[Path]:
    """The directories a search for ``pattern`` from ``start`` could begin in."""
    if pattern.startswith("/"):
        start = Path("/")
    parts = pattern.split("/")
    first = next((i for i, part in enumerate(parts) if _GLOB_SYNTAX.search(part)), len(parts))
    yield start.joinpath(*parts[:first])
    for end in range(first + 1, len(parts) + 1):
        prefix = start.joinpath(*parts[:end])
        for candidate in {prefix, Path(str(prefix).replace("\\", ""))}:
            if os.path.lexists(candidate):
                yield candidate
