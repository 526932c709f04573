"""Importing TensorFlow (``keras_training.import_tf``) leaves the process's streams to their owners."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")
REPO = Path(__file__).resolve().parents[2]


def test_a_later_logging_reconfiguration_does_not_close_the_stderr_tensorflow_was_imported_under():
    # as in a test run: TF first imported while sys.stderr is one capture stream, then Prefect's
    # first import (logging.config.dictConfig, which closes every handler) under another (a CLI
    # runner's); absl's handler used to close the first stream, which its owner still wrote to
    code = textwrap.dedent(
        """
        import io, logging.config, sys
        from recflow.models.keras_training import import_tf
        captured = io.StringIO()
        sys.stderr = captured
        import_tf(1)
        sys.stderr = io.StringIO()
        logging.config.dictConfig({"version": 1})
        sys.stderr = sys.__stderr__
        print("closed" if captured.closed else "open")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "open"
