"""What a Dask worker needs from the run it works for, set before it runs any recflow task.

``recflow run --dask`` runs the tasks in worker processes (``tasks/runners.py``), possibly on other
machines. The tasks find everything through the environment, as they do in the run's own process:
the artifacts root (``$RECFLOW_HOME``: stage folders, Prefect results and cache records), the MLflow
tracking store (``$MLFLOW_TRACKING_URI``, else the root's sqlite file) and the Prefect API the run
reports to. ``RunEnvironment`` is a Dask worker plugin that copies those values from the run into
every worker, present and future, when the run connects; a worker needs no setup of its own beyond
the project installed at the same version (``project_digest`` checks it).

Progress bars cannot reach the run's console from a worker process, so workers draw none
(``RECFLOW_PROGRESS=0``); their tracked loops still report to Prefect as progress artifacts.

No Prefect import here: the plugin is unpickled on the worker, and Prefect reads its settings
from the environment once, at import, so ``PREFECT_API_URL`` must be set before Prefect loads.
"""

from __future__ import annotations

import os
from pathlib import Path

from distributed.diagnostics.plugin import WorkerPlugin

from recflow.runtime.store import shared_root

#: the variables a worker takes from the run (when the run has them)
SHARED_VARIABLES = ("RECFLOW_HOME", "MLFLOW_TRACKING_URI", "PREFECT_API_URL", "RECFLOW_PREFECT_SERVER", "RECFLOW_MLFLOW_URL", "PREFECT_API_KEY")
PLUGIN_NAME = "recflow-run-environment"


class RunEnvironment(WorkerPlugin):
    """Sets the run's variables (``SHARED_VARIABLES``) in each worker process and switches its bars off."""

    idempotent = False  # a later run re-registers it with its own values

    def __init__(self, variables: dict[str, str]) -> None:
        self.variables = {**variables, "RECFLOW_PROGRESS": "0"}

    def setup(self, worker) -> None:
        os.environ.update(self.variables)


def run_variables(root: str | Path, prefect_api_url: str | None) -> dict[str, str]:
    """The run's values of ``SHARED_VARIABLES``: the root as the run resolved it, the API it uses."""
    values = {name: os.environ[name] for name in SHARED_VARIABLES if os.environ.get(name)}
    values["RECFLOW_HOME"] = shared_root(root)
    if prefect_api_url:
        values["PREFECT_API_URL"] = prefect_api_url
    return values


#: the packages whose sources make up task cache keys (``flows`` runs in the run's own process only)
TASK_PACKAGES = ("recflow", "tasks")


def project_digest() -> str:
    """A digest of the sources that tasks run and key their caches on, as this process finds them
    (run on each worker to compare with the run's own)."""
    from recflow.runtime.lineage import Lineage, package_dirs

    lineage = Lineage(package_dirs(TASK_PACKAGES))
    return lineage.digest(sorted(lineage.sources()))
