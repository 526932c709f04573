"""export[top-<k>]: every warm user's top-K of the champion, as partitioned Parquet (after ``champion``).

The rows come from the champion's own files (``recflow.experiments.serving.records.sources_for``
of the champion's run record; the run's best when no champion is registered) through
``recflow.retrieval.export.write_top_k``: the ranking ``recflow recommend`` and ``recflow api``
give. Cached like every stage, keyed on the files served (content-addressed stage folders) and
the export settings, not on this run's id: a run that leaves the champion where it was reuses
the export. ``recflow export`` writes the same folder for any run (``export_sources``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recflow.experiments.config import ExportConfig
from recflow.experiments.serving.records import ServingNotFound, read_record, sources_for
from recflow.experiments.serving.resolve import find_champion
from recflow.retrieval.export import write_top_k
from recflow.retrieval.search import Retriever
from recflow.runtime.store import Artifact, artifacts_root
from tasks.caching import produce, stage, stage_key_for


def champion_sources(dataset: str, serving: dict[str, Any]) -> tuple[dict[str, Path | None], dict[str, Any]] | None:
    """The champion's files and info (the run's best without a champion); None when nothing serves."""
    root = artifacts_root()
    try:
        record = read_record(root / find_champion(root, dataset)["record"])
    except ServingNotFound:
        if not serving.get("best"):
            return None
        record = read_record(Path(serving["record"]))
    return sources_for(record, root)


def _keyed(sources: dict[str, Path | None], info: dict[str, Any], config: ExportConfig) -> dict[str, Any]:
    root = artifacts_root()
    files = {k: str(Path(v).relative_to(root)) if v is not None else None for k, v in sources.items()}
    return {"files": files, "model": info["recommend_model"], "config": config}


def _keyed_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    found = champion_sources(inputs["dataset"], inputs["serving"])
    return {"nothing": None} if found is None else _keyed(*found, inputs["config"])


def _write(sources: dict[str, Path | None], info: dict[str, Any], config: ExportConfig, key: str | None = None) -> Artifact:
    def build(out: Path) -> dict[str, Any]:
        return write_top_k(Retriever.from_sources(sources, info), out, config.k, config.partitions)

    root = artifacts_root()
    folders = sorted({str(Path(v).relative_to(root)) for v in sources.values() if v is not None})
    return produce("export", build, key=key, inputs=folders)


@stage("export", keyed_on=_keyed_inputs, task_run_name="export[top-{config.k}]")
def export(config: ExportConfig, dataset: str, serving: dict[str, Any]) -> Artifact | None:
    """The champion's top-K per user under ``<root>/export/<key>/top_k``; None when the run has nothing to serve."""
    found = champion_sources(dataset, serving)
    if found is None:
        return None
    return _write(*found, config)


def export_sources(sources: dict[str, Path | None], info: dict[str, Any], config: ExportConfig) -> Artifact:
    """``recflow export``: the same stage folder, outside a flow (the key the task would compute for these files)."""
    policy = export.cache_policy  # the task's own key, computed from its module and function names
    key = stage_key_for("export", policy.module, policy.function, policy.code, {}, _keyed(sources, info, config))
    return _write(sources, info, config, key=key)
