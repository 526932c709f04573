"""One run at a time per artifacts root on object storage: a lease object with a heartbeat.

A ``flock`` serialises processes of one machine only; machines sharing a bucket need a lock the
bucket itself arbitrates. ``<URL>/.recflow.lock`` is that lease:

  * taken with a conditional put that succeeds only if the object is absent (``If-None-Match: *``),
    so of two machines starting at once exactly one gets it;
  * renewed by a daemon thread every third of its time to live, each renewal conditional on the
    object still being the holder's own version (``If-Match: <etag>``); a holder that finds its
    lease taken over says so on stderr and stops renewing;
  * released by deleting it; a holder that dies (``kill -9``, a lost machine) stops renewing, so
    its lease expires ``ttl`` seconds after the last renewal, and the next run takes it over with
    a put conditional on the expired version, so of two waiters exactly one wins.

Expiry compares the holder's ``expires`` stamp with the waiter's clock: machines sharing a bucket
need clocks within a fraction of the TTL (NTP). The TTL is ``$RECFLOW_LEASE_SECONDS`` (default 60).

**Fencing.** A holder that cannot renew (the store restarted and lost the object, a network
partition, a process frozen past its TTL and resumed) must stop writing before anyone else can
take over. S3 has no fencing tokens, so the holder fences itself: every write to the root
(``recflow.runtime.storage.publish``, MLflow artifacts, run records) first calls :meth:`check`,
which refuses once the last *confirmed* renewal is older than two thirds of the TTL (measured
on the monotonic clock, which keeps running while a process is stopped), or once a renewal found
the object gone or rewritten. A waiter can take over only after the full TTL, so between the
holder's last write and a successor's first there is at least a third of the TTL. On loss the
renewal thread also calls ``on_lost`` with the reason (``recflow run`` stops the run there, exit 3),
and the reason says which it was: *another run holds it* (the object carries another holder's
version) or *the store lost the object* (it is gone: a restarted or wiped store).

A missing bucket or a refused access is an error naming the bucket at once, never a wait.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from recflow.runtime.storage import LeaseLost, RemoteRoot, StorageError, bucket_error

LEASE_OBJECT = ".recflow.lock"
CONDITIONAL_WRITES = ("s3", "s3a")  # stores whose fsspec filesystem passes If-None-Match / If-Match through
PRECONDITION_FAILED = (FileExistsError, OSError)  # s3fs: FileExistsError on If-None-Match, OSError(EINVAL) on If-Match


def default_ttl() -> float:
    return float(os.environ.get("RECFLOW_LEASE_SECONDS") or 60)


class BucketLease:
    """The lease on a remote root; ``info`` is what the holder publishes (pid, host, since, command)."""

    def __init__(self, remote: RemoteRoot, info: dict[str, Any], ttl: float | None = None, on_lost: Callable[[str], None] | None = None) -> None:
        if urlsplit(remote.url).scheme not in CONDITIONAL_WRITES:
            raise StorageError(f"artifacts root {remote.url}: runs are serialised with S3 conditional writes; use an s3:// root (AWS S3, MinIO)")
        self.remote = remote
        self.path = remote.path(LEASE_OBJECT)
        self.info = info
        self.ttl = ttl or default_ttl()
        self._etag: str | None = None
        self.on_lost = on_lost
        self.lost: str | None = None  # why this holder lost the lease, once it has
        self._confirmed = 0.0  # time.monotonic() just before the put that last confirmed the lease
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------- reading

    def current(self) -> tuple[dict[str, Any], str] | None:
        """The lease's body and version, or None when there is none (the version is read first: see ``try_acquire``)."""
        fs = self.remote.fs
        try:
            etag = fs.info(self.path, refresh=True)["ETag"]
            body = json.loads(fs.cat_file(self.path))
        except (FileNotFoundError, ValueError, KeyError):
            return None
        return body, etag

    def expired(self, body: dict[str, Any]) -> bool:
        return float(body.get("expires", 0)) < time.time()

    # ------------------------------------------------------------------------- holding

    def try_acquire(self) -> bool:
        """Take the lease if absent or expired; never waits."""
        fs = self.remote.fs
        started = time.monotonic()
        try:
            self._etag = _etag(fs.pipe_file(self.path, self._body(), IfNoneMatch="*"))
        except (FileNotFoundError, PermissionError) as exc:  # no such bucket, or no access: waiting would never end
            raise bucket_error(self.remote, exc) from None
        except PRECONDITION_FAILED:
            found = self.current()
            # the version was read before the body: if a newer holder wrote in between, the put below fails
            if found is None or not self.expired(found[0]):
                return False
            try:
                self._etag = _etag(fs.pipe_file(self.path, self._body(), IfMatch=found[1]))
            except PRECONDITION_FAILED:
                return False
        if self._etag is None:
            self._etag = fs.info(self.path, refresh=True)["ETag"]
        self._confirmed, self.lost = started, None
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew, name="recflow-lease", daemon=True)
        self._thread.start()
        return True

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        found = self.current()
        if found is not None and found[1] == self._etag:  # still ours (not taken over after we lost it)
            with contextlib.suppress(FileNotFoundError):
                self.remote.fs.rm_file(self.path)
        self._etag = None

    def check(self) -> None:
        """Raise ``LeaseLost`` unless this holder may still write (see the module docstring's fencing)."""
        if self.lost:
            raise LeaseLost(self.lost)
        age = time.monotonic() - self._confirmed
        if age > self.ttl * 2 / 3:
            raise LeaseLost(
                f"the lease on {self.remote.url} was last renewed {age:.0f} s ago (its TTL is {self.ttl:g} s): "
                "another run may take it over, so this run writes nothing more there"
            )

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            started = time.monotonic()
            try:
                self._etag = _etag(self.remote.fs.pipe_file(self.path, self._body(), IfMatch=self._etag)) or self._etag
                self._confirmed = started
                continue
            except Exception as exc:
                failure = type(exc).__name__
            with contextlib.suppress(Exception):
                found = self.current()
                if found is None:
                    return self._lose(f"the store lost the lease object {self.remote.url}/{LEASE_OBJECT} (a restarted or wiped store?)")
                if found[1] != self._etag:
                    holder = found[0]
                    who = f"pid {holder.get('pid')} on {holder.get('host')}" if isinstance(holder, dict) else "another run"
                    return self._lose(f"another run holds the lease on {self.remote.url} now ({who}): this one was not renewed within its TTL")
            # a network blip: try again next period (the lease lasts three of them; ``check`` closes writes meanwhile)
            print(f"recflow: could not renew the lease on {self.remote.url} ({failure}); retrying", file=sys.stderr, flush=True)

    def _lose(self, reason: str) -> None:
        self.lost = f"lost the lease: {reason}; this run stops writing to the bucket"
        print(f"recflow: {self.lost}", file=sys.stderr, flush=True)
        if self.on_lost is not None:
            with contextlib.suppress(Exception):
                self.on_lost(self.lost)

    def _body(self) -> bytes:
        return json.dumps({**self.info, "expires": time.time() + self.ttl}).encode()


def _etag(response: Any) -> str | None:
    return response.get("ETag") if isinstance(response, dict) else None
