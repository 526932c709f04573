"""A failed run's output: one line per failed task on the console, the tracebacks in a log file."""

from __future__ import annotations

import io
import logging
import pickle

from recflow.runtime.outcomes import PipelineFailed, StageFailure
from recflow.runtime.runlog import log_path, run_log


def test_the_console_gets_the_message_and_the_log_file_the_traceback(tmp_path):
    console = io.StringIO()
    handler = logging.StreamHandler(console)
    logging.getLogger().addHandler(handler)
    try:
        with run_log(tmp_path / "logs" / "run.log") as path:
            try:
                raise ValueError("reg must be >= 0")
            except ValueError:
                logging.getLogger("recflow.test").exception("train[bias] failed")
    finally:
        logging.getLogger().removeHandler(handler)
    assert console.getvalue() == "train[bias] failed\n"
    text = path.read_text()
    assert "train[bias] failed" in text and "Traceback (most recent call last)" in text and "ValueError: reg must be >= 0" in text


def test_consoles_show_tracebacks_again_after_the_run(tmp_path):
    console = io.StringIO()
    handler = logging.StreamHandler(console)
    logging.getLogger().addHandler(handler)
    try:
        with run_log(tmp_path / "run.log"):
            pass
        try:
            raise ValueError("later")
        except ValueError:
            logging.getLogger("recflow.test").exception("after")
    finally:
        logging.getLogger().removeHandler(handler)
    assert "Traceback" in console.getvalue()


def test_log_files_are_named_by_start_time_and_preset(tmp_path):
    from datetime import datetime

    assert log_path(tmp_path, "my preset", datetime(2026, 11, 30, 9, 5, 7)) == tmp_path / "logs" / "20261130-090507-my-preset.log"


def test_a_failed_pipeline_says_one_line_per_failed_task_then_where_the_tracebacks_are():
    exc = PipelineFailed(
        [StageFailure("train", "ValueError: reg must be >= 0\nmore", "bias"), StageFailure("track[mlflow]", "OperationalError: x")], "/r/logs/a.log"
    )
    assert str(exc).splitlines() == [
        "train[bias] failed: ValueError: reg must be >= 0 more",
        "track[mlflow] failed: OperationalError: x",
        "tracebacks: /r/logs/a.log",
    ]
    assert str(pickle.loads(pickle.dumps(exc))) == str(exc)  # Prefect may persist a flow's exception


def test_only_a_busy_database_is_retried():
    from tasks.publish import busy_database

    try:
        try:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        except RuntimeError as inner:
            raise ValueError("MlflowException: could not log") from inner
    except ValueError as outer:
        assert busy_database(outer)
    assert not busy_database(ValueError("no such column"))


def test_a_message_that_starts_on_a_new_line_still_says_it_on_the_line():
    failure = StageFailure("index", "ValueError: \n$10^4$\n^\nParseException: Expected end of text", "mf")
    assert failure.line() == "index[mf] failed: ValueError: $10^4$ ^ ParseException: Expected end of text"


def test_nested_run_logs_leave_the_console_as_it_was(tmp_path):
    handler = logging.StreamHandler(io.StringIO())
    logging.getLogger().addHandler(handler)
    try:
        with run_log(tmp_path / "outer.log"), run_log(tmp_path / "inner.log"):
            pass
        assert "emit" not in handler.__dict__
    finally:
        logging.getLogger().removeHandler(handler)
