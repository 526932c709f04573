"""Where a pipeline run's tasks execute: this process's thread pool (the default) or a Dask cluster.

``recflow run --dask`` (or ``runner: {kind: dask}``) hands every submitted task to prefect-dask's
``DaskTaskRunner``: on a ``distributed.LocalCluster`` of worker processes on 127.0.0.1 started for
the run, or on an existing scheduler (``--dask tcp://host:8786``, workers started with ``dask
worker``). Each model's train, evaluate and index then run on a worker, models in parallel across
workers. The flow is the same either way; the code that starts it picks the runner
(``pipeline.with_options(task_runner=...)``).

What a worker needs from the run, and how it gets it:
  * the artifacts root, MLflow store and Prefect API: ``recflow.runtime.cluster.RunEnvironment``, a worker
    plugin registered when the run connects (prefect-dask also ships the run's Prefect settings
    with each task, but Prefect's background log and event services read the environment);
  * the project's code: installed on the worker; ``ClusterCodeMismatch`` stops a run whose workers
    would compute different code (and different cache keys) than the run's own process;
  * the run's root lock: no. The flow's process holds it for the whole run; tasks never take it.
  * the console: workers' ``prefect.task_runs`` records are forwarded to the run's process
    (``Client.forward_logging``) and not sent to the Prefect API twice. Each task's state is in the
    Prefect UI and, for a LocalCluster, in the run's log file (the workers' stderr).

A worker that dies (``kill -9``, out of memory) takes its running task with it; the scheduler
runs it again on another worker. It also loses the results it held, and the scheduler recomputes
those that are still wanted (Prefect issue #15442): such a rerun asks Prefect's cache first, and our
cache key (``tasks/caching.py``) does not depend on the task run, so a recomputed stage is a cache
hit that reads its persisted result and builds nothing.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from prefect.settings import PREFECT_API_URL
from prefect_dask import DaskTaskRunner

from recflow.runtime.cluster import PLUGIN_NAME, RunEnvironment, project_digest, run_variables
from recflow.runtime.config import RunnerConfig

log = logging.getLogger("recflow.runners")
#: Prefect's per-task-run logger: "Finished in state Completed()" comes through it
TASK_RUN_LOGGER = "prefect.task_runs"


class ClusterCodeMismatch(RuntimeError):
    """A worker imports different recflow sources than the run (another checkout or version)."""


def resolved_runner(config: RunnerConfig, dask: str | None = None) -> RunnerConfig:
    """``config`` with the command line's ``--dask [ADDRESS]`` applied (``local``: a LocalCluster)."""
    if dask is None:
        return config
    address = None if dask in ("", "local") else dask
    return RunnerConfig.model_validate({**config.model_dump(), "kind": "dask", "address": address or config.address})


def task_runner_for(config: RunnerConfig, root: Any) -> DaskTaskRunner | None:
    """The task runner ``config`` asks for; None: the flow's own (Prefect's thread pool)."""
    if config.kind != "dask":
        return None
    logging.getLogger("distributed").setLevel(logging.WARNING)  # the cluster's start-up chatter stays off the console
    if config.address:
        return RecflowDaskRunner(root=str(root), address=config.address)
    return RecflowDaskRunner(root=str(root), cluster_kwargs=local_cluster_kwargs(config))


def local_cluster_kwargs(config: RunnerConfig) -> dict[str, Any]:
    """A LocalCluster of worker processes bound to loopback. The scheduler's HTTP server (health
    checks; the dashboard when asked for) takes a free loopback port, not Dask's fixed 8787."""
    return {
        "n_workers": config.n_workers,
        "threads_per_worker": config.threads_per_worker,
        "processes": True,
        "host": "127.0.0.1",
        "dashboard_address": "127.0.0.1:0",
        "scheduler_kwargs": {"dashboard": config.dashboard},
        "memory_limit": config.memory_limit,
    }


class RecflowDaskRunner(DaskTaskRunner):
    """prefect-dask's runner, plus what the workers need from the run (see the module docstring)."""

    def __init__(self, *, root: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = root

    def duplicate(self) -> RecflowDaskRunner:  # Prefect starts each flow run on a duplicate
        kwargs: dict[str, Any] = {"address": self.address} if self.address else {"cluster_kwargs": self.cluster_kwargs}
        return type(self)(root=self.root, client_kwargs=self.client_kwargs, **kwargs)

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other) and getattr(other, "root", None) == self.root

    # Prefect enters a duplicate of the flow's task runner wherever it hydrates a task's context,
    # on every worker too: the cluster is prepared on the first submit, which only the flow's process makes
    _prepared: bool = False

    def submit(self, task, parameters, wait_for=None, dependencies=None):
        if not self._prepared:
            self._prepare(self.client)  # starts the LocalCluster or connects to the scheduler
            self._prepared = True
        return super().submit(task, parameters, wait_for, dependencies)

    def _prepare(self, client) -> None:
        client.register_plugin(RunEnvironment(run_variables(self.root, PREFECT_API_URL.value())), name=PLUGIN_NAME)
        check_worker_code(client)
        client.forward_logging(TASK_RUN_LOGGER, level=logging.INFO)
        logging.getLogger(TASK_RUN_LOGGER).addFilter(_not_sent_twice)
        log.info("tasks run on the Dask cluster at %s (%d workers)", client.scheduler.address, len(client.scheduler_info(n_workers=-1)["workers"]))

    def __exit__(self, *exc: Any) -> None:
        if self._prepared:
            logging.getLogger(TASK_RUN_LOGGER).removeFilter(_not_sent_twice)
            try:
                if self.address and self._client is not None and self._client.status == "running":
                    self._client.unforward_logging(TASK_RUN_LOGGER)  # a long-lived cluster keeps no plugin of ours
            except Exception as error:  # the cluster may be gone; the run's outcome does not depend on it
                log.debug("could not stop forwarding logs: %s", error)
        super().__exit__(*exc)


def check_worker_code(client) -> None:
    """Every worker imports the run's recflow sources, else ``ClusterCodeMismatch`` naming the workers."""
    ours = project_digest()
    theirs = client.run(project_digest)
    different = sorted(worker for worker, digest in theirs.items() if digest != ours)
    if different:
        raise ClusterCodeMismatch(
            f"Dask workers {', '.join(different)} import other recflow sources than this run "
            f"({os.getcwd()}): install the same version of the project on every worker"
        )


def _not_sent_twice(record: logging.LogRecord) -> bool:
    """A task-run record forwarded from a worker process reached the Prefect API from there already."""
    if getattr(record, "process", None) != os.getpid():
        record.send_to_api = False
    return True
