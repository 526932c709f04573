"""Progress bars for long loops: shown on an interactive terminal, silent in logs, CI and tests."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def enabled() -> bool:
    setting = os.environ.get("RECFLOW_PROGRESS", "auto").lower()
    if setting in ("0", "false", "off", "no"):
        return False
    if setting in ("1", "true", "on", "yes"):
        return True
    return sys.stderr.isatty()


def track(iterable: Iterable[T], *, total: int | None = None, desc: str = "", min_total: int = 2) -> Iterator[T]:
    """``iterable`` with a tqdm bar when enabled and there are at least ``min_total`` steps."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if not enabled() or (total is not None and total < min_total):
        yield from iterable
        return
    from tqdm.auto import tqdm

    yield from tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)
