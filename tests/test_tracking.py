"""What a model's training history becomes in MLflow."""

from __future__ import annotations

import json

import mlflow

from recflow.experiments.tracking import log_history


def test_history_is_logged_per_epoch_and_unmeasured_values_are_left_out(tmp_path):
    history = tmp_path / "history.json"
    history.write_text(
        json.dumps(
            [
                {"epoch": 1, "loss": 0.5, "valid_recall_at_10": float("nan")},
                {"epoch": 2, "loss": 0.25, "valid_recall_at_10": float("nan")},
            ]
        )
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("history")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run(experiment_id=experiment) as run:
            log_history(history)
    finally:
        mlflow.set_tracking_uri(previous)
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss")] == [(1, 0.5), (2, 0.25)]
    assert "valid_recall_at_10" not in client.get_run(run.info.run_id).data.metrics


# ----------------------------------------------------------------------------- the pipeline's parent run


def _cfg(tmp_path):
    from recflow.experiments.config import RunConfig

    return RunConfig(tracking={"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "recflow/test"})


def test_a_new_experiment_opens_in_mlflows_training_view(tmp_path):
    from recflow.experiments.tracking import use_experiment

    experiment, _ = use_experiment(_cfg(tmp_path), tmp_path)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_an_experiment_made_before_the_tag_is_tagged_when_next_used(tmp_path):
    from recflow.experiments.tracking import use_experiment

    cfg = _cfg(tmp_path)
    client = mlflow.MlflowClient(cfg.tracking.tracking_uri)
    old = client.create_experiment("recflow/test", tags={"mlflow.experimentKind": "genai_development"})
    use_experiment(cfg, tmp_path)
    assert client.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"


def test_the_parent_run_is_named_after_the_preset_date_and_flow_run():
    from datetime import datetime

    from recflow.experiments.tracking import pipeline_run_name

    assert pipeline_run_name("smoke", datetime(2026, 11, 30, 9, 5)) == "smoke 2026-11-30 09:05"
    assert pipeline_run_name("smoke", datetime(2026, 11, 30, 9, 5), "hairy-muskox") == "smoke 2026-11-30 09:05 (hairy-muskox)"


def test_the_parent_run_runs_while_the_pipeline_does_and_finishes_with_it(tmp_path):
    from recflow.experiments.tracking import pipeline_run

    cfg = _cfg(tmp_path)
    client = mlflow.MlflowClient(cfg.tracking.tracking_uri)
    with pipeline_run(cfg, "smoke 2026-11-30 09:05") as parent:
        assert client.get_run(parent["run_id"]).info.status == "RUNNING"
    run = client.get_run(parent["run_id"])
    assert (run.info.status, run.info.run_name, run.data.tags["recflow.kind"]) == ("FINISHED", "smoke 2026-11-30 09:05", "pipeline")
    assert run.info.end_time >= run.info.start_time


def test_the_parent_run_is_failed_when_the_pipeline_raises(tmp_path):
    import pytest

    from recflow.experiments.tracking import pipeline_run

    cfg = _cfg(tmp_path)
    with pytest.raises(ValueError), pipeline_run(cfg, "smoke") as parent:
        raise ValueError("boom")
    assert mlflow.MlflowClient(cfg.tracking.tracking_uri).get_run(parent["run_id"]).info.status == "FAILED"


def _artifact(root, stage, meta, files=()):
    from recflow.runtime.store import Artifact

    folder = root / stage / "k"
    folder.mkdir(parents=True, exist_ok=True)
    for name in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("x")
    return Artifact(stage=stage, key="k", fingerprint="f" * 64, path=f"{stage}/k", meta=meta)


def test_a_model_whose_index_failed_keeps_its_metrics_and_its_run_says_why(tmp_path):
    from recflow.experiments.tracking import log_pipeline_run, pipeline_run
    from recflow.runtime.outcomes import ModelOutcome, StageFailure

    cfg = _cfg(tmp_path)
    data = _artifact(tmp_path, "ingest", {"n_ratings": 6, "n_users": 2, "n_items": 3})
    split = _artifact(tmp_path, "split", {"protocol": "user_random"})
    trained = _artifact(tmp_path, "train", {"fit_seconds": 1.5, "train_examples_per_second": 4.0}, files=["model/weights"])
    scored = _artifact(tmp_path, "evaluate", {"metrics": {"recall_at_10": 0.25, "n_eval_users": 2}})
    models = {
        "popular": ModelOutcome("popular", trained, scored),
        "bias": ModelOutcome("bias", trained, scored, failures=(StageFailure("index", "MemoryError: faiss", "bias"),)),
    }
    with pipeline_run(cfg, "smoke") as parent:
        tracking = log_pipeline_run(
            cfg,
            dataset_path=str(tmp_path),
            data=data,
            split=split,
            features=None,
            models=models,
            task_counts={"ran": 1, "cached": 0},
            root=tmp_path,
            parent_run_id=parent["run_id"],
        )
        client = mlflow.MlflowClient(cfg.tracking.tracking_uri)
        assert client.get_run(parent["run_id"]).info.status == "RUNNING"  # logging does not end the pipeline's run
    bias = client.get_run(tracking["model_runs"]["bias"])
    assert (bias.info.status, bias.data.metrics["recall_at_10"], bias.data.tags["error"]) == ("FAILED", 0.25, "index: MemoryError: faiss")
    assert client.get_run(tracking["model_runs"]["popular"]).info.status == "FINISHED"
    assert tracking["run_id"] == parent["run_id"]


def test_mlflows_compare_page_plots_algorithm_and_family_coloured_by_the_champion_metric(tmp_path):
    """MLflow's parallel-coordinates default, as its UI computes it: the first three params (plain string order) whose
    values differ between the compared runs, and the first metric (same order) every run has."""
    from recflow.experiments.tracking import log_pipeline_run
    from recflow.runtime.outcomes import ModelOutcome

    cfg = _cfg(tmp_path)
    data = _artifact(tmp_path, "ingest", {"n_ratings": 6, "n_users": 2, "n_items": 3})
    split = _artifact(tmp_path, "split", {"protocol": "user_random"})
    trained = _artifact(tmp_path, "train", {"fit_seconds": 1.5, "train_examples_per_second": 4.0}, files=["model/weights"])
    scored = _artifact(tmp_path, "evaluate", {"metrics": {"coverage_at_10": 0.5, "recall_at_10": 0.25, "n_eval_users": 2}})
    models = {name: ModelOutcome(name, trained, scored) for name in ("popular", "bias")}
    tracking = log_pipeline_run(
        cfg, dataset_path=str(tmp_path), data=data, split=split, features=None, models=models, task_counts={"ran": 1, "cached": 0}, root=tmp_path
    )
    client = mlflow.MlflowClient(cfg.tracking.tracking_uri)
    runs = [client.get_run(tracking["model_runs"][name]).data for name in ("popular", "bias")]
    keys = sorted(set(runs[0].params) | set(runs[1].params))
    differing = [k for k in keys if runs[0].params.get(k) != runs[1].params.get(k)]
    assert differing[:2] == ["algorithm", "family"] and differing[2].startswith("model.")
    assert (runs[1].params["algorithm"], runs[1].params["family"]) == ("bias", "baselines")
    assert sorted(set(runs[0].metrics) & set(runs[1].metrics))[0] == "champion_metric/recall_at_10"
    assert runs[1].metrics["champion_metric/recall_at_10"] == 0.25
