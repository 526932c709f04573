"""The docs never tell a user to open a server to every interface (issue 26, point 9)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_no_doc_binds_a_server_to_every_interface():
    docs = [REPO / "README.md", REPO / "DEVELOPERS.md", *sorted((REPO / "docs").glob("*.md"))]
    offending = [f"{p.name}: {line.strip()}" for p in docs for line in p.read_text().splitlines() if re.search(r"--host[ =]0\.0\.0\.0|--host[ =]::\b", line)]
    assert offending == []
