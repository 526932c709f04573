"""Ctrl-C that stops a run within seconds, whatever its threads are doing.

Prefect runs tasks in worker threads. Python delivers ``KeyboardInterrupt`` to the main thread
only, cannot stop a thread that is inside native code (a Keras epoch, gensim, BLAS), and at exit
``concurrent.futures`` joins every worker thread: a plain Ctrl-C during training would leave the
process alive until the model finished. So, while a run is guarded by :class:`Interrupts`:

* the first Ctrl-C raises ``KeyboardInterrupt`` in the main thread, which unwinds what it cleanly
  can (a wait for the root lock ends at once, the root lock is released, Prefect records the
  crash) and arms a deadline of ``grace`` seconds;
* the caller, on catching it, or the deadline, if the main thread is stuck, or a second Ctrl-C,
  calls :meth:`Interrupts.exit`: the cleanups run (they stop child servers, which ``os._exit``
  would otherwise orphan), one line is printed, and ``os._exit`` ends the process without joining
  threads.

Ending a run this way loses nothing that a later run would trust: every stage writes into a
scratch folder renamed into place only when complete, a cache record is verified against its
folder's checksums before reuse, and the OS drops the root's ``flock`` with the process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable

INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, what shells report for a Ctrl-C'd command


class Interrupts:
    """Install the two-stage SIGINT handler for a ``with`` block (main thread only)."""

    def __init__(self, message: str, cleanups: Iterable[Callable[[], None]] = (), grace: float = 2.0, code: int = INTERRUPTED_EXIT_CODE) -> None:
        self.message = message
        self.cleanups = list(cleanups)
        self.grace = grace
        self.code = code
        self.interrupted = False
        self._exiting = threading.Lock()
        self._previous = None

    def __enter__(self) -> Interrupts:
        self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)

    def _on_sigint(self, signum: int, frame: object) -> None:
        if self.interrupted:
            self.exit()
        self.interrupted = True
        deadline = threading.Timer(self.grace, self.exit)
        deadline.daemon = True
        deadline.start()
        raise KeyboardInterrupt

    def abort(self, message: str, code: int) -> None:
        """End the run now from any thread with ``message`` and exit ``code`` (a lost lease: nothing more may be written)."""
        self.message, self.code = message, code
        self.exit()

    def exit(self) -> None:
        """Run the cleanups, print the message, end the process now (never returns)."""
        if not self._exiting.acquire(blocking=False):  # another thread is already exiting
            threading.Event().wait()
        for cleanup in self.cleanups:
            with contextlib.suppress(Exception):
                cleanup()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            print(self.message, file=sys.stderr, flush=True)
        os._exit(self.code)
