"""``recflow.utils.progress``: long loops report to listeners (how Prefect shows library progress)."""

from __future__ import annotations

import time

import pytest

from recflow.utils import progress


@pytest.fixture
def heard():
    events: list = []

    def listener(desc, total):
        events.append(("start", desc, total))
        return lambda done: events.append(("step", done))

    progress.add_listener(listener)
    yield events
    progress.remove_listener(listener)


def test_a_tracked_loop_reports_its_start_and_every_step(heard):
    assert list(progress.track(["a", "b", "c"], desc="ranking")) == ["a", "b", "c"]
    assert heard == [("start", "ranking", 3), ("step", 1), ("step", 2), ("step", 3)]


def test_loops_shorter_than_min_total_report_nothing(heard):
    assert list(progress.track([1], desc="tiny", min_total=2)) == [1]
    assert heard == []


def test_a_listener_may_decline_a_loop():
    progress.add_listener(lambda desc, total: None)
    try:
        assert list(progress.track(range(3))) == [0, 1, 2]
    finally:
        progress._listeners.clear()


def test_the_heartbeat_prints_a_line_per_interval_naming_the_loops_in_progress():
    import io
    import threading

    stream, inside, release = io.StringIO(), threading.Event(), threading.Event()

    def work():
        for i in progress.track(range(4), desc="tuning items"):
            if i == 1:
                inside.set()
                release.wait(5)

    with progress.heartbeat(interval=0.05, stream=stream, force=True):
        worker = threading.Thread(target=work)
        worker.start()
        inside.wait(5)
        time.sleep(0.3)  # several intervals while the loop is at item 2 of 4
        release.set()
        worker.join()
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 3
    assert any(line.endswith("working: tuning items 1/4") for line in lines)
    assert progress.status_line(0).endswith("working")  # the finished loop is no longer listed


def test_no_heartbeat_when_progress_is_switched_off(monkeypatch):
    monkeypatch.setenv("RECFLOW_PROGRESS", "0")
    assert not progress.heartbeat_wanted()
