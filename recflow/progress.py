"""Progress bars for long loops: shown on an interactive terminal, silent in logs, CI and tests."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

#: ``listener(desc, total)`` is called when a tracked loop starts and may return ``step(done)``,
#: called after each item: how an orchestrator (the Prefect tasks) shows library progress
#: without the library importing it.
Listener = Callable[[str, "int | None"], "Callable[[int], None] | None"]
_listeners: list[Listener] = []


def add_listener(listener: Listener) -> None:
    if listener not in _listeners:
        _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


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
    if total is not None and total < min_total:
        yield from iterable
        return
    steps = [step for step in (listener(desc, total) for listener in list(_listeners)) if step is not None]
    if enabled():
        from tqdm.auto import tqdm

        iterable = tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)
    if not steps:
        yield from iterable
        return
    for done, item in enumerate(iterable, 1):
        yield item
        for step in steps:
            step(done)
