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


def test_a_loop_driven_by_callbacks_is_named_in_the_heartbeat_until_it_closes():
    with progress.loop("mf: epochs", 20) as epochs:
        epochs.advance(3)
        assert progress.status_line(42).endswith("working: mf: epochs 3/20")
    assert progress.status_line(42) == "[   42s] working"


def test_on_a_terminal_each_loop_draws_a_bar_with_its_name_and_count_under_a_working_row():
    """Operated on a pseudo-terminal, as a user's shell is: the bar rows rich draws, read back from the pty."""
    import os
    import pty
    import re
    import subprocess
    import sys

    script = (
        "import time\n"
        "from recflow.utils import progress\n"
        "with progress.heartbeat():\n"
        "    for i in progress.track(range(4), desc='mf: epochs'):\n"
        "        time.sleep(0.4)\n"
        "    print('after the loop', flush=True)\n"
    )
    main, child = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "RECFLOW_PROGRESS"} | {"TERM": "xterm-256color", "COLUMNS": "100"}
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=child, stdout=child, stderr=child, env=env)
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(main)
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode(errors="replace"))
    assert proc.returncode == 0, screen
    assert "recflow: working" in screen
    assert re.search(r"mf: epochs .*━.* [123]/4", screen)  # a bar and its count, while the loop ran
    assert "after the loop" in screen
