"""MLflow layout for a pipeline run: one parent run, one nested run per model.

The parent run spans the whole pipeline: the flow starts it before the first task
(``pipeline_run``) and ends it last, FAILED when the flow fails, so its duration and status are
the pipeline's. Experiments are tagged as model-training experiments, which MLflow 3's UI opens
in its training-runs view rather than its GenAI one.

Logging reads only the stage descriptors and their small JSON outputs, so a fully cached rerun
still produces a complete MLflow run (with the same metrics) without executing any task.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from recflow.evaluation.specs import SPECS, measured
from recflow.experiments.config import RunConfig
from recflow.runtime import storage
from recflow.runtime.outcomes import ModelOutcome
from recflow.runtime.store import Artifact, artifacts_root

#: the experiment tag MLflow 3's UI reads to choose an experiment's view, and the value of its
#: "Model training" kind (``ExperimentKind.CUSTOM_MODEL_DEVELOPMENT`` in MLflow's UI code)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"


def tracking_uri(cfg: RunConfig, root: Path | None = None) -> str:
    """Config, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<artifacts>/mlflow.db``."""
    root = root or artifacts_root()
    uri = cfg.tracking.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlflow.db'}"
    hide_credentialed_urls(uri)
    return uri


def hide_credentialed_urls(uri: str) -> None:
    """MLflow prints ``View run ... at: <the URI, credentials included>`` at each run's end: not for a credentialed URI."""
    if storage.redact_uri(uri) != uri:
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"


def experiment_name(cfg: RunConfig) -> str:
    return cfg.tracking.experiment or f"recflow/{cfg.dataset.name}"


def use_experiment(cfg: RunConfig, root: Path | None = None) -> tuple[Any, str]:
    """Point MLflow at the project's store; artifacts of a new experiment go under the artifacts root."""
    import mlflow

    root = root or artifacts_root()
    uri = tracking_uri(cfg, root)
    mlflow.set_tracking_uri(uri)
    remote = storage.remote_of(root)  # a root on object storage: run artifacts go to its bucket too
    in_bucket = storage.mlflow_artifact_location(remote) if remote else None
    name = experiment_name(cfg)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        location = in_bucket or ((root / "mlruns").as_uri() if uri.startswith("sqlite:") else None)
        mlflow.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: TRAINING_KIND})
        experiment = mlflow.get_experiment_by_name(name)
    elif experiment.tags.get(EXPERIMENT_KIND_TAG) != TRAINING_KIND:  # made before the tag (or inferred as GenAI)
        mlflow.MlflowClient(uri).set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)
    mlflow.set_experiment(experiment_id=experiment.experiment_id)
    return experiment, uri


def pipeline_run_name(preset: str, started: datetime, flow_run_name: str | None = None) -> str:
    """``<preset> <UTC date and minute>``, plus the Prefect flow run's name where there is one."""
    name = f"{preset} {started:%Y-%m-%d %H:%M}"
    return f"{name} ({flow_run_name})" if flow_run_name else name


CRASHED_TAG = "recflow.crashed"
ROOT_TAG = "recflow.root"
FLOW_RUN_TAG = "recflow.prefect_flow_run_id"


def root_label(root: Path) -> str:
    """How a pipeline run names its artifacts root in MLflow: the bucket URL for a mirrored root, else the path."""
    remote = storage.remote_of(root)
    return remote.url if remote else str(Path(root).resolve())


def end_crashed_runs(client: Any, experiment_id: str, root: Path, own_store: bool) -> list[dict[str, str]]:
    """End as FAILED the pipeline runs of ``root`` (and their model runs) still RUNNING: their process died.

    Called by the next run while it holds the root's lock, so no live run of this root can be among
    them. In a store shared by several roots (a tracking server) only runs tagged with this root
    are touched; in the root's own ``mlflow.db`` untagged ones (logged before the tag) are too.
    Each gets ``recflow.crashed`` saying so. Returns ``{"run_id", "flow_run_id"}`` per pipeline run
    ended, so the flow can mark those Prefect flow runs crashed as well.
    """
    mine = root_label(root)
    running = client.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=1000)
    parents = {
        r.info.run_id: r
        for r in running
        if r.data.tags.get("recflow.kind") == "pipeline" and (r.data.tags.get(ROOT_TAG) == mine or (own_store and ROOT_TAG not in r.data.tags))
    }
    note = f"its process died; ended by the next run on this root at {datetime.now().astimezone():%Y-%m-%d %H:%M:%S %Z}"
    for run in running:
        if run.info.run_id in parents or run.data.tags.get("mlflow.parentRunId") in parents:
            client.set_tag(run.info.run_id, CRASHED_TAG, note)
            client.set_terminated(run.info.run_id, "FAILED")
    return [{"run_id": run_id, "flow_run_id": run.data.tags.get(FLOW_RUN_TAG, "")} for run_id, run in parents.items()]


def start_pipeline_run(cfg: RunConfig, run_name: str, root: Path | None = None, tags: dict[str, str] | None = None) -> dict[str, Any]:
    """Create the parent run (RUNNING) and return where it is: tracking URI, experiment and run id.

    First the runs a killed run of this root left RUNNING are ended (``end_crashed_runs``); they
    are listed under ``crashed`` in the returned dict.
    """
    import mlflow

    from recflow.runtime.servers import check_mlflow_database

    check_mlflow_database(tracking_uri(cfg, root))  # a damaged mlflow.db: named, with the remedy
    refuse_a_lost_history(cfg, root or artifacts_root())
    root = root or artifacts_root()
    experiment, uri = use_experiment(cfg, root)
    client = mlflow.MlflowClient(uri)
    crashed = end_crashed_runs(client, experiment.experiment_id, root, own_store=uri == f"sqlite:///{root / 'mlflow.db'}")
    run = client.create_run(
        experiment.experiment_id,
        run_name=run_name,
        tags={"dataset": cfg.dataset.name, "protocol": cfg.split.protocol, "recflow.kind": "pipeline", ROOT_TAG: root_label(root), **(tags or {})},
    )
    return {"tracking_uri": uri, "experiment": experiment.name, "experiment_id": experiment.experiment_id, "run_id": run.info.run_id, "crashed": crashed}


class TrackingStoreMismatch(RuntimeError):
    """The MLflow store lacks every run the root's serving records name: an emptied or replaced database."""


def refuse_a_lost_history(cfg: RunConfig, root: Path) -> None:
    """Refuse to start a new history over an old one: records in ``<root>/serving/runs`` name runs of
    this experiment in this store, and the store holds none of them (``mlflow.db`` emptied, deleted or
    restored from another machine). Silently going on would make a "first champion" v1 while the
    records still point at runs that no longer exist.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from recflow.experiments.serving.records import runs_dir

    uri, name = tracking_uri(cfg, root), experiment_name(cfg)
    named = []
    for path in sorted(runs_dir(root).glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("experiment") == name and record.get("tracking_uri") == storage.redact_uri(uri) and record.get("run_id"):
            named.append(record["run_id"])
    if not named:
        return
    client = mlflow.MlflowClient(uri)
    for run_id in named[-20:]:
        try:
            client.get_run(run_id)
            return  # the store knows at least one of them: the history is there
        except MlflowException:
            continue
    raise TrackingStoreMismatch(
        f"MLflow store {storage.redact_uri(uri)} holds none of the {len(named)} runs of experiment {name!r} that {runs_dir(root)} records "
        "(an emptied or replaced mlflow.db?): refused, so no new history and champion start over the old one. "
        f"Restore the database, or move {runs_dir(root).parent} aside to start a new history on purpose"
    )


def end_pipeline_run(parent: dict[str, Any], status: str) -> None:
    """``FINISHED``, ``FAILED`` or ``KILLED``; also sets the end time, so the run's duration is the pipeline's."""
    import mlflow

    mlflow.MlflowClient(parent["tracking_uri"]).set_terminated(parent["run_id"], status)


@contextmanager
def pipeline_run(cfg: RunConfig, run_name: str, root: Path | None = None, tags: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """The parent run around a pipeline: FINISHED when the block ends, FAILED when it raises, KILLED on Ctrl-C."""
    parent = start_pipeline_run(cfg, run_name, root, tags)
    status = "FAILED"
    try:
        yield parent
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        end_pipeline_run(parent, status)


def delete_model_runs(parent: dict[str, Any]) -> int:
    """Delete the nested runs under ``parent`` (what a failed logging attempt left), so a retry logs each model once."""
    import mlflow

    client = mlflow.MlflowClient(parent["tracking_uri"])
    children = client.search_runs([parent["experiment_id"]], f"tags.`mlflow.parentRunId` = '{parent['run_id']}'")
    for child in children:
        client.delete_run(child.info.run_id)
    return len(children)


KERAS_FLAVOR_DIR = "mlflow_keras_model"


def save_keras_flavor(keras_model, path: Path) -> None:
    """Save ``keras_model`` as an MLflow TensorFlow-flavour model directory (Keras 3 native inside).

    Called where the model was trained (TensorFlow is loaded there anyway), so publishing a run
    only copies the folder: a cached rerun never imports TensorFlow. The requirements are pinned
    to the running versions, which also skips MLflow's slow requirement inference (~8 s a model).
    """
    import keras
    import mlflow
    import numpy as np
    import tensorflow as tf
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    inputs = Schema([TensorSpec(np.dtype(str(t.dtype)), (-1,), t.name) for t in keras_model.inputs])
    mlflow.tensorflow.save_model(
        keras_model,
        str(path),
        signature=ModelSignature(inputs=inputs),
        pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"],
    )


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def model_run_params(params: dict[str, Any]) -> dict[str, Any]:
    """A model run's params: ``algorithm`` and ``family`` (what it is), then its hyperparameters as ``model.<key>``.

    MLflow's compare page draws its parallel-coordinates plot on the first three params (by plain string order)
    whose values differ between the runs compared. Unprefixed, those were whatever one model alone has (``M``,
    ``alignment_weight``); now they are the algorithm, its family and one setting (the index's or a hyperparameter)."""
    from recflow.models import MODELS

    hyper = {f"model.{k}": v for k, v in flatten(params).items() if k != "name"}
    return {"algorithm": params["name"], "family": MODELS.family(params["name"]), **hyper}


#: a model run logs the experiment's champion metric again under this prefix (``champion_metric/recall_at_10``), and
#: first: MLflow's compare page colours its default plot by the first metric the runs share (in the order logged)
CHAMPION_METRIC_PREFIX = "champion_metric/"


def log_pipeline_run(
    cfg: RunConfig,
    *,
    dataset_path: str,
    data: Artifact,
    split: Artifact,
    features: Artifact | None,
    models: dict[str, ModelOutcome],
    task_counts: dict[str, int],
    root: Path | None = None,
    run_name: str | None = None,
    parent_run_id: str | None = None,
) -> dict[str, Any]:
    """Log the parent run and one nested run per model; returns ids and where to look.

    ``parent_run_id``: log into that (already started) parent run, leaving its end to its owner
    (``pipeline_run``); else a parent run named ``run_name`` is started and ended here.
    A model with a failed stage gets a FAILED nested run with the error as a tag, and its metrics
    if it was evaluated (an index that failed does not discard them).
    """
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    root = root or artifacts_root()
    experiment, uri = use_experiment(cfg, root)
    protocol = split.meta.get("protocol", cfg.split.protocol)
    config_json = cfg.model_dump(mode="json")
    with mlflow.start_run(run_id=parent_run_id, run_name=None if parent_run_id else run_name) as parent:
        mlflow.set_tags({"dataset": cfg.dataset.name, "protocol": protocol, "recflow.kind": "pipeline"})
        params = {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in flatten(config_json).items() if k != "models"}
        params["models"] = ",".join(m.name for m in cfg.models)
        mlflow.log_params(params)
        mlflow.log_dict(config_json, "config.json")
        with warnings.catch_warnings():  # a local path matches two equivalent registered source types
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(dataset_path)
        mlflow.log_input(MetaDataset(source=source, name=cfg.dataset.name, digest=data.fingerprint[:20]), context="training")
        quality = {k: data.meta[k] for k in ("rows_read", "rows_rejected", "n_ratings", "n_users", "n_items") if k in data.meta}
        mlflow.log_metrics({k: float(v) for k, v in quality.items()})
        mlflow.log_dict(data.meta, "data/ingest_summary.json")
        mlflow.log_dict(split.meta, "data/split_stats.json")
        rejects = data.file("rejects.parquet", root)
        if data.meta.get("rows_rejected") and rejects.exists():
            mlflow.log_artifact(str(rejects), "data")
        if features is not None:
            mlflow.log_dict(features.meta, "features/manifest.json")
        mlflow.log_metrics({f"tasks_{k}": float(v) for k, v in task_counts.items()})
        tag_stage_folders([data, split, features])
        if (forward := split.meta.get("time_forward")) is not None:
            log_night(split.meta, forward)

        children: dict[str, str] = {}
        table: dict[str, dict[str, float]] = {}
        for name, result in models.items():
            storage.check_root_fence(root)  # a run that lost the bucket's lease logs nothing more there
            with mlflow.start_run(run_name=name, nested=True) as child:
                children[name] = child.info.run_id
                mlflow.set_tags({"model": name, "protocol": protocol, "dataset": cfg.dataset.name})
                mlflow.log_params(model_run_params(cfg.model(name).model_dump(mode="json")))
                if result.failed:
                    mlflow.set_tag("error", result.error[:5000])
                if not result.evaluated:
                    mlflow.end_run(status="FAILED")
                    continue
                trained, scored = result.train, result.evaluate
                metrics = {k: float(v) for k, v in scored.meta["metrics"].items()}
                if (headline := metrics.get(cfg.serving.champion_metric)) is not None:  # logged first: see CHAMPION_METRIC_PREFIX
                    metrics = {CHAMPION_METRIC_PREFIX + cfg.serving.champion_metric: headline, **metrics}
                metrics["fit_seconds"] = float(trained.meta["fit_seconds"])
                metrics["train_examples_per_second"] = float(trained.meta["train_examples_per_second"])
                if "epoch_examples_per_second" in trained.meta:
                    metrics["epoch_examples_per_second"] = float(trained.meta["epoch_examples_per_second"])
                mlflow.log_metrics(metrics)
                curve = trained.file("loss_curve.png", root)
                if curve.exists():
                    mlflow.log_artifact(str(curve), "plots")
                if log_model_files(trained, root) == child.info.run_id:  # this run holds the fit: its per-epoch curves too
                    log_history(trained.file("history.json", root))
                if trained.meta.get("warm_start_from"):
                    mlflow.set_tag(WARM_START_TAG, trained.meta["warm_start_from"])
                tag_stage_folders([trained, scored, result.index])
                table[name] = {k: v for k, v in scored.meta["metrics"].items() if not k.startswith("n_")}
                if result.failed:
                    mlflow.end_run(status="FAILED")
        mlflow.log_dict(table, "metrics_table.json")
        mlflow.log_metrics(headline_metrics(cfg.serving.champion_metric, table))
        mlflow.MlflowClient(uri).set_experiment_tag(experiment.experiment_id, SHARED_VIEW_TAG, json.dumps(runs_table_view(cfg, list(table))))
    if parent_run_id:  # leaving the block marked it FINISHED: it stays RUNNING until the pipeline ends
        mlflow.MlflowClient(uri).update_run(parent_run_id, status="RUNNING")
    return {
        "tracking_uri": uri,
        "experiment": experiment.name,
        "experiment_id": experiment.experiment_id,
        "run_id": parent.info.run_id,
        "model_runs": children,
    }


NIGHT_TAG = "recflow.night"
WARM_START_TAG = "recflow.warm_start_from"


def log_night(split_meta: dict[str, Any], forward: dict[str, Any]) -> None:
    """A time-forward run is a night: tag ``recflow.night`` (the UTC date its test period starts, the
    newest partition's) and log what came in that period: ``n_new_interactions`` (its rows),
    ``n_cold_users`` / ``n_cold_items`` (first seen in it)."""
    import mlflow

    if forward.get("cutoff") is None:
        return
    night = datetime.fromtimestamp(int(forward["cutoff"]), timezone.utc).strftime("%Y-%m-%d")
    mlflow.set_tags({NIGHT_TAG: night, "recflow.period": forward["period"]})
    test = split_meta["parts"]["test"]
    mlflow.log_metrics({"n_new_interactions": float(test["rows"]), "n_cold_users": float(forward["cold_users"]), "n_cold_items": float(forward["cold_items"])})


#: an MLflow "shared view" of the experiment's runs table, opened by ``?viewStateShareKey=recflow`` (the links recflow prints)
SHARED_VIEW_KEY = "recflow"
SHARED_VIEW_TAG = f"mlflow.sharedViewState.{SHARED_VIEW_KEY}"


def runs_table_view(cfg: RunConfig, models: list[str]) -> dict[str, Any]:
    """The runs table as a first look wants it: newest first, with metric columns (MLflow shows none by default):
    the champion metric, NDCG and recall at each cutoff, RMSE, and on parent rows each model's headline."""
    headline = cfg.serving.champion_metric
    metrics = [headline, *(f"{m}_at_{k}" for k in cfg.evaluation.ks for m in ("recall", "ndcg")), "rmse", *(f"{headline}/{m}" for m in models)]
    columns = ["tags.`model`", *dict.fromkeys(f"metrics.`{m}`" for m in metrics)]
    return {"selectedColumns": columns, "orderByKey": "attributes.start_time", "orderByAsc": False}


def headline_metrics(metric: str, table: dict[str, dict[str, float]]) -> dict[str, float]:
    """The parent run's ``<metric>/<model>`` for each evaluated model (the champion metric): the runs table's parent
    rows and the chart view compare models across pipeline runs without opening a nested run."""
    return {f"{metric}/{name}": float(values[metric]) for name, values in table.items() if values.get(metric) is not None}


TRAIN_FINGERPRINT_TAG = "recflow.train_fingerprint"
MODEL_RUN_TAG = "recflow.model_run_id"
MODEL_FILES_TAG = "recflow.model_files"
STAGES_TAG = "recflow.stages"


def log_model_files(trained: Artifact, root: Path | None = None) -> str:
    """A trained model's files (``model``, ``keras_model``) into the active run, once per content.

    A cached rerun trains nothing, so copying its model again would only grow the store (EASE's
    dense matrix alone is hundreds of MB a copy). The first run that logs a train output's
    content (its fingerprint) holds the files (tag ``recflow.model_files=logged``); a later run
    with the same content refers to that run instead: tags ``recflow.model_run_id`` (the run
    holding the files), ``recflow.model_uri`` and, for Keras models, ``recflow.keras_model_uri``
    (``mlflow.tensorflow.load_model(<that uri>)``). Every model run carries those tags, so
    readers never need to know whether the files are its own. If the earlier run was deleted or
    its files are gone (``recflow gc``), the files are logged again. Returns the run id holding them.
    """
    import mlflow
    from mlflow import MlflowClient

    root = root or artifacts_root()
    run = mlflow.active_run()
    client = MlflowClient()
    keras_flavor = trained.file(KERAS_FLAVOR_DIR, root)
    holder = earlier_model_run(client, run.info.experiment_id, trained.fingerprint, exclude=run.info.run_id)
    if holder is None:
        storage.check_root_fence(root)
        try:
            mlflow.log_artifacts(str(trained.file("model", root)), "model")
            if keras_flavor.is_dir():  # load with mlflow.tensorflow.load_model("runs:/<id>/keras_model")
                mlflow.log_artifacts(str(keras_flavor), "keras_model")
        except OSError as exc:  # a full disk: no partial copy stays behind to pile up with every attempt
            remove_partial_copies(run.info.artifact_uri, ("model", "keras_model"))
            raise ModelFilesNotLogged(f"MLflow could not store {trained.path}'s model files in {storage.redact_uri(run.info.artifact_uri)}: {exc}") from exc
        mlflow.set_tag(MODEL_FILES_TAG, "logged")
        holder = run
    tags = {TRAIN_FINGERPRINT_TAG: trained.fingerprint, MODEL_RUN_TAG: holder.info.run_id, "recflow.model_uri": f"{holder.info.artifact_uri}/model"}
    if keras_flavor.is_dir():
        tags["recflow.keras_model_uri"] = f"{holder.info.artifact_uri}/keras_model"
    mlflow.set_tags(tags)
    return holder.info.run_id


class ModelFilesNotLogged(OSError):
    """A model's files could not be copied into its MLflow run (a full disk, a refused store); the partial copy is removed."""


def remove_partial_copies(artifact_uri: str, folders: tuple[str, ...]) -> None:
    """Delete what a failed ``log_artifacts`` left in a local artifact store (a remote one is left to the store)."""
    import shutil
    from urllib.parse import unquote, urlparse

    parsed = urlparse(artifact_uri)
    if parsed.scheme not in ("", "file"):
        return
    base = Path(unquote(parsed.path))
    for folder in folders:
        shutil.rmtree(base / folder, ignore_errors=True)


def earlier_model_run(client: Any, experiment_id: str, fingerprint: str, exclude: str | None = None) -> Any | None:
    """The newest live run of the experiment that logged the files of this train content, if they are still there."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TRAIN_FINGERPRINT_TAG}` = '{fingerprint}' and tags.`{MODEL_FILES_TAG}` = 'logged'",
        order_by=["attributes.start_time DESC"],
        max_results=5,
    )
    for run in runs:
        if run.info.run_id != exclude and client.list_artifacts(run.info.run_id, "model"):
            return run
    return None


def tag_stage_folders(artifacts: list[Artifact | None]) -> None:
    """Tag the active run with the stage folders it used (``recflow gc`` keeps what kept runs refer to)."""
    import mlflow

    paths = sorted({a.path for a in artifacts if a is not None})
    mlflow.set_tag(STAGES_TAG, json.dumps(paths))


def log_history(path: Path) -> None:
    """Per-epoch values as MLflow metrics with ``step`` = epoch (MLflow draws them as curves).

    Logged in the run holding the fit's files (``log_model_files``), once per fit: a cached rerun's
    model run did not train; it has the loss-curve plot and ``recflow.model_run_id`` naming the run
    whose charts show the curves (they were ~250 of the ~1,200 metric rows a rerun of the default
    preset wrote, the same values again).

    A NaN stands for "not measured" (a validation metric without a validation part) and is left
    out; a NaN loss never gets here: training raises on it.
    """
    import math

    import mlflow

    if not path.exists():
        return
    for row in json.loads(path.read_text()):
        step = int(row.get("epoch", 0))
        values = {k: float(v) for k, v in row.items() if k != "epoch" and isinstance(v, (int, float)) and math.isfinite(v)}
        if values:
            mlflow.log_metrics(values, step=step)


def metric_sort_key(name: str) -> tuple[int, int, str]:
    """By cut-off, then the registry's order (rating metrics first), then name; keys no spec describes last."""
    found = measured(name)
    if found is None:
        return (0, len(SPECS), name)
    rank = sorted(SPECS, key=lambda s: s.kind != "rating").index(found.spec)
    return (found.k or 0, rank, name)
