"""Run-level guards for scheduled operation: one run at a time per artifacts root, cache refresh.

Two runs writing one artifacts root would race on its content-addressed folders, its Prefect
result records and its MLflow store, and a weekly rebuild could delete a folder a nightly run is
reading. So every pipeline run holds the root's Prefect global concurrency limit (one slot) for
its whole duration: a second run, from any deployment, ``recflow serve`` or ``recflow run``,
waits for the first. The slot is leased and renewed while the run lives, so a crashed run frees
it when the lease expires, and the UI's Concurrency page shows the limit and who holds it.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

from prefect import get_run_logger
from prefect.exceptions import MissingContextError
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.settings import PREFECT_TASKS_REFRESH_CACHE, temporary_settings


def root_limit_name(root: Path) -> str:
    """``recflow-root-<12 hex of the resolved path>``: one limit per artifacts root, stable across runs."""
    return "recflow-root-" + hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:12]


def ensure_root_limit(name: str) -> int:
    """Create the one-slot limit if this server has none yet; returns its active slots."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    with get_client(sync_client=True) as client:
        try:
            return client.read_global_concurrency_limit_by_name(name).active_slots
        except ObjectNotFound:
            pass
        with contextlib.suppress(ObjectAlreadyExists):  # another run created it meanwhile
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
        return client.read_global_concurrency_limit_by_name(name).active_slots


@contextlib.contextmanager
def exclusive_root(root: Path) -> Iterator[None]:
    """Hold the artifacts root's one slot for the block; wait (and say so) while another run has it."""
    name = root_limit_name(root)
    if ensure_root_limit(name):
        _logger().info("another run holds %s (concurrency limit %s); waiting for it to finish", root, name)
    with concurrency(name, occupy=1, strict=True, raise_on_lease_renewal_failure=False):
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
