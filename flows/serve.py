"""``recflow schedules`` (formerly ``recflow serve``): prefect.yaml's deployments, schedules and limits, served from one process.

For a single machine: no work pool and no worker, the runs execute in this process (one at a
time). The deployments are built from prefect.yaml itself, so ``prefect deploy --all`` and
``recflow serve`` always schedule the same runs with the same parameters.

Served deployments are named ``<name>-served`` (``recflow-pipeline/default-served``): a served
deployment belongs to its serving process (Prefect pauses it when the process stops, and it has no
work pool or working directory), so under ``make deploy``'s names, serving would take over the
worker's deployments and stopping it would leave them paused and unrunnable. Run one or the other
for a given schedule; if both run, the root's lock still keeps their runs from overlapping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
PREFECT_YAML = REPO / "prefect.yaml"
ENTRYPOINT = "flows/pipeline.py:pipeline"
SERVED_SUFFIX = "-served"


class DeploymentSpecError(ValueError):
    """prefect.yaml asks for something ``recflow serve`` cannot serve; the message names the deployment."""


def deployment_specs(path: Path = PREFECT_YAML, names: list[str] | None = None) -> list[dict[str, Any]]:
    """The ``deployments`` of prefect.yaml (YAML anchors resolved), optionally only those named."""
    specs = (yaml.safe_load(Path(path).read_text()) or {}).get("deployments") or []
    known = [s["name"] for s in specs]
    for name in names or []:
        if name not in known:
            raise DeploymentSpecError(f"{path}: no deployment named {name!r}; there are {known}")
    chosen = [s for s in specs if not names or s["name"] in names]
    for spec in chosen:
        if spec.get("entrypoint") != ENTRYPOINT:
            raise DeploymentSpecError(f"{path}: deployment {spec['name']!r} runs {spec.get('entrypoint')!r}; recflow serve runs {ENTRYPOINT} only")
    return chosen


def schedules(spec: dict[str, Any]) -> list:
    from prefect.schedules import Cron

    out = []
    for s in spec.get("schedules") or []:
        if "cron" not in s:
            raise DeploymentSpecError(f"deployment {spec['name']!r}: only cron schedules are served, got {sorted(s)}")
        out.append(Cron(s["cron"], timezone=s.get("timezone"), active=s.get("active", True), parameters=s.get("parameters") or {}, slug=s.get("slug")))
    return out


def runner_deployments(specs: list[dict[str, Any]]) -> list:
    """``RunnerDeployment``s of the pipeline flow: parameters, tags, schedules and limits as prefect.yaml, names ``<name>-served``."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig

    from flows.pipeline import pipeline

    deployments = []
    for spec in specs:
        limit = spec.get("concurrency_limit")
        if isinstance(limit, dict):
            limit = ConcurrencyLimitConfig(limit=limit["limit"], collision_strategy=limit.get("collision_strategy", "ENQUEUE"))
        deployments.append(
            pipeline.to_deployment(
                name=spec["name"] + SERVED_SUFFIX,
                description=spec.get("description"),
                tags=[*(spec.get("tags") or []), "served"],
                parameters=spec.get("parameters") or {},
                schedules=schedules(spec),
                concurrency_limit=limit,
            )
        )
    return deployments


def serve(names: list[str] | None = None, path: Path = PREFECT_YAML) -> None:
    """Serve until interrupted; ``limit=1``: this process runs one flow run at a time."""
    from prefect import serve as prefect_serve

    from tasks.caching import prepare_results_storage, results_storage

    prepare_results_storage(results_storage())  # a bucket's results block must be saved before a flow run resolves it
    prefect_serve(*runner_deployments(deployment_specs(path, names)), limit=1)
