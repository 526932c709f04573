"""The artifacts root's OS lock: freed the instant its holder dies, waited for (naming the holder) while it lives."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from recflow.runtime.rootlock import LOCK_FILE, Holder, RootLock, waiting_message

REPO = Path(__file__).resolve().parents[1]

# Holds the root, starts a long-lived child (as a run starts its Prefect server), says so, then waits for stdin.
HOLDER = """
import subprocess, sys
from recflow.runtime.rootlock import RootLock
RootLock(sys.argv[1]).acquire()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(child.pid, flush=True)
sys.stdin.readline()
"""

WAITER = """
import sys
from recflow.runtime.rootlock import RootLock
RootLock(sys.argv[1]).acquire(poll=0.05)
print("acquired", flush=True)
"""


def _python(code: str, root: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", code, str(root)], env=env, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs
    )


@pytest.fixture
def holder(tmp_path):
    """A separate process holding ``tmp_path``'s lock, and the pid of the child it started."""
    proc = _python(HOLDER, tmp_path)
    child_pid = int(proc.stdout.readline())
    yield proc, child_pid
    proc.kill()
    proc.wait()
    os.kill(child_pid, signal.SIGKILL)


def test_a_lock_whose_holder_was_killed_with_sigkill_is_free_at_once(tmp_path, holder):
    proc, child_pid = holder
    lock = RootLock(tmp_path)
    assert lock.is_held() and not lock.try_acquire()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    os.kill(child_pid, 0)  # the holder's child still lives: it did not inherit the lock
    assert lock.try_acquire()
    lock.release()


def test_a_second_process_waits_says_who_holds_the_root_and_gets_it_when_the_holder_ends(tmp_path, holder):
    proc, _ = holder
    waiter = _python(WAITER, tmp_path)
    message = waiter.stderr.readline()
    assert message.startswith(f"artifacts root {tmp_path} is in use by pid {proc.pid} on {socket.gethostname()} since 20")
    assert message.rstrip().endswith("; waiting for it to finish (Ctrl-C to stop)")
    time.sleep(0.5)
    assert waiter.poll() is None  # still waiting
    proc.stdin.write("done\n")
    proc.stdin.flush()
    assert waiter.communicate(timeout=10)[0] == "acquired\n"


def test_the_holder_is_written_into_the_lock_file_and_the_message_names_pid_host_and_since(tmp_path):
    lock = RootLock(tmp_path)
    with lock.held():
        holder = lock.holder()
        assert (holder.pid, holder.host) == (os.getpid(), socket.gethostname())
    assert (tmp_path / LOCK_FILE).read_text() == ""  # released cleanly: no stale holder is shown
    since = Holder(4242, "box", "2026-11-30T11:00:00Z", "recflow run -c configs/smoke.yaml")
    now = datetime(2026, 11, 30, 11, 1, 30, tzinfo=timezone.utc)
    assert since.describe(now) == "pid 4242 on box since 2026-11-30T11:00:00Z (for 90 s): recflow run -c configs/smoke.yaml"
    assert waiting_message(Path("/data/artifacts"), None) == (
        "artifacts root /data/artifacts is in use by another process (not yet identified); waiting for it to finish (Ctrl-C to stop)"
    )


def test_the_lock_is_reentrant_within_a_process_and_freed_by_the_outermost_release(tmp_path):
    outer, inner = RootLock(tmp_path), RootLock(tmp_path)
    with outer.held():
        with inner.held():
            pass
        assert (
            _python("import sys\nfrom recflow.runtime.rootlock import RootLock\nprint(RootLock(sys.argv[1]).try_acquire())", tmp_path).communicate(timeout=30)[
                0
            ]
            == "False\n"
        )
    assert (
        _python("import sys\nfrom recflow.runtime.rootlock import RootLock\nprint(RootLock(sys.argv[1]).try_acquire())", tmp_path).communicate(timeout=30)[0]
        == "True\n"
    )
