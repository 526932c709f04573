"""Run records: which files serve each model of a pipeline run, and which models serve by default.

``<root>/serving/runs/<run_id>.json`` (``run_record``) holds, per model whose stages all
succeeded, its model folder, index, metrics and per-user values (paths relative to the artifacts
root: content-addressed stage folders), the best model by ``serving.champion_metric`` and the
``similar`` model (the one whose nearest movies share most genres). The evaluation protocol goes
with it: two runs' metrics are comparable only under the same one.
``<root>/serving/champions/recflow-<dataset>.json`` points at the champion's record (written by
``recflow.experiments.serving.champion``). Plain JSON, so the CLI serves from them without MLflow
(``recflow.experiments.serving.resolve``); ``sources_for`` turns a record into the files a ``Retriever`` reads.
Under an ``s3://`` root both are published to the bucket as they are written (``write_shared``)
and read back from it on a machine that never ran the pipeline, with the stage folders they name.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from recflow.runtime.storage import redact_uri

ALIAS = "champion"
SERVING_DIR = "serving"


def registered_model_name(dataset: str) -> str:
    return f"recflow-{dataset}"


class ServingNotFound(LookupError):
    """No champion or run to serve from; the message says what exists and what to run."""


def similar_space(summary: dict[str, Any]) -> str | None:
    """The item space ``recflow similar`` searches by default: the primary one, else the first item space."""
    items = [n for n, sp in summary["spaces"].items() if sp["entity"] == "item"]
    return summary.get("primary") if summary.get("primary") in items else (items[0] if items else None)


def _best(candidates: dict[str, float], greater_is_better: bool) -> str | None:
    finite = {n: v for n, v in candidates.items() if v is not None and math.isfinite(v)}
    if not finite:
        return None
    return (max if greater_is_better else min)(finite, key=lambda n: finite[n])


def _similar_genre_overlap(index_meta: dict[str, Any]) -> float | None:
    space = similar_space(index_meta) if index_meta else None
    return index_meta["spaces"][space]["metrics"].get(f"genre_overlap_at_{index_meta['k']}") if space else None


def evaluation_protocol(cfg: Any) -> dict[str, Any]:
    """Everything that makes two runs' metrics comparable: the split and how the test ranking is scored."""
    return {"split": cfg.split.model_dump(mode="json"), "mask_valid": cfg.evaluation.mask_valid, "relevance_threshold": cfg.evaluation.relevance_threshold}


def protocol_difference(theirs: dict[str, Any], ours: dict[str, Any]) -> str:
    """``split.seed 2020 -> 42, mask_valid true -> false``: the settings that differ, dotted."""

    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    a, b = flat(theirs), flat(ours)
    return ", ".join(f"{k} {json.dumps(a.get(k))} -> {json.dumps(b.get(k))}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k))


def run_record(cfg: Any, tracking: dict[str, Any], models: dict[str, Any], catalogue: Path, root: Path) -> dict[str, Any]:
    """What serves each successful model of a run (paths relative to the artifacts root) and the best ones.

    ``models``: name -> ``recflow.runtime.outcomes.ModelOutcome``; a model with any failed stage is left out.
    """
    metric, greater = cfg.serving.champion_metric, cfg.serving.greater_is_better
    entries: dict[str, dict[str, Any]] = {}
    for name, result in models.items():
        if not result.servable:
            continue
        index = result.index
        index_meta = index.meta if index is not None else {}
        entries[name] = {
            "run_id": tracking["model_runs"].get(name),
            "model": str(Path(result.train.path) / "model"),
            "index": index.path if index is not None else None,
            "recommend_via": index_meta.get("recommend_via", "model"),
            "similar": bool(index_meta) and any(s["entity"] == "item" for s in index_meta["spaces"].values()),
            "metrics": result.evaluate.meta["metrics"],
            "per_user": (str(Path(result.evaluate.path) / result.evaluate.meta["per_user"]) if result.evaluate.meta.get("per_user") else None),
            "genre_overlap": _similar_genre_overlap(index_meta),
        }
    scores = {n: e["metrics"].get(metric) for n, e in entries.items()}
    best = _best(scores, greater)
    # "movies like X" is judged by genre overlap of the neighbours, not by a ranking metric
    similar = _best({n: e["genre_overlap"] for n, e in entries.items() if e["similar"]}, True)
    if similar is None:  # no genres: the best ranker with an item index, else any item index
        similar = best if best and entries[best]["similar"] else _best({n: s for n, s in scores.items() if entries[n]["similar"]}, greater)
    if similar is None:
        similar = next((n for n, e in entries.items() if e["similar"]), None)
    return {
        "dataset": cfg.dataset.name,
        "registered_model": registered_model_name(cfg.dataset.name),
        "run_id": tracking["run_id"],
        "experiment": tracking["experiment"],
        "tracking_uri": redact_uri(tracking["tracking_uri"]),  # never a credential in a record
        "catalogue": str(catalogue.relative_to(root)),
        "metric": metric,
        "greater_is_better": greater,
        "significance_level": cfg.serving.significance_level,
        "protocol": evaluation_protocol(cfg),
        "best": best,
        "similar": similar,
        "models": entries,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_shared(root: Path, path: Path, record: dict[str, Any]) -> None:
    """Write a record under the root; under an ``s3://`` root also to the bucket, where other machines read it (``resolve``)."""
    from recflow.runtime import storage
    from recflow.runtime.store import write_json_atomic

    write_json_atomic(path, record)
    storage.publish_file(root, path)


def runs_dir(root: Path) -> Path:
    return root / SERVING_DIR / "runs"


def champions_dir(root: Path) -> Path:
    return root / SERVING_DIR / "champions"


def sources_for(record: dict[str, Any], root: Path, model: str | None = None) -> tuple[dict[str, Path | None], dict[str, Any]]:
    """The files a ``Retriever`` reads for a run record (its best model, or ``model``), and its info."""
    models = record["models"]
    if model is not None and model not in models:
        raise ServingNotFound(f"model {model!r} is not in run {record['run_id']}; it has: {', '.join(sorted(models)) or 'none'}")
    rec = model or record["best"]
    if rec is None:
        raise ServingNotFound(f"run {record['run_id']} has no model with a {record['metric']}; name one with --model")
    sim = model or record["similar"]
    entry = models[rec]
    index = root / entry["index"] if entry["index"] else None
    sim_index = root / models[sim]["index"] if sim and sim != rec and models[sim]["index"] else None
    sources = {
        "catalogue": root / record["catalogue"],
        "index": index,
        "model": root / entry["model"] if entry["recommend_via"] == "model" else None,
        "similar_index": sim_index,
    }
    info = {
        "dataset": record["dataset"],
        "run_id": record["run_id"],
        "model_run_id": entry["run_id"],
        "recommend_model": rec,
        "similar_model": sim if (sim_index is not None or (sim == rec and entry["similar"])) else None,
        "metric": record["metric"],
        "metric_value": entry["metrics"].get(record["metric"]),
    }
    return sources, info


def item_spaces(record: dict[str, Any], root: Path, model: str) -> list[str]:
    """The item spaces of ``model``'s index in a run record (``similar --mode`` values); [] without an index."""
    index = record["models"][model]["index"]
    path = root / index / "summary.json" if index else None
    if path is None or not path.is_file():
        return []
    return [name for name, s in read_record(path)["spaces"].items() if s["entity"] == "item"]


def model_with_mode(record: dict[str, Any], root: Path, mode: str) -> str | None:
    """The model to answer ``similar --mode mode``: None when the run's similar model has that space
    (the default serves), else the model with that space whose neighbours share most genres (the
    rule that picks the similar model), else None (the default model's error names its modes)."""
    if record["similar"] and mode in item_spaces(record, root, record["similar"]):
        return None
    having = {n: e for n, e in record["models"].items() if mode in item_spaces(record, root, n)}
    if not having:
        return None
    scored = {n: e["genre_overlap"] for n, e in having.items() if e.get("genre_overlap") is not None}
    return _best(scored, True) or next(iter(having))


def read_record(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())
