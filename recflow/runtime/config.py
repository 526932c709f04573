"""The runner slice of a run config: where tasks run (never part of a cache key)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from recflow.utils.config import Strict


class RunnerConfig(Strict):
    """Where the tasks run: ``threads`` (this process's thread pool, the default) or ``dask``
    (``recflow run --dask [ADDRESS]``; see ``tasks/runners.py``). Part of no cache key: a stage's
    result does not depend on where it ran."""

    kind: Literal["threads", "dask"] = "threads"
    address: str | None = Field(None, description="dask: an existing scheduler, tcp://host:8786; none: a LocalCluster of worker processes on 127.0.0.1")
    n_workers: int = Field(2, gt=0, description="LocalCluster: worker processes")
    threads_per_worker: int = Field(1, gt=0, description="LocalCluster: tasks each worker runs at once")
    memory_limit: str = Field("auto", description="LocalCluster: per worker (e.g. '8GiB'; 'auto': the machine's memory / n_workers)")
    dashboard: bool = Field(False, description="LocalCluster: serve Dask's dashboard on 127.0.0.1 (a free port, logged)")

    @field_validator("address")
    @classmethod
    def _address_is_a_scheduler(cls, address: str | None) -> str | None:
        if address is not None and "://" not in address:
            raise ValueError(f"{address!r} is not a scheduler address; expected e.g. tcp://host:8786")
        return address
