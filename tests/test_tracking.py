"""What a model's training history becomes in MLflow."""

from __future__ import annotations

import json

import mlflow

from recflow.tracking import log_history


def test_history_is_logged_per_epoch_and_unmeasured_values_are_left_out(tmp_path):
    history = tmp_path / "history.json"
    history.write_text(json.dumps([
        {"epoch": 1, "loss": 0.5, "valid_recall_at_10": float("nan")},
        {"epoch": 2, "loss": 0.25, "valid_recall_at_10": float("nan")},
    ]))
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
