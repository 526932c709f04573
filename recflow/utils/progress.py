"""Progress for long loops: bars on an interactive terminal, a heartbeat line in logs, silent in tests.

On a terminal, every tracked loop (``track``, or ``loop`` for one driven by callbacks such as a
model's epochs) gets a row of one shared rich display: its name, a bar, ``n/N`` and the time it
has taken; a row goes when its loop ends, and the first row, ``recflow: working``, shows that the run
lives between loops. Lines other code logs meanwhile (Prefect's task states) are printed above
the display, not through it (``_Display`` points the handlers writing to the terminal at rich's proxy).
When stderr is not a terminal (a log file, a pipe, CI), bars would be noise, but silence is worse:
a run that says nothing for a minute looks hung. There ``heartbeat`` prints one plain line at a
fixed interval (8 s: at least one line every 10 s) with the elapsed time and every loop in progress,
``[  42s] working: mf: epochs 3/20``. ``RECFLOW_PROGRESS=0`` silences both (the tests), ``=1`` forces bars.
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
#: tracked loops in progress (``Loop``), read by the heartbeat
_active: list = []
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
    """Whether bars are drawn: on a terminal, or when forced."""
    setting = _setting()
    if setting in ("0", "false", "off", "no"):
        return False
    if setting in ("1", "true", "on", "yes"):
        return True
    return sys.stderr.isatty()


def heartbeat_wanted() -> bool:
    """Whether ``heartbeat`` prints: stderr is not a terminal and progress is not switched off or forced to bars."""
    return _setting() not in ("0", "false", "off", "no", "1", "true", "on", "yes") and not sys.stderr.isatty()


class Loop:
    """One loop in progress: its listeners' steps, its row on the terminal, its entry in the heartbeat."""

    def __init__(self, desc: str, total: int | None, heard: bool = True) -> None:
        """``heard=False``: no listener is told (a caller that reports the loop to them itself, with more to say)."""
        self.desc, self.total, self.done = desc, total, 0
        self.steps = [step for step in (listener(desc, total) for listener in list(_listeners) if heard) if step is not None]
        self.row = _display.add(desc, total) if enabled() else None
        with _active_lock:
            _active.append(self)

    def advance(self, done: int | None = None) -> None:
        """``done`` items so far (default: one more)."""
        self.done = self.done + 1 if done is None else int(done)
        for step in self.steps:
            step(self.done)
        if self.row is not None:
            _display.update(self.row, self.done)

    def close(self) -> None:
        with _active_lock:
            if self not in _active:
                return
            _active.remove(self)
        if self.row is not None:
            _display.remove(self.row)


@contextlib.contextmanager
def loop(desc: str, total: int | None) -> Iterator[Loop]:
    """A loop that others drive (``advance`` from a callback): shown, heard and ended like ``track``'s."""
    tracked = Loop(desc, total)
    try:
        yield tracked
    finally:
        tracked.close()


def track(iterable: Iterable[T], *, total: int | None = None, desc: str = "", min_total: int = 2) -> Iterator[T]:
    """``iterable`` shown as a loop (a bar, a heartbeat entry, listeners' steps) when it has at least ``min_total`` steps."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if total is not None and total < min_total:
        yield from iterable
        return
    with loop(desc, total) as tracked:
        for done, item in enumerate(iterable, 1):
            yield item
            tracked.advance(done)


def status_line(elapsed: float) -> str:
    """``[  42s] working: ann tuning items 3/12, ...``: the heartbeat's line."""
    with _active_lock:
        loops = [f"{entry.desc or 'loop'} {entry.done}/{'?' if entry.total is None else entry.total}" for entry in _active]
    return f"[{elapsed:5.0f}s] working" + (f": {', '.join(loops)}" if loops else "")


class _Display:
    """The terminal's one rich ``Progress``, shared by every thread's loops; live while a loop runs or a heartbeat is held."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.progress = None
        self.users = 0
        self.swapped: list[tuple[object, str, object]] = []

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.text import Text

        class Bar(BarColumn):  # a row without a total (the run's "working") has no bar to fill
            def render(self, task):
                return Text("") if task.total is None else super().render(task)

        class Count(MofNCompleteColumn):
            def render(self, task):
                return Text("") if task.total is None else super().render(task)

        stream = sys.stderr
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            Bar(),
            Count(),
            TimeElapsedColumn(),
            console=Console(file=stream, force_terminal=True),
            redirect_stdout=True,
            redirect_stderr=True,
            transient=True,
        )
        self.progress.start()
        self.swapped = _point_handlers_at(stream, sys.stderr)  # rich's proxy prints them above the display

    def _stop(self) -> None:
        for holder, attr, value in self.swapped:
            setattr(holder, attr, value)
        self.swapped = []
        self.progress.stop()
        self.progress = None

    def hold(self, desc: str = "recflow: working") -> object:
        with self.lock:
            if self.progress is None:
                self._start()
            self.users += 1
            return self.progress.add_task(desc, total=None)

    def release(self, row: object) -> None:
        with self.lock:
            self.progress.remove_task(row)
            self.users -= 1
            if self.users == 0:
                self._stop()

    def add(self, desc: str, total: int | None) -> object:
        return self.hold(desc or "loop") if total is None else self._add_with_total(desc, total)

    def _add_with_total(self, desc: str, total: int) -> object:
        row = self.hold(desc or "loop")
        with self.lock:
            self.progress.update(row, total=total)
        return row

    def update(self, row: object, done: int) -> None:
        with self.lock:
            if self.progress is not None:
                self.progress.update(row, completed=done)

    def remove(self, row: object) -> None:
        self.release(row)


_display = _Display()


def _point_handlers_at(original: TextIO, proxy: TextIO) -> list[tuple[object, str, object]]:
    """Logging handlers (and rich consoles inside them) that write to ``original``'s terminal, now writing to ``proxy``; what to restore.

    The terminal, not the object: a handler made before ``recflow.utils.quiet`` swapped ``sys.stderr`` holds another
    stream object onto the same terminal."""
    import logging

    def same_terminal(stream: object) -> bool:
        if stream is original:
            return True
        try:
            a, b = os.fstat(stream.fileno()), os.fstat(original.fileno())  # type: ignore[attr-defined]
        except (AttributeError, OSError, ValueError):
            return False
        return stream.isatty() and (a.st_rdev, a.st_ino) == (b.st_rdev, b.st_ino)  # type: ignore[attr-defined]

    swapped: list[tuple[object, str, object]] = []
    loggers = [logging.getLogger(), *(v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger))]
    for handler in {h for lg in loggers for h in lg.handlers}:
        stream = getattr(handler, "stream", None)
        if stream is not None and same_terminal(stream):
            swapped.append((handler, "stream", stream))
            handler.stream = proxy
        console = getattr(handler, "console", None)
        file = getattr(console, "file", None)
        if file is not None and same_terminal(file):
            swapped.append((console, "file", file))
            console.file = proxy
    return swapped


@contextlib.contextmanager
def heartbeat(interval: float = HEARTBEAT_SECONDS, stream: TextIO | None = None, force: bool = False) -> Iterator[None]:
    """Inside the block, a line (``status_line``) every ``interval`` seconds when ``heartbeat_wanted()``
    (or ``force``): a run in a log never goes silent for longer than that. On a terminal with bars, the
    display's ``recflow: working`` row instead, for the whole block."""
    if not (force or heartbeat_wanted()):
        if not enabled():
            yield
            return
        row = _display.hold()
        try:
            yield
        finally:
            _display.release(row)
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
