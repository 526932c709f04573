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
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from recflow.runtime.storage import RemoteRoot, StorageError

LEASE_OBJECT = ".recflow.lock"
CONDITIONAL_WRITES = ("s3", "s3a")  # stores whose fsspec filesystem passes If-None-Match / If-Match through
PRECONDITION_FAILED = (FileExistsError, OSError)  # s3fs: FileExistsError on If-None-Match, OSError(EINVAL) on If-Match


def default_ttl() -> float:
    return float(os.environ.get("RECFLOW_LEASE_SECONDS") or 60)


class BucketLease:
    """The lease on a remote root; ``info`` is what the holder publishes (pid, host, since, command)."""

    def __init__(self, remote: RemoteRoot, info: dict[str, Any], ttl: float | None = None) -> None:
        if urlsplit(remote.url).scheme not in CONDITIONAL_WRITES:
            raise StorageError(f"artifacts root {remote.url}: runs are serialised with S3 conditional writes; use an s3:// root (AWS S3, MinIO)")
        self.remote = remote
        self.path = remote.path(LEASE_OBJECT)
        self.info = info
        self.ttl = ttl or default_ttl()
        self._etag: str | None = None
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
        try:
            self._etag = _etag(fs.pipe_file(self.path, self._body(), IfNoneMatch="*"))
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

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self._etag = _etag(self.remote.fs.pipe_file(self.path, self._body(), IfMatch=self._etag)) or self._etag
                continue
            except Exception as exc:
                failure = type(exc).__name__
            with contextlib.suppress(Exception):
                found = self.current()
                if found is None or found[1] != self._etag:
                    print(f"recflow: lost the lease on {self.remote.url} (it expired and another run took it)", file=sys.stderr, flush=True)
                    return
            # a network blip: try again next period (the lease lasts three of them)
            print(f"recflow: could not renew the lease on {self.remote.url} ({failure}); retrying", file=sys.stderr, flush=True)

    def _body(self) -> bytes:
        return json.dumps({**self.info, "expires": time.time() + self.ttl}).encode()


def _etag(response: Any) -> str | None:
    return response.get("ETag") if isinstance(response, dict) else None
