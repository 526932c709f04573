"""An index's results in its model's MLflow run: metrics, chosen kinds and search settings, tuning curves.

The primary space's chosen index is logged as ``index_recall_k10``, ``index_qps`` ..., so MLflow's
compare view lines models up on one name; every space and every kind tried go under
``index/<space>/...``. No index metric contains a model metric's name (``recall_at_10``): a search
for ``recall_at_10`` in MLflow's chart view finds the model's metric, not dozens of index charts.
Index stages are cached, MLflow runs are new every pipeline run: the tail
logs each index into this run's model run, whether it was built now or reused.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recflow.experiments.serving.records import similar_space

if TYPE_CHECKING:
    from recflow.runtime.store import Artifact

INDEX_METRICS = ("qps", "p50_ms", "p99_ms", "build_seconds", "bytes")


def index_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """MLflow metrics of an index summary: the primary space's chosen index as ``index_recall_k10``,
    ``index_qps``, ``index_p50_ms`` ..., every space and kind under ``index/<space>/<kind>/`` and every
    space's chosen index under ``index/<space>/`` (``recall_k10``: recall against exact search)."""
    k = summary["k"]
    measured = f"ann_recall_at_{k}"  # the summary's name
    recall = f"recall_k{k}"
    out: dict[str, float] = {}
    similar = similar_space(summary)
    for name, space in summary["spaces"].items():
        chosen = space["metrics"]
        for g in (f"genre_overlap_at_{k}", f"genre_jaccard_at_{k}"):
            if g in chosen:
                out[f"index/{name}/{g}"] = chosen[g]
                if name == similar:
                    out[g] = chosen[g]
        if name == summary["primary"]:
            out[f"index_{recall}"] = chosen[measured]
            out.update({f"index_{m}": chosen[m] for m in INDEX_METRICS})
        out[f"index/{name}/{recall}"] = chosen[measured]
        out.update({f"index/{name}/{m}": chosen[m] for m in INDEX_METRICS})
        for kind, r in space["kinds"].items():
            if r.get("skipped"):
                continue
            out[f"index/{name}/{kind}/{recall}"] = r["recall"]
            out.update({f"index/{name}/{kind}/{m}": r[m] for m in INDEX_METRICS})
    return {k: float(v) for k, v in out.items() if v is not None and math.isfinite(float(v))}


def log_index(index: Artifact, root: Path | None = None) -> None:
    """Index metrics, chosen kinds and search settings, tuning curves and plots, into the active run."""
    import mlflow

    from recflow.runtime.store import artifacts_root

    root = root or artifacts_root()
    summary = index.meta
    mlflow.log_metrics(index_metrics(summary))
    params = {"index.kind": summary["spaces"][summary["primary"]]["kind"], "index.recommend_via": summary["recommend_via"]}
    for name, space in summary["spaces"].items():
        params[f"index.{name}.kind"] = space["kind"]
        params[f"index.{name}.search"] = json.dumps(space["index"]["search"], sort_keys=True)
        params[f"index.{name}.build"] = json.dumps(space["index"]["build"], sort_keys=True)
    mlflow.log_params(params)
    mlflow.set_tags({f"index.{name}.reason": space["reason"][:5000] for name, space in summary["spaces"].items()})
    mlflow.log_dict(summary, "index/summary.json")
    for name in summary["spaces"]:
        folder = index.dir(root) / "spaces" / name
        for file in ("recall_qps.png", "tuning.json"):
            if (folder / file).exists():
                mlflow.log_artifact(str(folder / file), f"index/{name}")
