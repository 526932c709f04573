"""Quiet libraries: their start-up and housekeeping lines go to the run's log file, not the terminal.

A normal ``recflow run`` prints the pipeline's own lines (Prefect's task states, the summary). The
libraries underneath also talk: MLflow's database migrations and model validation, TensorFlow's
absl and C++ start-up lines (``cudart_stub``, ``failed call to cuInit``, which read like errors on a
CPU machine). Those go to the run's log file (``recflow.runtime.runlog.log_path``), which the run's summary names.

Python loggers are routed with handlers. TensorFlow's C++ lines are written to file descriptor 2
(some before absl is initialised, ignoring ``TF_CPP_MIN_LOG_LEVEL``), so for the whole run
descriptor 2 points at the log file while Python's ``sys.stderr`` (Prefect's lines, progress,
errors) writes to a copy of the original descriptor: the terminal keeps every Python line and
no C++ line, whichever thread and whenever it is written. Where no run log is open (a Prefect
worker), :func:`stderr_to_log` is a no-op.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

#: the log file of the current run (set by ``quiet_libraries``; read where TensorFlow is imported)
ENV = "RECFLOW_LOG_FILE"
#: loggers whose records go to the log file only
LIBRARY_LOGGERS = ("mlflow", "alembic", "sqlalchemy.engine", "huey", "absl", "tensorflow", "h5py", "keras", "git")
_VERBOSE = ("mlflow", "absl", "tensorflow", "keras")  # INFO is kept in the file
_redirect_lock = threading.Lock()  # nested windows from two threads must restore in order


@contextlib.contextmanager
def quiet_libraries(path: Path) -> Iterator[Path]:
    """Inside the block: the libraries' loggers and descriptor 2 write to ``path`` (yielded),
    ``sys.stderr`` to the original stderr. Everything is restored on exit (the CLI's tests run it in-process)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    saved_env = {k: os.environ.get(k) for k in (ENV, "MLFLOW_CONFIGURE_LOGGING")}
    os.environ[ENV] = str(path)
    os.environ["MLFLOW_CONFIGURE_LOGGING"] = "false"  # MLflow would add its own stderr handler on import
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved_loggers = []
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        saved_loggers.append((logger, logger.handlers, logger.propagate, logger.level))
        logger.handlers = [handler]
        logger.propagate = False
        if name in _VERBOSE:
            logger.setLevel(logging.INFO)
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a captured stderr (tests): descriptors stay as they are
        fd = None
    terminal = old_stderr = saved_fd = None
    if fd == 2:
        sys.stderr.flush()
        saved_fd = os.dup(2)
        old_stderr = sys.stderr
        terminal = os.fdopen(os.dup(2), "w", buffering=1, encoding=old_stderr.encoding, errors="backslashreplace")
        sys.stderr = terminal
        with open(path, "ab") as log:
            os.dup2(log.fileno(), 2)
    try:
        yield path
    finally:
        if saved_fd is not None:
            terminal.flush()
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            sys.stderr = old_stderr
            # ``terminal`` stays open: handlers made during the run (Prefect's console) hold it and
            # still write at exit (the embedded server's "Stopping" line)
        for logger, handlers, propagate, level in saved_loggers:
            logger.handlers, logger.propagate = handlers, propagate
            logger.setLevel(level)
        handler.close()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def stderr_to_log() -> Iterator[None]:
    """File descriptor 2 points at the run's log file inside the block (nothing without one): TensorFlow's
    import, for callers outside ``run_log`` (where descriptor 2 already points there, this is harmless)."""
    path = os.environ.get(ENV)
    if not path:
        yield
        return
    with _redirect_lock:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with open(path, "ab") as log:
                os.dup2(log.fileno(), 2)
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
