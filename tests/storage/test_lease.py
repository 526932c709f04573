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


# ----------------------------------------------------------------------------- faults: a wrong bucket, a lost lease (issue 26)


def test_a_root_in_a_bucket_that_does_not_exist_fails_at_once_naming_the_bucket(s3, tmp_path):
    env = {**os.environ, "RECFLOW_HOME": "s3://no-such-bucket-26/x", "RECFLOW_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "recflow.cli.main", "run"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert time.monotonic() - started < 30
    assert done.returncode != 0
    assert "bucket 'no-such-bucket-26' does not exist" in done.stderr
    assert "waiting" not in done.stderr


def test_a_refused_bucket_is_named_in_the_error(s3, clean_lease, monkeypatch):
    def forbidden(*args, **kwargs):
        raise PermissionError("Forbidden")

    monkeypatch.setattr(s3.fs, "pipe_file", forbidden)
    with pytest.raises(Exception, match="access to bucket 'recflow-test' is refused"):
        lease(s3).try_acquire()


def test_a_holder_whose_lease_object_the_store_lost_stops_writing_and_says_so(s3, clean_lease, tmp_path):
    from recflow.runtime import storage

    lost: list[str] = []
    holder = BucketLease(s3, {"pid": 1, "host": "test", "since": "x"}, ttl=TTL, on_lost=lost.append)
    assert holder.try_acquire()
    storage.fence(s3, holder.check)
    try:
        folder = tmp_path / "stage"
        folder.mkdir()
        (folder / "a.txt").write_text("a")
        (folder / "manifest.json").write_text(json.dumps({"files": {"a.txt": "x"}}))
        storage.publish(folder, s3, "fenced/one")  # while held: written
        s3.fs.rm_file(s3.path(LEASE_OBJECT))  # the store loses the object (a restart, a wipe)
        deadline = time.monotonic() + 3 * TTL
        while not lost and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lost and "the store lost the lease object" in lost[0]
        with pytest.raises(storage.LeaseLost, match="the store lost the lease object"):
            storage.publish(folder, s3, "fenced/two")
        assert not s3.fs.exists(s3.path("fenced/two"))
    finally:
        storage.unfence(s3)
        holder.release()


FROZEN_WRITER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from recflow.runtime import storage
    from recflow.runtime.rootlock import RootLock
    from recflow.runtime.store import artifacts_root
    lock = RootLock(artifacts_root())
    assert lock.try_acquire()
    folder = Path(sys.argv[1])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps({"files": {}}))
    remote = storage.configured_remote()
    print("held", flush=True)
    n = 0
    while True:
        print("start", n, time.monotonic(), flush=True)
        try:
            storage.publish(folder, remote, f"writes/{n:05d}")
        except storage.LeaseLost as exc:
            print("refused:", exc, flush=True)
            break
        n += 1
        time.sleep(0.05)
    """
)


def test_a_holder_frozen_past_its_ttl_writes_nothing_once_another_run_holds_the_lease(s3, clean_lease, tmp_path):
    """SIGSTOP a writing holder for 3 TTLs, let another run take the lease, SIGCONT: no write it starts after that lands.

    A PUT already on the wire when the process froze may still land (the client cannot recall it; only the store
    could refuse it, and S3 has no fencing tokens): at most that one, and none the holder started after waking."""
    env = {**os.environ, "RECFLOW_CACHE_DIR": str(tmp_path / "frozen"), "RECFLOW_LEASE_SECONDS": str(TTL), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", FROZEN_WRITER, str(tmp_path / "folder")]
    writer = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert writer.stdout.readline().strip() == "held"
        time.sleep(0.5)
        os.kill(writer.pid, signal.SIGSTOP)
        time.sleep(3 * TTL)
        successor = lease(s3, 2)
        assert successor.try_acquire()  # the frozen holder's lease lapsed
        taken_over = len(s3.fs.ls(s3.path("writes"), refresh=True))
        woken = time.monotonic()  # the same clock as the writer's (CLOCK_MONOTONIC is system-wide)
        os.kill(writer.pid, signal.SIGCONT)
        out, err = writer.communicate(timeout=60)
        assert "refused:" in out
        landed = {Path(p).name for p in s3.fs.ls(s3.path("writes"), refresh=True)}
        started_awake = {f"{int(n):05d}" for _, n, t in (line.split() for line in out.splitlines() if line.startswith("start ")) if float(t) > woken}
        assert not landed & started_awake  # fenced: every write begun after waking was refused
        assert len(landed) <= taken_over + 1  # at most the one in flight at the freeze
        successor.release()
    finally:
        writer.kill()
        writer.wait()
        s3.fs.rm(s3.path("writes"), recursive=True)


def test_a_lease_taken_over_names_another_run_as_the_reason(s3, clean_lease):
    lost: list[str] = []
    holder = BucketLease(s3, {"pid": 1, "host": "test", "since": "x"}, ttl=TTL, on_lost=lost.append)
    assert holder.try_acquire()
    s3.fs.pipe_file(s3.path(LEASE_OBJECT), json.dumps({"pid": 77, "host": "elsewhere", "since": "x", "expires": time.time() + 60}).encode())
    deadline = time.monotonic() + 3 * TTL
    while not lost and time.monotonic() < deadline:
        time.sleep(0.05)
    holder.release()
    assert lost and "another run holds the lease" in lost[0] and "pid 77 on elsewhere" in lost[0]
