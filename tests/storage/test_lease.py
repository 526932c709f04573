"""Runs on different machines sharing a bucket never overlap; a dead holder's lease lapses (loopback S3)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from recflow.runtime.lease import LEASE_OBJECT, BucketLease
from recflow.runtime.rootlock import RootLock
from recflow.runtime.store import artifacts_root

REPO = Path(__file__).resolve().parents[2]
TTL = 1.5


def lease(s3, pid: int = 1) -> BucketLease:
    return BucketLease(s3, {"pid": pid, "host": "test", "since": "2026-11-30T00:00:00Z"}, ttl=TTL)


@pytest.fixture
def clean_lease(s3):
    yield
    s3.fs.rm(s3.path(LEASE_OBJECT)) if s3.fs.exists(s3.path(LEASE_OBJECT)) else None


def test_a_held_lease_is_renewed_past_its_ttl_and_freed_on_release(s3, clean_lease):
    first, second = lease(s3, 1), lease(s3, 2)
    assert first.try_acquire()
    time.sleep(2 * TTL)  # the heartbeat keeps it alive
    assert not second.try_acquire()
    first.release()
    assert second.try_acquire()
    second.release()
    assert not s3.fs.exists(s3.path(LEASE_OBJECT))


def test_of_two_runs_taking_over_an_expired_lease_exactly_one_wins(s3, clean_lease):
    s3.fs.pipe_file(s3.path(LEASE_OBJECT), json.dumps({"pid": 9, "host": "gone", "since": "x", "expires": time.time() - 1}).encode())
    contenders = [lease(s3, pid) for pid in range(6)]
    won: list[bool] = [False] * len(contenders)

    def take(i: int) -> None:
        won[i] = contenders[i].try_acquire()

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(contenders))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(won) == 1
    contenders[won.index(True)].release()


HOLDER = textwrap.dedent(
    """
    import sys, time
    from recflow.runtime.rootlock import RootLock
    from recflow.runtime.store import artifacts_root
    lock = RootLock(artifacts_root())
    assert lock.try_acquire()
    print("held", flush=True)
    time.sleep(600)
    """
)


def test_a_run_killed_on_another_machine_frees_the_bucket_after_its_ttl(s3, clean_lease, tmp_path, monkeypatch):
    env = {**os.environ, "RECFLOW_CACHE_DIR": str(tmp_path / "other-machine"), "RECFLOW_LEASE_SECONDS": str(TTL), "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], env=env, stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "held"
        here = RootLock(artifacts_root())  # this machine's mirror: its own flock, the same bucket
        assert not here.try_acquire()
        assert here.holder().pid == holder.pid
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        deadline = time.monotonic() + 10 * TTL
        while not here.try_acquire():
            assert time.monotonic() < deadline, "the dead holder's lease never lapsed"
            time.sleep(0.2)
        assert here.is_held()
        here.release()
    finally:
        holder.kill()
        holder.wait()
