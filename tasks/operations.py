"""Run-level guards for scheduled operation: one run at a time per artifacts root, cache refresh.

Every pipeline run, from any deployment, ``recflow serve`` or ``recflow run``, holds the root's
OS file lock (``recflow.runtime.rootlock``) for its whole duration, so two runs never write one root at
once whatever Prefect database each uses, and a crashed run (even ``kill -9``) frees it at once.
A run that has to wait logs who holds the root (pid, host, since when) and keeps waiting. The
earlier Prefect global concurrency limit is gone: its lease lived in a Prefect server, so a run
killed with its embedded server kept the root locked for every later run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from prefect import get_run_logger
from prefect.exceptions import MissingContextError
from prefect.settings import PREFECT_TASKS_REFRESH_CACHE, temporary_settings

from recflow.runtime.rootlock import RootLock


@contextlib.contextmanager
def exclusive_root(root: Path) -> Iterator[None]:
    """Hold the artifacts root for the block; wait (and say who has it) while another run does."""
    with RootLock(root).held(on_wait=lambda message: _logger().warning(message)):
        yield


def _logger():
    try:
        return get_run_logger()
    except MissingContextError:
        from prefect.logging import get_logger

        return get_logger("recflow")


def refreshed_caches(refresh: bool) -> contextlib.AbstractContextManager:
    """``refresh=True`` (the weekly rebuild): every task runs and rewrites its cache record and folder."""
    if not refresh:
        return contextlib.nullcontext()
    return temporary_settings({PREFECT_TASKS_REFRESH_CACHE: True})


def refreshing() -> bool:
    """Whether the running task was asked to bypass its cache (task option or the setting above)."""
    from prefect.context import TaskRunContext

    ctx = TaskRunContext.get()
    if ctx is not None and ctx.task.refresh_cache is not None:
        return bool(ctx.task.refresh_cache)
    return bool(PREFECT_TASKS_REFRESH_CACHE.value())


def stop_embedded_servers() -> None:
    """Kill the temporary Prefect servers this process started (``os._exit`` skips their atexit stop)."""
    import sys

    module = sys.modules.get("prefect.server.api.server")
    if module is None:
        return
    for server in list(module.SubprocessASGIServer._instances.values()):
        process = getattr(server, "server_process", None)
        if process is not None and process.poll() is None:
            process.kill()
            with contextlib.suppress(Exception):
                process.wait(2)
