"""What the Prefect run report says (pure parts: keys, links, the markdown table)."""

from __future__ import annotations

import tasks.reporting
from recflow.config import RunConfig
from recflow.outcomes import ModelOutcome, StageFailure
from recflow.store import Artifact
from tasks.reporting import EpochProgress, artifact_key, metric_rows, mlflow_compare_url, summary_markdown


def _outcome(model: str, metrics: dict, failures: tuple[StageFailure, ...] = ()) -> ModelOutcome:
    evaluate = Artifact.model_construct(stage="evaluate", key="k", fingerprint="f", meta={"metrics": metrics})
    train = Artifact.model_construct(stage="train", key="k", fingerprint="f", meta={"fit_seconds": 1.5})
    return ModelOutcome(model, train, evaluate, failures=failures)


def test_artifact_keys_are_lowercase_dashes():
    assert artifact_key("recflow", "ML_Latest.Small") == "recflow-ml-latest-small"


def test_compare_link_lists_the_runs():
    url = mlflow_compare_url("http://m:5000", "3", ["a", "b"])
    assert url == "http://m:5000/#/compare-runs?runs=%5B%22a%22%2C%22b%22%5D&experiments=%5B%223%22%5D&workflowType=machine_learning"


def test_failed_models_keep_a_row_with_their_error():
    failed = ModelOutcome("mf", failures=(StageFailure("train", "diverged", "mf"),))
    rows = metric_rows({"bias": _outcome("bias", {"recall_at_10": 0.25, "n_eval_users": 9}), "mf": failed}, {"bias": "r1", "mf": "r2"})
    assert rows[0] == {"model": "bias", "status": "ok", "recall_at_10": 0.25, "fit_seconds": 1.5, "mlflow_run_id": "r1", "error": ""}
    assert rows[1]["status"] == "failed" and rows[1]["recall_at_10"] is None and rows[1]["error"] == "train: diverged"


def test_a_model_whose_index_failed_keeps_its_metrics_beside_the_failure():
    outcome = _outcome("mf", {"recall_at_10": 0.25}, (StageFailure("index", "MemoryError: faiss", "mf"),))
    rows = metric_rows({"mf": outcome}, {"mf": "r1"})
    assert rows == [{"model": "mf", "status": "index failed", "recall_at_10": 0.25, "fit_seconds": 1.5, "mlflow_run_id": "r1",
                     "error": "index: MemoryError: faiss"}]
    text = summary_markdown(RunConfig(), rows, {"experiment_id": "7", "run_id": "p", "experiment": "e", "tracking_uri": "sqlite:///m.db"},
                            {"ran": 1, "cached": 0}, "temporal", None, None)
    assert "| mf | index failed | 0.2500 |" in text
    assert "- `mf`: index: MemoryError: faiss" in text


def test_a_model_that_stops_before_its_epoch_budget_ends_its_progress_bar(monkeypatch):
    updates = []
    monkeypatch.setattr(tasks.reporting, "create_progress_artifact", lambda progress, description: "bar")
    monkeypatch.setattr(tasks.reporting, "update_progress_artifact", lambda _id, progress, description: updates.append((progress, description)))
    progress = EpochProgress("mf", 20)
    for epoch in range(1, 8):
        progress(epoch, {"loss": 0.5})
    progress.close()
    assert updates[-2][0] == 35.0
    assert updates[-1] == (100.0, "train[mf]: epochs stopped after epoch 7/20")


def test_a_model_that_runs_its_whole_budget_is_not_told_it_stopped(monkeypatch):
    updates = []
    monkeypatch.setattr(tasks.reporting, "create_progress_artifact", lambda progress, description: "bar")
    monkeypatch.setattr(tasks.reporting, "update_progress_artifact", lambda _id, progress, description: updates.append((progress, description)))
    progress = EpochProgress("mf", 2)
    progress(1, {})
    progress(2, {})
    progress.close()
    assert [u[0] for u in updates] == [50.0, 100.0]


def test_summary_shows_the_smallest_k_and_links_each_run():
    rows = metric_rows({"bias": _outcome("bias", {"recall_at_5": 0.1, "recall_at_10": 0.2, "rmse": 0.9})}, {"bias": "run1"})
    tracking = {"experiment_id": "7", "run_id": "parent", "experiment": "recflow/x", "tracking_uri": "sqlite:///m.db"}
    text = summary_markdown(RunConfig(), rows, tracking, {"ran": 3, "cached": 4}, "temporal", "brave-fox", "http://m:5000")
    assert "| model | status | rmse | recall_at_5 | MLflow |" in text
    assert "| bias | ok | 0.9000 | 0.1000 | [run1](http://m:5000/#/experiments/7/runs/run1?workflowType=machine_learning) |" in text
    assert "tasks **3 ran, 4 cached**" in text
