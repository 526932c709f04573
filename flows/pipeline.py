"""The recflow pipeline, read top to bottom:

    locate -> ingest -> split -> features -> sampling -> train[model] -> evaluate[model] -> index[model]
      -> track[mlflow] -> catalogue -> champion -> report, export[top-k]

An ensemble (``rank_fusion``) is a model like the others whose train step waits for its members'
train steps and reuses their fits.

Every step is a task, submitted by ``tasks/dag.py`` once its inputs have finished (so each is a
node of its own in the Prefect graph; one whose input failed is marked NotRun). Up to ``index`` they are cached (see ``tasks/caching.py``; ``locate`` is
uncached, retried when a download fails); models train and evaluate concurrently and fail
independently. The tail (``tasks/publish.py``) is uncached and reads typed ``ModelOutcome``s:
a model keeps its metrics when only its index failed. The MLflow parent run spans the whole
flow and ends FAILED when it fails. A failed run ends with ``PipelineFailed``: one line per
failed task; ``run_pipeline`` adds the log file holding the tracebacks.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, tags
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run

from flows.head import pipeline_head
from recflow.experiments.config import RunConfig, load_config
from recflow.experiments.summary import RunSummary
from recflow.experiments.tracking import FLOW_RUN_TAG, pipeline_run, pipeline_run_name
from recflow.runtime import storage as shared_storage
from recflow.runtime.dedupe import link_copies
from recflow.runtime.outcomes import ModelOutcome, PipelineFailed, StageFailure
from recflow.runtime.runlog import log_path, run_log
from recflow.runtime.storage import redact_uri
from recflow.runtime.store import artifacts_root
from tasks.caching import prepare_results_storage, results_storage
from tasks.dag import NOT_RUN, Dag, Node
from tasks.evaluate import evaluate
from tasks.export import export
from tasks.index import has_embeddings, index
from tasks.operations import exclusive_root, refreshed_caches
from tasks.publish import catalogue, champion, report, track
from tasks.sampling import needs_samples
from tasks.train import members_of, record_fits, train, wants_warm_starts, warm_starts


# result_storage is resolved at import for deployments; run_pipeline() rebinds it to a chosen root.
@flow(name="recflow-pipeline", log_prints=True, result_storage=results_storage())
def pipeline(config_path: str | list[str] | None = None, overrides: list[str] | None = None, refresh: bool = False) -> dict[str, Any]:
    """``refresh``: rerun every task and rewrite its cache (the weekly rebuild). Runs sharing an artifacts root never overlap."""
    cfg = load_config(config_path, overrides)
    with exclusive_root(artifacts_root()), refreshed_caches(refresh), tags(f"dataset:{cfg.dataset.name}"):
        return run_stages(cfg, config_path)


def run_stages(cfg: RunConfig, config_path: str | list[str] | None) -> dict[str, Any]:
    cfg = without_unrunnable_models(cfg)
    own = {FLOW_RUN_TAG: flow_run.get_id()} if flow_run.get_id() else {}
    with pipeline_run(cfg, parent_run_name(config_path), tags=own) as parent:  # MLflow's parent run spans the flow
        crash_flow_runs([c["flow_run_id"] for c in parent.get("crashed", []) if c["flow_run_id"]])
        dag = Dag()
        head = pipeline_head(cfg, dag.add)
        source, data, parts, feats, samples = head.source, head.data, head.parts, head.feats, head.samples
        if wants_warm_starts(cfg):
            dag.run()  # each model's earlier fit is found from tonight's split
        starts = warm_starts(cfg, parts)
        trained = {
            m.name: dag.add(f"train[{m.name}]", train, data, parts, feats, samples if needs_samples(m) else None, m, None, *starts.get(m.name, (None, None)))
            for m in cfg.models
            if not members_of(m)
        }
        ensembles = {
            m.name: dag.add(f"train[{m.name}]", train, data, parts, feats, None, m, {n: trained[n] for n in members_of(m)}) for m in cfg.models if members_of(m)
        }
        trained = {m.name: {**trained, **ensembles}[m.name] for m in cfg.models}  # the config's order
        scored = {name: dag.add(f"evaluate[{name}]", evaluate, model, parts, cfg.evaluation) for name, model in trained.items()}
        indexed = {name: dag.add(f"index[{name}]", index, model, parts, data, cfg.index) for name, model in trained.items() if has_embeddings(name)}
        dag.run()

        shared = head.stages
        record_fits(cfg, parts, trained, starts)
        counts = count_states([*shared.values(), *trained.values(), *scored.values(), *indexed.values()])
        stopped = failures({stage: (None, f) for stage, f in shared.items()})
        if stopped:  # nothing downstream ran
            raise PipelineFailed(stopped)
        ingested = ingest_news(data.result().meta)
        models = {name: model_outcome(name, trained[name], scored[name], indexed.get(name)) for name in trained}
        models |= {m.name: unfused(models[m.name], [models[n] for n in members_of(m)]) for m in cfg.models if members_of(m)}

        tracking = dag.add("track[mlflow]", track, cfg, parent, source.path, data, parts, feats, models, counts)
        catalogued = dag.add("catalogue", catalogue, cfg, tracking, models, parts, data)
        serving = dag.add("champion", champion, cfg, catalogued)
        # after the champion, so the report names it; it still runs (saying so) when catalogue or champion failed
        reported = dag.add("report", report, cfg, models, tracking, counts, parts, serving).tolerating("serving")
        tail = {"track": tracking, "report": reported, "catalogue": catalogued, "champion": serving}
        if cfg.export.enabled:
            tail["export"] = dag.add("export", export, cfg.export, cfg.dataset.name, serving)
        dag.run()

        failed = [f for m in models.values() for f in m.failures] + failures({stage: (None, f) for stage, f in tail.items()})
        if failed:
            raise PipelineFailed(failed)
        get_run_logger().info("tasks: %d ran, %d cached", counts["ran"], counts["cached"])
        protocol = parts.result().meta["protocol"]
        shown = {**tracking.result(), "tracking_uri": redact_uri(tracking.result()["tracking_uri"])}  # persisted and printed: no credentials
        return {
            "tasks": counts,
            "metrics": {name: m.evaluate.meta["metrics"] for name, m in models.items()},
            "training": {name: m.train.meta for name, m in models.items()},
            "split": parts.result().meta,
            "protocol": protocol,
            "ingest": ingested,
            "tracking": shown,
            "serving": serving.result(),
            "summary": RunSummary.from_outcomes(cfg, models, shown, counts, protocol, serving.result()),
            "export": tail["export"].result() if "export" in tail else None,
        }


def ingest_news(meta: dict[str, Any]) -> dict[str, Any]:
    """What the run says about its data: a partitioned source's partitions read / reused / new / changed, and
    the ingest's notes (a late correction and its effect, collapsed repeats, implicit feedback), each logged."""
    news = {k: meta[k] for k in ("partitions", "notes") if k in meta}
    if "partitions" in news:
        p = news["partitions"]
        get_run_logger().info("ingest: %d partitions, %d read (%d new, %d changed), %d reused", p["total"], p["read"], p["new"], p["changed"], p["reused"])
    for note in news.get("notes", []):
        get_run_logger().warning("ingest: %s", note)
    return news


def unrunnable_models(cfg: RunConfig) -> dict[str, str]:
    """Models this data cannot judge, each with the one line saying why: on implicit feedback (no rating
    column), those that declare ``predicts_ratings``, and ensembles combining one of them."""
    if not cfg.dataset.implicit:
        return {}
    from recflow.models import MODELS

    why = {
        m.name: f"skipping {m.name}: it predicts ratings, and dataset {cfg.dataset.name!r} has no rating column (implicit feedback)"
        for m in cfg.models
        if MODELS[m.name].predicts_ratings
    }
    for m in cfg.models:
        lost = [n for n in members_of(m) if n in why]
        if lost:
            why[m.name] = f"skipping {m.name}: it combines {lost}, which predict ratings on data with no rating column (implicit feedback)"
    return why


def without_unrunnable_models(cfg: RunConfig) -> RunConfig:
    skipped = unrunnable_models(cfg)
    if not skipped:
        return cfg
    for line in skipped.values():
        get_run_logger().warning(line)
    kept = [m for m in cfg.models if m.name not in skipped]
    if not kept:
        raise PipelineFailed([StageFailure("train", "no model left to run: " + "; ".join(skipped.values()))])
    return cfg.model_copy(update={"models": kept})


def crash_flow_runs(flow_run_ids: list[str]) -> None:
    """Mark Crashed the flow runs of killed runs still shown Running (their process died with no word to Prefect).

    Their MLflow runs were just ended FAILED (``end_crashed_runs``). A flow run in another Prefect
    database than this run's is not found and left alone.
    """
    if not flow_run_ids:
        return
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    logger = get_run_logger()
    with get_client(sync_client=True) as client:
        for flow_run_id in flow_run_ids:
            try:
                found = client.read_flow_run(flow_run_id)
                if found.state is not None and not found.state.is_final():
                    client.set_flow_run_state(flow_run_id, Crashed(message="its process died; marked by the next run on this root"), force=True)
                    logger.warning("flow run %s (%s) was left %s by a killed run: marked Crashed", found.name, flow_run_id, found.state.name)
            except Exception as exc:  # another Prefect database, or already gone
                logger.info("flow run %s of a killed run not marked crashed: %s", flow_run_id, exc)


def preset_name(config_path: str | list[str] | None) -> str:
    """A config file's stem, or a base and its overlays' stems joined by '+'."""
    paths = [config_path] if isinstance(config_path, str) else list(config_path or [])
    return "+".join(Path(p).stem for p in paths) or "default"


def parent_run_name(config_path: str | list[str] | None) -> str:
    """The MLflow parent run's name: the preset (a base and its overlays: stems joined by '+'), the date,
    the Prefect flow run's name."""
    return pipeline_run_name(preset_name(config_path), datetime.now(timezone.utc), flow_run.get_name() if flow_run.get_id() else None)


def count_states(futures: list[PrefectFuture | Node]) -> dict[str, int]:
    """Tasks that ran and that were cache hits (a task not run because an input failed is neither)."""
    names = [f.state.name for f in futures]
    cached = sum(n == "Cached" for n in names)
    return {"ran": len(names) - cached - names.count(NOT_RUN), "cached": cached}


def failure_message(future: PrefectFuture | Node) -> str:
    """``<Exception>: <message>`` of a failed task run (its state's message if the exception is not there)."""
    exc = future.state.result(raise_on_failure=False)
    if isinstance(exc, BaseException):
        return f"{type(exc).__name__}: {exc}"
    return str(future.state.message or future.state.name)


def failures(futures: dict[str, tuple[str | None, PrefectFuture | Node]]) -> list[StageFailure]:
    """The tasks that failed or crashed (not those that never ran because an upstream one failed)."""
    return [
        StageFailure(stage, failure_message(future), model)
        for stage, (model, future) in futures.items()
        if future.state.is_failed() or future.state.is_crashed()
    ]


def model_outcome(name: str, trained: PrefectFuture | Node, scored: PrefectFuture | Node, indexed: PrefectFuture | Node | None = None) -> ModelOutcome:
    """What each of the model's stages produced, and which failed: an index failure keeps the metrics."""
    stages = {"train": trained, "evaluate": scored, **({"index": indexed} if indexed is not None else {})}
    done = {stage: f.result() for stage, f in stages.items() if f.state.is_completed()}
    failed = failures({stage: (name, f) for stage, f in stages.items()})
    return ModelOutcome(name, **done, failures=tuple(failed))


def unfused(ensemble: ModelOutcome, members: list[ModelOutcome]) -> ModelOutcome:
    """An ensemble that never trained because a member did not: a failure naming those members, not a silent gap."""
    lost = [m.name for m in members if m.train is None]
    if ensemble.train is not None or ensemble.failed or not lost:
        return ensemble
    return replace(ensemble, failures=(StageFailure("train", f"not run: its members {lost} did not train, so there was nothing to fuse", ensemble.name),))


def failure_lines(exc: BaseException) -> list[str]:
    """What ``recflow run`` prints when the pipeline fails: one line per failed task, then the log file."""
    if isinstance(exc, PipelineFailed):
        return exc.lines()
    return [f"pipeline failed: {type(exc).__name__}: {exc}"]


def storage_is_local(root: Path) -> bool:
    from recflow.runtime import storage

    return storage.remote_of(root) is None


def flow_run_tags(config_path: str | list[str] | None, overrides: list[str] | None) -> list[str]:
    """The flow run's tags: ``dataset:<name>`` and ``preset:<stem>`` (a base and its overlays joined by '+')."""
    return [f"dataset:{load_config(config_path, overrides).dataset.name}", f"preset:{preset_name(config_path)}"]


def runner_options(config_path: str | list[str] | None, overrides: list[str] | None, root: Path, dask: str | None) -> dict[str, Any]:
    """``with_options`` for the task runner the config (or ``--dask``) asks for; none for the default thread pool."""
    runner = load_config(config_path, overrides).runner
    if dask is None and runner.kind != "dask":
        return {}
    from tasks.runners import resolved_runner, task_runner_for  # Dask loads only for a Dask run

    return {"task_runner": task_runner_for(resolved_runner(runner, dask), root)}


def run_pipeline(
    config_path: str | list[str] | None = None,
    overrides: list[str] | None = None,
    root: Path | None = None,
    refresh: bool = False,
    log_file: Path | None = None,
    dask: str | None = None,
) -> dict[str, Any]:
    """Run the flow with task results persisted under the artifacts root (the cache lives there).

    The run's full log, tracebacks included, goes to ``log_file`` (default ``<root>/logs/<stamp>-<preset>.log``);
    the console shows no traceback. A failed run raises ``PipelineFailed``: its failed tasks and that log file.
    The root is held from before Prefect starts until the flow's own result is written (the flow
    holds it again, re-entrantly, for runs that a worker starts). The tasks run where the config's
    ``runner`` section says, ``dask`` (``recflow run --dask [ADDRESS]``) overriding it: by default in
    this process's thread pool, else on a Dask cluster (``tasks/runners.py``).
    """
    root = root or artifacts_root()
    storage = results_storage(root)
    log_file = log_file or log_path(root, preset_name(config_path))
    with exclusive_root(root), run_log(log_file):
        prepare_results_storage(storage)
        try:
            runner = runner_options(config_path, overrides, root, dask)
            with tags(*flow_run_tags(config_path, overrides)):  # the Runs list filters by them
                result = pipeline.with_options(result_storage=storage, **runner)(config_path=config_path, overrides=overrides, refresh=refresh)
            if storage_is_local(root):
                link_copies(root)  # MLflow's copies of model, index and catalogue files: hard links, the bytes once
            return result
        except PipelineFailed as exc:
            raise PipelineFailed(exc.failures, str(log_file)) from None
        except Exception as exc:
            raise PipelineFailed([StageFailure("pipeline", f"{type(exc).__name__}: {exc}")], str(log_file)) from exc
        finally:
            shared_storage.publish_file(root, log_file)  # under an s3:// root: <URL>/logs/, for every machine
