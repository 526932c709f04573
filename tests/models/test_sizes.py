"""Every model's ``fit`` stays a readable room: at most ``MAX_FIT_LINES`` lines (issue 27).

A longer ``fit`` is split into named steps (data preparation, building the network, the training
step, the epoch loop, the result), each a method the reader can take in at once and a test can
reach. Read from the source with ``ast``: the ``def`` line to the last line of the body, the
docstring and comments included, decorators not.
"""

from __future__ import annotations

import ast
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parents[2] / "recflow" / "models"
MAX_FIT_LINES = 80


def long_fits(source: str, where: str, limit: int = MAX_FIT_LINES) -> list[str]:
    """``where:line name (n lines)`` of every function called ``fit`` in ``source`` longer than ``limit`` lines."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "fit":
            n = node.end_lineno - node.lineno + 1
            if n > limit:
                found.append(f"{where}:{node.lineno} fit ({n} lines)")
    return found


def test_no_model_fit_is_longer_than_80_lines():
    found = [hit for path in sorted(MODELS_DIR.glob("*.py")) for hit in long_fits(path.read_text(), path.name)]
    assert found == [], "split these into named steps:\n" + "\n".join(found)


def test_the_check_counts_a_long_fit_and_only_fit():
    body = [f"        x{j} = {j}" for j in range(80)]
    source = "\n".join(["class M:", "    def fit(self):", *body, "", "    def other(self):", *body, "", "def fit():", *(line[4:] for line in body[:79])])
    assert long_fits(source, "m.py") == ["m.py:2 fit (81 lines)"]  # the method's def line and 80 body lines
    assert long_fits(source, "m.py", limit=81) == []
