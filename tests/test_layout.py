"""docs/architecture.md's Layout section names every module of the project, and names nothing that is not there.

The listing is a tree in the section's code block: an entry line is its indentation (two spaces
a level), one or more names (``a.py, b.py``; a folder ends in ``/``) and, after two spaces, what
it holds; a line whose first word is not such a name continues the description above it. A name
is relative to the folder entry above it with one level less indentation. Every ``.py`` module
under ``recflow/``, ``tasks/``, ``flows/`` and ``bench/`` must be named, except package
``__init__.py`` files and the bundled dataset; every name there must exist.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("recflow", "tasks", "flows", "bench")
NOT_LISTED = ("recflow/data/bundled/",)
_NAME = r"[\w.-]+(?:/|\.py)"
_ENTRY = re.compile(rf"^(?P<indent> *)(?P<names>{_NAME}(?:, {_NAME})*)(?: {{2,}}|$)")


def layout_block(readme: str) -> list[str]:
    """The lines of the first code block after ``## Layout``."""
    section = readme.split("\n## Layout\n", 1)
    if len(section) < 2:
        raise AssertionError("docs/architecture.md has no '## Layout' section")
    block = re.search(r"^```[^\n]*\n(.*?)^```", section[1], re.S | re.M)
    if block is None:
        raise AssertionError("docs/architecture.md's Layout section has no code block")
    return block.group(1).splitlines()


def listed_paths(lines: list[str]) -> list[str]:
    """The paths the tree names, relative to the repository root (folders end in ``/``)."""
    parents: list[str] = []  # the folder entry at each indentation level
    out = []
    for number, line in enumerate(lines, 1):
        entry = _ENTRY.match(line)
        if entry is None:
            continue  # a continued description
        indent = len(entry["indent"])
        if indent % 2 or indent // 2 > len(parents):
            raise AssertionError(f"docs/architecture.md Layout line {number}: {entry['names']!r} is indented {indent} spaces, not under a folder entry")
        parents = parents[: indent // 2]
        names = entry["names"].split(", ")
        paths = ["".join(parents) + name for name in names]
        out.extend(paths)
        if len(names) == 1 and names[0].endswith("/"):
            parents.append(names[0])
    return out


def project_modules() -> set[str]:
    found = set()
    for root in ROOTS:
        for path in (REPO / root).rglob("*.py"):
            rel = path.relative_to(REPO).as_posix()
            if path.name != "__init__.py" and not rel.startswith(NOT_LISTED):
                found.add(rel)
    return found


def test_the_tree_reads_names_relative_to_the_folder_above():
    lines = [
        "pkg/          the package",
        "  a.py        one",
        "  sub/        a folder",
        "    b.py, c.py  two on a line",
        "              a description going on (d.py is not an entry)",
        "  e.py        back one level",
        "top.py        at the root",
    ]
    assert listed_paths(lines) == ["pkg/", "pkg/a.py", "pkg/sub/", "pkg/sub/b.py", "pkg/sub/c.py", "pkg/e.py", "top.py"]


def test_an_entry_indented_under_no_folder_is_an_error():
    with pytest.raises(AssertionError, match=r"line 2: 'b.py' is indented 4 spaces"):
        listed_paths(["a/  x", "    b.py  y"])


def test_readme_layout_names_every_module_and_only_existing_paths():
    listed = listed_paths(layout_block((REPO / "docs" / "architecture.md").read_text()))
    missing = sorted(project_modules() - set(listed))
    absent = sorted(p for p in listed if not (REPO / p).exists())
    twice = sorted({p for p in listed if listed.count(p) > 1})
    problems = [
        *(["modules not in docs/architecture.md's Layout section: " + ", ".join(missing)] if missing else []),
        *(["paths in docs/architecture.md's Layout section that do not exist: " + ", ".join(absent)] if absent else []),
        *(["paths listed twice in docs/architecture.md's Layout section: " + ", ".join(twice)] if twice else []),
    ]
    assert not problems, "\n".join(problems)
