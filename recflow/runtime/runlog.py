"""A run's full log in a file, its console without tracebacks.

A failed task's traceback is 60-130 lines with the cause somewhere in the middle; on a terminal
it buries the one line that matters. While ``run_log`` is active every log record (Prefect's
flow and task run loggers, recflow's, any library's warnings) goes in full, tracebacks included,
to ``<root>/logs/<stamp>-<name>.log``, and the console handlers print each record without its
traceback. Handlers that send logs elsewhere (Prefect's API handler: the UI keeps tracebacks)
are untouched.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_path(root: Path, name: str, started: datetime | None = None) -> Path:
    started = started or datetime.now(timezone.utc)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "run"
    return root / "logs" / f"{started:%Y%m%d-%H%M%S}-{safe}.log"


def _is_console(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)


def _without_traceback(emit):
    def emit_line(record: logging.LogRecord) -> None:
        if record.exc_info or record.exc_text or record.stack_info:
            record = copy.copy(record)  # the same record still reaches the file (and the API) in full
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        emit(record)

    return emit_line


class RunLogHandler(logging.FileHandler):
    """The run's log file; a write that fails (a full disk) stops it once, with one line on stderr.

    logging's default ``handleError`` prints a ``--- Logging error ---`` block per record, and
    every failing record can log again: on a full disk that was hundreds of blocks and a
    ``RecursionError`` while the run itself hung. One line, then the file is left alone.
    """

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        if getattr(self, "_failed", False):
            return
        self._failed = True
        import sys

        error = sys.exc_info()[1]
        with contextlib.suppress(Exception):
            sys.stderr.write(f"recflow: the run's log file {self.baseFilename} cannot be written ({error}); logging to it stopped\n")

    def emit(self, record: logging.LogRecord) -> None:
        if not getattr(self, "_failed", False):
            super().emit(record)


@contextmanager
def run_log(path: Path, level: int = logging.INFO) -> Iterator[Path]:
    """Everything logged inside the block goes in full to ``path``; consoles show no tracebacks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = RunLogHandler(path, encoding="utf-8")
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    consoles = [h for logger in (root, *_configured_loggers()) for h in logger.handlers if _is_console(h)]
    consoles = list({id(h): h for h in consoles}.values())
    before = {id(console): console.__dict__.get("emit") for console in consoles}
    for console in consoles:
        console.emit = _without_traceback(console.emit)
    root.addHandler(handler)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        with contextlib.suppress(OSError):  # its last buffered lines on a full disk: already said
            handler.close()
        for console in consoles:  # back to what it was (the class's method, or an enclosing run_log's)
            if before[id(console)] is None:
                console.__dict__.pop("emit", None)
            else:
                console.emit = before[id(console)]


def _configured_loggers() -> list[logging.Logger]:
    return [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger) and lg.handlers]
