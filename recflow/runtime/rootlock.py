"""One run at a time per artifacts root, guarded by a lock the operating system owns.

Two runs writing one root would race on its content-addressed folders, its Prefect result
records and its MLflow store (whose first creation is a sqlite migration that fails when two
processes run it at once). A run therefore holds ``fcntl.flock`` on ``<root>/.recflow.lock`` from
before it starts its Prefect server until after its last write.

Why an OS lock and not a Prefect concurrency limit: the kernel drops a ``flock`` the moment its
holder's last descriptor closes, which includes ``kill -9`` and a machine that lost power, so no
lock outlives its holder and nothing has to expire. And it lives on the root itself, so it
serialises runs whatever Prefect database (``PREFECT_HOME``, ``PREFECT_API_URL``) each one uses.

The lock file holds who has it (pid, host, since when, command) so a waiting run can say so. The
file is never deleted: removing a ``flock`` file lets two processes each lock a different inode.
The descriptor is opened non-inheritable, so child processes (the embedded Prefect server, a
worker's flow-run process) never keep the lock alive after the run ends.

A root on object storage (``RECFLOW_HOME=s3://...``) is shared by machines, which no ``flock``
reaches: there the run also holds the bucket's lease (``recflow.runtime.lease``: a conditional put, a
heartbeat, an expiry), taken after the local lock and released before it. A holder that dies
stops renewing, so its lease lapses after ``$RECFLOW_LEASE_SECONDS`` (60) instead of at once.

Within one process the lock is re-entrant (``recflow run`` takes it before the flow, the flow
takes it again); it does not order threads of one process against each other. ``flock`` is not
reliable on some network filesystems: keep the artifacts root on a local disk.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import ClassVar

from recflow.runtime import storage
from recflow.runtime.lease import BucketLease
from recflow.runtime.storage import remote_of

LOCK_FILE = ".recflow.lock"


@dataclass(frozen=True)
class Holder:
    """Who holds a root, as its holder wrote it into the lock file."""

    pid: int
    host: str
    since: str  # ISO 8601, UTC
    command: str = ""

    def describe(self, now: datetime | None = None) -> str:
        """``pid 123 on host since 2026-11-30T11:00:00Z (for 42 s): recflow run ...``"""
        text = f"pid {self.pid} on {self.host} since {self.since}"
        with contextlib.suppress(ValueError):
            started = datetime.fromisoformat(self.since.replace("Z", "+00:00"))
            text += f" (for {((now or datetime.now(timezone.utc)) - started).total_seconds():.0f} s)"
        return text + (f": {self.command}" if self.command else "")


def waiting_message(root: Path, holder: Holder | None) -> str:
    who = holder.describe() if holder else "another process (not yet identified)"
    return f"artifacts root {root} is in use by {who}; waiting for it to finish (Ctrl-C to stop)"


class RootLock:
    """``flock(LOCK_EX)`` on ``<root>/.recflow.lock``; see the module docstring for why."""

    # path -> [fd, depth]: one descriptor per root per process, so nested holders share it
    _held: ClassVar[dict[Path, list[int]]] = {}
    _leases: ClassVar[dict[Path, BucketLease]] = {}  # the bucket's lease, for a root mirroring one
    _guard: ClassVar[threading.Lock] = threading.Lock()
    #: called with the reason when a held bucket lease is lost (``recflow run`` stops the run); writes are fenced regardless
    lost_handlers: ClassVar[list[Callable[[str], None]]] = []

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.path = self.root.resolve() / LOCK_FILE
        self.remote = remote_of(self.root)

    def holder(self) -> Holder | None:
        """What the current holder wrote, or None (file absent, empty, or being rewritten); for a bucket, its lease's holder."""
        try:
            info = json.loads(self.path.read_text())
        except (OSError, ValueError):
            info = None
        if not info and self.remote is not None and (found := self._lease().current()):
            info = found[0]
        try:
            return Holder(int(info["pid"]), str(info["host"]), str(info["since"]), str(info.get("command", "")))
        except (ValueError, KeyError, TypeError):
            return None

    def _lease(self) -> BucketLease:
        return BucketLease(self.remote, _holder_info(), on_lost=_lease_lost)

    def is_held(self) -> bool:
        """Whether some process holds the lock now (probes with a non-blocking lock of our own)."""
        if self.path in self._held:
            return True
        if self.remote is not None and (found := self._lease().current()) and not self._lease().expired(found[0]):
            return True
        if not self.path.exists():
            return False
        fd = os.open(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return True
            raise
        finally:
            os.close(fd)  # closing drops the probe's lock, if it got one
        return False

    def try_acquire(self) -> bool:
        """Take the lock if free (or already ours); never waits."""
        with self._guard:
            if self.path in self._held:
                self._held[self.path][1] += 1
                return True
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # non-inheritable (PEP 446)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    return False
                raise
            if self.remote is not None:
                lease = self._lease()
                if not lease.try_acquire():  # another machine's run holds the bucket
                    os.close(fd)
                    return False
                self._leases[self.path] = lease
                storage.fence(self.remote, lease.check)  # every write to the bucket checks the lease first
            self._write_holder(fd)
            self._held[self.path] = [fd, 1]
            return True

    def acquire(self, on_wait: Callable[[str], None] | None = None, poll: float = 0.25) -> None:
        """Wait as long as it takes; ``on_wait`` gets a message naming the holder, again when the holder changes.

        Polls a non-blocking lock instead of blocking in ``flock`` so the message can name each
        new holder and Ctrl-C (a ``KeyboardInterrupt`` between polls) ends the wait at once.
        """
        said: Holder | None | bool = False
        while not self.try_acquire():
            holder = self.holder()
            if holder != said and (holder is not None or said is False):
                (on_wait or _to_stderr)(waiting_message(self.root, holder))
                said = holder
            time.sleep(poll)

    def release(self) -> None:
        with self._guard:
            entry = self._held.get(self.path)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del self._held[self.path]
            if (lease := self._leases.pop(self.path, None)) is not None:
                storage.unfence(self.remote)
                lease.release()
            with contextlib.suppress(OSError):
                os.ftruncate(entry[0], 0)  # a reader between now and the next holder sees "unknown", not us
            os.close(entry[0])  # closing the descriptor is what releases the flock

    @contextlib.contextmanager
    def held(self, on_wait: Callable[[str], None] | None = None) -> Iterator[RootLock]:
        self.acquire(on_wait)
        try:
            yield self
        finally:
            self.release()

    @staticmethod
    def _write_holder(fd: int) -> None:
        data = json.dumps(_holder_info()).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)


def _holder_info() -> dict[str, object]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:200] if sys.argv and sys.argv[0] else "",
    }


def _lease_lost(reason: str) -> None:
    for handler in list(RootLock.lost_handlers):
        handler(reason)


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def exclusive(root: Path, on_wait: Callable[[str], None] | None = None) -> Iterator[RootLock]:
    """Hold ``root`` for the block: ``with exclusive(root): ...``."""
    with RootLock(root).held(on_wait) as lock:
        yield lock
