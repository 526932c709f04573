"""The recflow pipeline, read top to bottom:

    locate -> ingest -> split -> features -> sampling -> train[model] -> evaluate[model] -> index[model] -> MLflow -> champion

Every step but ``locate`` (uncached, retried when a download fails) and the MLflow logging is a
cached task (see ``tasks/caching.py``);
models train and evaluate concurrently and fail independently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, tags
from prefect.futures import PrefectFuture, wait

from recflow.config import RunConfig, load_config
from recflow.serving import publish_run
from recflow.store import artifacts_root
from recflow.tracking import log_pipeline_run
from tasks.caching import results_storage
from tasks.evaluate import evaluate
from tasks.index import has_embeddings, index
from tasks.features import features
from tasks.ingest import ingest, locate
from tasks.operations import exclusive_root, refreshed_caches
from tasks.reporting import publish_run_report
from tasks.sampling import sampling, sampling_plan
from tasks.split import split
from tasks.train import train


class ModelsFailed(RuntimeError):
    """Raised after logging, when at least one model failed (the others are still tracked)."""


# result_storage is resolved at import for deployments; run_pipeline() rebinds it to a chosen root.
@flow(name="recflow-pipeline", log_prints=True, result_storage=results_storage())
def pipeline(config_path: str | list[str] | None = None, overrides: list[str] | None = None, refresh: bool = False) -> dict[str, Any]:
    """``refresh``: rerun every task and rewrite its cache (the weekly rebuild). Runs sharing an artifacts root never overlap."""
    cfg = load_config(config_path, overrides)
    with exclusive_root(artifacts_root()), refreshed_caches(refresh), tags(f"dataset:{cfg.dataset.name}"):
        return run_stages(cfg, config_path)


def run_stages(cfg: RunConfig, config_path: str | list[str] | None) -> dict[str, Any]:
    source = locate(cfg.dataset)

    data = ingest.submit(source, cfg.dataset.max_reject_fraction)
    parts = split.submit(data, cfg.split)
    feats = features.submit(data, parts, cfg.features)
    plan = sampling_plan(cfg)
    samples = sampling.submit(parts, plan) if plan is not None else None
    trained = {m.name: train.submit(data, parts, feats, samples, m) for m in cfg.models}
    scored = {name: evaluate.submit(model, parts, cfg.evaluation) for name, model in trained.items()}
    indexed = {name: index.submit(model, parts, data, cfg.index) for name, model in trained.items() if has_embeddings(name)}

    futures: list[PrefectFuture] = [data, parts, feats, *([samples] if samples else []), *trained.values(), *scored.values(), *indexed.values()]
    wait(futures)
    counts = count_states(futures)
    models = {name: model_outcome(trained[name], scored[name], indexed.get(name)) for name in trained}
    tracking = log_pipeline_run(
        cfg,
        dataset_path=source.path,
        data=data.result(),
        split=parts.result(),
        features=feats.result(),
        models=models,
        task_counts=counts,
        run_name=run_name(config_path),
    )
    publish_run_report(cfg, models, tracking, counts, parts.result().meta["protocol"])
    serving = publish_run(cfg, tracking, models, parts.result(), data.result())
    failed = {name: m["error"] for name, m in models.items() if "error" in m}
    if failed:
        raise ModelsFailed("; ".join(f"{n}: {e}" for n, e in failed.items()))
    get_run_logger().info("tasks: %d ran, %d cached", counts["ran"], counts["cached"])
    return {
        "tasks": counts,
        "metrics": {name: m["evaluate"].meta["metrics"] for name, m in models.items()},
        "training": {name: m["train"].meta for name, m in models.items()},
        "protocol": parts.result().meta["protocol"],
        "tracking": tracking,
        "serving": serving,
    }


def run_name(config_path: str | list[str] | None) -> str:
    """The MLflow run's name: the config file's stem, or the stems joined by '+' for a base and its overlays."""
    paths = [config_path] if isinstance(config_path, str) else list(config_path or [])
    return "+".join(Path(p).stem for p in paths) or "default"


def count_states(futures: list[PrefectFuture]) -> dict[str, int]:
    names = [f.state.name for f in futures]
    cached = sum(n == "Cached" for n in names)
    return {"ran": len(names) - cached, "cached": cached}


def model_outcome(trained: PrefectFuture, scored: PrefectFuture, indexed: PrefectFuture | None = None) -> dict[str, Any]:
    for future in (trained, scored, *([indexed] if indexed is not None else [])):
        if not future.state.is_completed():
            return {"error": str(future.state.message or future.state.name)}
    outcome = {"train": trained.result(), "evaluate": scored.result()}
    if indexed is not None:
        outcome["index"] = indexed.result()
    return outcome


def run_pipeline(config_path: str | list[str] | None = None, overrides: list[str] | None = None, root: Path | None = None, refresh: bool = False) -> dict[str, Any]:
    """Run the flow with task results persisted under the artifacts root (the cache lives there)."""
    root = root or artifacts_root()
    storage = results_storage(root)
    storage.mkdir(parents=True, exist_ok=True)
    return pipeline.with_options(result_storage=storage)(config_path=config_path, overrides=overrides, refresh=refresh)
