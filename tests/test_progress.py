"""``recflow.progress``: long loops report to listeners (how Prefect shows library progress)."""

from __future__ import annotations

import pytest

from recflow import progress


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
