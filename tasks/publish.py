"""The flow's tail as tasks: ``track[mlflow]`` -> ``catalogue`` -> ``champion`` -> ``report``.

They run after every model's train / evaluate / index tasks have settled and read only
``ModelOutcome`` descriptors, so they show in the Prefect UI like every other step and fail or
retry on their own. None is cached: each writes into this run's MLflow runs, which are new every
run (what they read is cached upstream, so a cached rerun still logs a complete run quickly).
The three that write to MLflow's database retry when it is busy (another process holding the
sqlite write lock); any other error is final.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from recflow.experiments.config import RunConfig
from recflow.experiments.serving.champion import register_champion
from recflow.experiments.serving.publish import publish_run
from recflow.experiments.tracking import delete_model_runs, log_pipeline_run
from recflow.runtime.outcomes import ModelOutcome
from recflow.runtime.store import Artifact, artifacts_root
from tasks.reporting import publish_run_report

BUSY_MARKERS = ("database is locked", "database is busy", "database table is locked")


def busy_database(exc: BaseException | None) -> bool:
    """An sqlite write lock held by someone else, anywhere in the exception's chain (MLflow wraps SQLAlchemy's error)."""
    seen = 0
    while exc is not None and seen < 10:
        if any(marker in str(exc).lower() for marker in BUSY_MARKERS):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _retry_when_busy(_task, _task_run, state) -> bool:
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, BaseException) and busy_database(exc)


TAIL = {"cache_policy": NO_CACHE, "persist_result": False}
RETRIED = {"retries": 3, "retry_delay_seconds": [2, 5, 15], "retry_condition_fn": _retry_when_busy}


@task(name="track", task_run_name="track[mlflow]", **TAIL, **RETRIED)
def track(
    cfg: RunConfig,
    parent: dict[str, Any],
    dataset_path: str,
    data: Artifact,
    split: Artifact,
    features: Artifact | None,
    models: dict[str, ModelOutcome],
    task_counts: dict[str, int],
) -> dict[str, Any]:
    """Every model's nested run (params, metrics, curves, model files) under the pipeline's parent run."""
    delete_model_runs(parent)  # a retried attempt starts clean: one nested run per model
    return log_pipeline_run(
        cfg, dataset_path=dataset_path, data=data, split=split, features=features, models=models, task_counts=task_counts, parent_run_id=parent["run_id"]
    )


@task(name="report", task_run_name="report", **TAIL)
def report(
    cfg: RunConfig,
    models: dict[str, ModelOutcome],
    tracking: dict[str, Any],
    task_counts: dict[str, int],
    split: Artifact,
    serving: dict[str, Any] | None = None,
) -> None:
    """The Prefect run report (metrics table, summary with MLflow links, the champion this run left); never fails the run.

    It runs after ``champion`` (``serving`` is its result, None when catalogue or champion failed)."""
    publish_run_report(cfg, models, tracking, task_counts, split.meta["protocol"], serving)


@task(name="catalogue", task_run_name="catalogue", **TAIL, **RETRIED)
def catalogue(cfg: RunConfig, tracking: dict[str, Any], models: dict[str, ModelOutcome], split: Artifact, data: Artifact) -> dict[str, Any]:
    """The run's catalogue, every index into its model's MLflow run, and the run record the CLI serves from."""
    return publish_run(cfg, tracking, models, split, data, register=False)


@task(name="champion", task_run_name="champion", **TAIL, **RETRIED)
def champion(cfg: RunConfig, catalogued: dict[str, Any]) -> dict[str, Any]:
    """Register the run's best model and move the ``champion`` alias when it beats the current one."""
    if not cfg.serving.register_model or catalogued["best"] is None:
        return catalogued
    record = json.loads(Path(catalogued["record"]).read_text())
    return {**catalogued, "champion": register_champion(record, artifacts_root())}
