"""Progress for long loops: bars on an interactive terminal, a heartbeat line in logs, silent in tests.

On a terminal, ``track`` draws a tqdm bar. When stderr is not a terminal (a log file, a pipe, CI),
bars would be noise, but silence is worse: a run that says nothing for a minute looks hung. There
``heartbeat`` prints one plain line at a fixed interval (8 s: at least one line every 10 s) with
the elapsed time and every tracked loop in progress. ``RECFLOW_PROGRESS=0`` silences both (the tests), ``=1`` forces bars.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TextIO, TypeVar

T = TypeVar("T")

#: ``listener(desc, total)`` is called when a tracked loop starts and may return ``step(done)``,
#: called after each item: how an orchestrator (the Prefect tasks) shows library progress
#: without the library importing it.
Listener = Callable[[str, "int | None"], "Callable[[int], None] | None"]
_listeners: list[Listener] = []
#: tracked loops in progress: [desc, total, done], read by the heartbeat
_active: list[list] = []
_active_lock = threading.Lock()
#: under 10 s, so a line comes at least every 10 s even when a busy thread delays the beat
HEARTBEAT_SECONDS = 8.0


def add_listener(listener: Listener) -> None:
    if listener not in _listeners:
        _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def _setting() -> str:
    return os.environ.get("RECFLOW_PROGRESS", "auto").lower()


def enabled() -> bool:
    """Whether tqdm bars are drawn: on a terminal, or when forced."""
    setting = _setting()
    if setting in ("0", "false", "off", "no"):
        return False
    if setting in ("1", "true", "on", "yes"):
        return True
    return sys.stderr.isatty()


def heartbeat_wanted() -> bool:
    """Whether ``heartbeat`` prints: stderr is not a terminal and progress is not switched off or forced to bars."""
    return _setting() not in ("0", "false", "off", "no", "1", "true", "on", "yes") and not sys.stderr.isatty()


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
    entry = [desc, total, 0]
    with _active_lock:
        _active.append(entry)
    try:
        for done, item in enumerate(iterable, 1):
            yield item
            entry[2] = done
            for step in steps:
                step(done)
    finally:
        with _active_lock:
            _active.remove(entry)


def status_line(elapsed: float) -> str:
    """``[  42s] working: ann tuning items 3/12, ...``: the heartbeat's line."""
    with _active_lock:
        loops = [f"{desc or 'loop'} {done}/{'?' if total is None else total}" for desc, total, done in _active]
    return f"[{elapsed:5.0f}s] working" + (f": {', '.join(loops)}" if loops else "")


@contextlib.contextmanager
def heartbeat(interval: float = HEARTBEAT_SECONDS, stream: TextIO | None = None, force: bool = False) -> Iterator[None]:
    """Inside the block, a line (``status_line``) every ``interval`` seconds when ``heartbeat_wanted()``
    (or ``force``): a run in a log never goes silent for longer than that."""
    if not (force or heartbeat_wanted()):
        yield
        return
    started = time.monotonic()
    stop = threading.Event()
    # a copy of descriptor 2 as it is now: the beat still reaches the terminal or pipe while
    # recflow.utils.quiet points descriptor 2 at the log file (TensorFlow's import)
    own = None
    if stream is None:
        try:
            own = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)
        except (AttributeError, OSError, ValueError):  # a stderr without a descriptor: write to it as it is
            own = None
    out = stream or own or sys.stderr

    def beat() -> None:
        while not stop.wait(interval):
            try:
                print(status_line(time.monotonic() - started), file=out, flush=True)
            except (OSError, ValueError):  # the stream went away: nothing to tell
                return

    thread = threading.Thread(target=beat, name="recflow-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval)
        if own is not None:
            own.close()
