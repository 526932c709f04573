"""A run's log file: where the libraries' start-up and housekeeping lines go instead of the terminal.

A normal ``recflow run`` prints the pipeline's own lines (Prefect's task states, the summary). The
libraries underneath also talk: MLflow's database migrations and model validation, TensorFlow's
absl and C++ start-up lines (``cudart_stub``, ``failed call to cuInit``, which read like errors on a
CPU machine). Those go to ``<artifacts>/logs/run-<time>-<pid>.log``, which the run's summary names.

Python loggers are routed with handlers. TensorFlow's C++ lines are written to file descriptor 2
before absl is initialised and ignore ``TF_CPP_MIN_LOG_LEVEL``, so the TensorFlow import itself runs
with descriptor 2 pointing at the log file (:func:`stderr_to_log`); the window is the import, so a
line another thread writes to stderr meanwhile lands in the log file too, never lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

#: the log file of the current run (set by ``start``; read where TensorFlow is imported)
ENV = "RECFLOW_LOG_FILE"
#: loggers whose records go to the log file only
LIBRARY_LOGGERS = ("mlflow", "alembic", "sqlalchemy.engine", "huey", "absl", "tensorflow", "h5py", "keras", "git")

_redirect_lock = threading.Lock()


def start(root: Path) -> Path:
    """Open ``<root>/logs/run-<UTC time>-<pid>.log`` and route the libraries' loggers (and, through
    ``$RECFLOW_LOG_FILE``, TensorFlow's start-up) there; returns its path."""
    folder = Path(root) / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"run-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}.log"
    os.environ[ENV] = str(path)
    os.environ["MLFLOW_CONFIGURE_LOGGING"] = "false"  # MLflow would add its own stderr handler on import
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
        if name in ("mlflow", "absl", "tensorflow", "keras"):
            logger.setLevel(logging.INFO)
    return path


@contextlib.contextmanager
def stderr_to_log() -> Iterator[None]:
    """File descriptor 2 points at the run's log file inside the block (nothing without one)."""
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
