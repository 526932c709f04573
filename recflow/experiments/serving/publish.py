"""Steps 1-3 of the flow's tail, in order: the catalogue, every index into MLflow, the run record.

``tasks/publish.py``'s ``catalogue`` task calls ``publish_run(..., register=False)`` and registers
the champion in a task of its own (``recflow.experiments.serving.champion``), so each is retried apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from recflow.experiments.serving.catalogue import ensure_catalogue
from recflow.experiments.serving.champion import register_champion
from recflow.experiments.serving.index_logging import log_index
from recflow.experiments.serving.records import run_record, runs_dir, write_shared
from recflow.experiments.tracking import hide_credentialed_urls

if TYPE_CHECKING:
    from recflow.runtime.store import Artifact


def publish_run(
    cfg: Any, tracking: dict[str, Any], models: dict[str, Any], split: Artifact, data: Artifact, root: Path | None = None, register: bool = True
) -> dict[str, Any]:
    """Everything after logging: indexes into MLflow, the run record, the champion (``recflow.experiments.serving``).

    ``register=False`` stops before the champion (the flow registers it in a task of its own).
    """
    import mlflow

    from recflow.runtime.store import artifacts_root

    root = root or artifacts_root()
    hide_credentialed_urls(tracking["tracking_uri"])
    mlflow.set_tracking_uri(tracking["tracking_uri"])
    catalogue = ensure_catalogue(split, data, root)
    for name, result in models.items():
        run_id = tracking["model_runs"].get(name)
        if result.servable and result.index is not None and run_id:  # reopening a FAILED run would mark it FINISHED
            with mlflow.start_run(run_id=run_id):
                log_index(result.index, root)
    record = run_record(cfg, tracking, models, catalogue, root)
    write_shared(root, runs_dir(root) / f"{record['run_id']}.json", record)
    out: dict[str, Any] = {"record": str(runs_dir(root) / f"{record['run_id']}.json"), "best": record["best"], "similar": record["similar"]}
    if register and cfg.serving.register_model and record["best"] is not None:
        out["champion"] = register_champion(record, root)
    return out
