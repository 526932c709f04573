"""The one reference requests read, and the poller that swaps it when the champion moves.

``Service.current`` is the served ``ServedVersion``. A request reads it once and uses that
object throughout, so it can neither fail nor mix two versions during a swap. The swap is a
single attribute assignment (atomic under the interpreter lock); the new version is loaded
completely beside the old one first (files read, every warm user's top-K computed), in the
poller's thread, while the old one keeps answering. The old version is dropped when the last
request holding it finishes (reference counting): its memory is given back then.

The poller asks the ``AliasSource`` every ``interval`` seconds where the alias points; a
pointer whose key differs from the served one is loaded and swapped in. A version that fails
to load (files removed meanwhile, a half-written record) is reported by ``/health`` and tried
again at the next poll; the old version keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from recflow.api.sources import AliasSource
from recflow.api.versions import ServedVersion

log = logging.getLogger("recflow.api")


def prepare_process() -> None:
    """What a serving process sets once, before it answers: faiss searches with one OpenMP thread.

    A query is one vector: an OpenMP team buys it nothing, and its threads spin after each search
    on the cores the event loop and the load share. Pinned (``recflow.retrieval.index.pin_faiss_threads``),
    a search also takes no process-wide lock, so pool threads search side by side.
    """
    from recflow.retrieval.index import pin_faiss_threads

    pin_faiss_threads(1)


class Service:
    """Holds the served version; ``start`` loads the first one and polls the alias in a daemon thread."""

    def __init__(self, source: AliasSource, root: Path, *, interval: float = 30.0, depth: int = 100, precompute: str = "auto") -> None:
        if interval <= 0:
            raise ValueError(f"the poll interval must be > 0 seconds, got {interval}")
        self.source, self.root, self.interval, self.depth, self.precompute = source, Path(root), float(interval), int(depth), precompute
        self.current: ServedVersion | None = None
        self.last_error: str | None = None
        self.swaps = 0
        self.polls = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- loading and swapping ------------------------------------------------------------
    def load(self, pointer) -> ServedVersion:
        return ServedVersion.load(pointer, self.root, depth=self.depth, precompute=self.precompute)

    def swap(self, version: ServedVersion) -> None:
        """The one reference assignment every request sees either side of."""
        previous = self.current
        self.current = version
        if previous is not None:
            self.swaps += 1
            log.info("swapped %s -> %s", previous.key, version.key)

    def poll_once(self) -> bool:
        """Load and swap in the version the alias points at, if it is another one; whether it swapped."""
        self.polls += 1
        try:
            pointer = self.source.current()
            served = self.current
            if served is not None and pointer.key == served.key:
                self.last_error = None
                return False
            self.swap(self.load(pointer))
            self.last_error = None
            return True
        except Exception as exc:  # the old version keeps serving; /health says why
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("could not load the version %s points at: %s", self.source.describe(), self.last_error)
            return False

    # -- the poller --------------------------------------------------------------------------
    def start(self) -> None:
        """Load the first version and poll the alias, both in one daemon thread (the server answers /health meanwhile)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="recflow-api-poller", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.poll_once()
        while self.current is None and not self._stop.wait(min(self.interval, 1.0)):  # retry the first load quickly
            self.poll_once()
        if not self.source.moves:
            return
        while not self._stop.wait(self.interval):
            self.poll_once()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wait_ready(self, timeout: float = 60.0) -> ServedVersion:
        """The first loaded version (for callers that serve only once it is there)."""
        deadline = time.monotonic() + timeout
        while self.current is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no version loaded within {timeout:g} s: {self.last_error or 'still loading'}")
            time.sleep(0.05)
        return self.current

    def health(self) -> dict[str, Any]:
        served = self.current
        return {
            "status": "ready" if served is not None else ("failing" if self.last_error else "loading"),
            "version": served.version if served is not None else None,
            "model": served.model if served is not None else None,
            "alias": self.source.describe(),
            "poll_interval_s": self.interval if self.source.moves else None,
            "swaps": self.swaps,
            "last_error": self.last_error,
        }
