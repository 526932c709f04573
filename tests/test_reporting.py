"""What the Prefect run report says (pure parts: keys, links, the markdown table)."""

from __future__ import annotations

from recflow.config import RunConfig
from recflow.store import Artifact
from tasks.reporting import artifact_key, metric_rows, mlflow_compare_url, summary_markdown


def _outcome(model: str, metrics: dict) -> dict:
    evaluate = Artifact.model_construct(stage="evaluate", key="k", fingerprint="f", meta={"metrics": metrics})
    train = Artifact.model_construct(stage="train", key="k", fingerprint="f", meta={"fit_seconds": 1.5})
    return {"train": train, "evaluate": evaluate}


def test_artifact_keys_are_lowercase_dashes():
    assert artifact_key("recflow", "ML_Latest.Small") == "recflow-ml-latest-small"


def test_compare_link_lists_the_runs():
    url = mlflow_compare_url("http://m:5000", "3", ["a", "b"])
    assert url == "http://m:5000/#/compare-runs?runs=%5B%22a%22%2C%22b%22%5D&experiments=%5B%223%22%5D"


def test_failed_models_keep_a_row_with_their_error():
    rows = metric_rows({"bias": _outcome("bias", {"recall_at_10": 0.25, "n_eval_users": 9}), "mf": {"error": "diverged"}},
                       {"bias": "r1", "mf": "r2"})
    assert rows[0] == {"model": "bias", "status": "ok", "recall_at_10": 0.25, "fit_seconds": 1.5, "mlflow_run_id": "r1", "error": ""}
    assert rows[1]["status"] == "failed" and rows[1]["recall_at_10"] is None and rows[1]["error"] == "diverged"


def test_summary_shows_the_smallest_k_and_links_each_run():
    rows = metric_rows({"bias": _outcome("bias", {"recall_at_5": 0.1, "recall_at_10": 0.2, "rmse": 0.9})}, {"bias": "run1"})
    tracking = {"experiment_id": "7", "run_id": "parent", "experiment": "recflow/x", "tracking_uri": "sqlite:///m.db"}
    text = summary_markdown(RunConfig(), rows, tracking, {"ran": 3, "cached": 4}, "temporal", "brave-fox", "http://m:5000")
    assert "| model | status | rmse | recall_at_5 | MLflow |" in text
    assert "| bias | ok | 0.9000 | 0.1000 | [run1](http://m:5000/#/experiments/7/runs/run1) |" in text
    assert "tasks **3 ran, 4 cached**" in text
