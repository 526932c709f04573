"""What the Prefect run report says (pure parts: keys, links, the markdown table)."""

from __future__ import annotations

import dataclasses

import tasks.reporting
from recflow.experiments.config import RunConfig
from recflow.experiments.summary import RunSummary
from recflow.runtime.outcomes import ModelOutcome, StageFailure
from recflow.runtime.store import Artifact
from tasks.reporting import EpochProgress, artifact_key, metric_rows, mlflow_compare_url, summary_markdown


def _outcome(model: str, metrics: dict, failures: tuple[StageFailure, ...] = ()) -> ModelOutcome:
    evaluate = Artifact.model_construct(stage="evaluate", key="k", fingerprint="f", meta={"metrics": metrics})
    train = Artifact.model_construct(stage="train", key="k", fingerprint="f", meta={"fit_seconds": 1.5})
    return ModelOutcome(model, train, evaluate, failures=failures)


def _summary(models: dict, runs: dict, tracking: dict | None = None, counts: dict | None = None, protocol: str = "temporal") -> RunSummary:
    tracking = {**(tracking or TRACKING), "model_runs": runs}
    return RunSummary.from_outcomes(RunConfig(), models, tracking, counts or {"ran": 1, "cached": 0}, protocol)


def test_artifact_keys_are_lowercase_dashes():
    assert artifact_key("recflow", "ML_Latest.Small") == "recflow-ml-latest-small"


def test_compare_link_lists_the_runs():
    url = mlflow_compare_url("http://m:5000", "3", ["a", "b"])
    assert url == "http://m:5000/#/compare-runs?runs=%5B%22a%22%2C%22b%22%5D&experiments=%5B%223%22%5D&workflowType=machine_learning"


def test_failed_models_keep_a_row_with_their_error():
    failed = ModelOutcome("mf", failures=(StageFailure("train", "diverged", "mf"),))
    rows = metric_rows(_summary({"bias": _outcome("bias", {"recall_at_10": 0.25, "n_eval_users": 9}), "mf": failed}, {"bias": "r1", "mf": "r2"}))
    assert rows[0] == {"model": "bias", "status": "ok", "recall_at_10": 0.25, "n_eval_users": 9, "fit_seconds": 1.5, "mlflow_run_id": "r1", "error": ""}
    assert rows[1]["status"] == "failed" and rows[1]["recall_at_10"] is None and rows[1]["error"] == "train: diverged"


def test_a_model_whose_index_failed_keeps_its_metrics_beside_the_failure():
    outcome = _outcome("mf", {"recall_at_10": 0.25}, (StageFailure("index", "MemoryError: faiss", "mf"),))
    summary = _summary({"mf": outcome}, {"mf": "r1"})
    rows = metric_rows(summary)
    assert rows == [
        {"model": "mf", "status": "index failed", "recall_at_10": 0.25, "fit_seconds": 1.5, "mlflow_run_id": "r1", "error": "index: MemoryError: faiss"}
    ]
    text = summary_markdown(summary, None, None)
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
    tracking = {"experiment_id": "7", "run_id": "parent", "experiment": "recflow/x", "tracking_uri": "sqlite:///m.db"}
    summary = _summary({"bias": _outcome("bias", {"recall_at_5": 0.1, "recall_at_10": 0.2, "rmse": 0.9})}, {"bias": "run1"}, tracking, {"ran": 3, "cached": 4})
    text = summary_markdown(summary, "brave-fox", "http://m:5000")
    assert "| model | status | rmse | recall_at_5 | MLflow |" in text
    assert "| bias | ok | 0.9000 | 0.1000 | [run1](http://m:5000/#/experiments/7/runs/run1?workflowType=machine_learning) |" in text
    assert "tasks **3 ran, 4 cached**" in text


RANKED = {
    "recall_at_10": 0.2139,
    "recall_at_10_ci_low": 0.2098,
    "recall_at_10_ci_high": 0.2180,
    "n_eval_users": 610,
    "n_test_users": 612,
    "n_test_users_no_relevant": 2,
    "n_cold_test_users": 0,
}
RATED = {**RANKED, "rmse": 0.9, "n_rated": 10084, "n_rated_cold_users": 3, "rated_min": 0.5, "rated_max": 5.0}
TRACKING = {"experiment_id": "7", "run_id": "parent", "experiment": "recflow/x", "tracking_uri": "sqlite:///m.db"}


def test_rows_carry_each_metrics_interval_and_population():
    rows = metric_rows(_summary({"ease": _outcome("ease", RANKED)}, {"ease": "r1"}))
    assert rows[0]["recall_at_10"] == 0.2139 and rows[0]["recall_at_10_ci"] == "[0.2098, 0.2180]"
    assert "recall_at_10_ci_low" not in rows[0]
    assert (rows[0]["n_eval_users"], rows[0]["n_test_users_no_relevant"], rows[0]["n_cold_test_users"]) == (610, 2, 0)


def test_summary_shows_intervals_and_whom_each_metric_covers():
    summary = _summary({"mf": _outcome("mf", RATED), "ease": _outcome("ease", RANKED)}, {"mf": "r1", "ease": "r2"}, protocol="user_temporal")
    text = summary_markdown(summary, None, None)
    assert "| mf | ok | 0.9000 | 0.2139 ±0.0041 | `r1` |" in text
    assert "| ease | ok | - | 0.2139 ±0.0041 | `r2` |" in text
    assert "- ranking metrics: mean over 610 users of 612 test users; not ranked: 2 without a relevant test item, 0 cold (no training ratings)" in text
    assert "- RMSE / MAE: 10084 test ratings, 3 from cold users, ratings 0.5 to 5" in text
    assert "±: half the width of the 95% bootstrap confidence interval over the evaluated users." in text
    assert "warning" not in text


def test_summary_warns_below_100_evaluated_users():
    few = {**RANKED, "n_eval_users": 27, "n_test_users": 74, "n_cold_test_users": 47, "n_test_users_no_relevant": 0}
    text = summary_markdown(_summary({"ease": _outcome("ease", few)}, {"ease": "r1"}), None, None)
    assert ("> **warning: only 27 users evaluated (< 100): differences between models are within noise; compare the confidence intervals**") in text
    assert "mean over 27 users of 74 test users; not ranked: 0 without a relevant test item, 47 cold" in text


def test_the_summary_says_which_model_became_champion_or_why_none_did():
    champion = {"registered_model": "recflow-ml", "champion_version": 3, "model": "ease", "metric": "recall_at_10", "value": 0.21, "reason": "beats v2"}
    with_champion = _summary({"ease": _outcome("ease", {"recall_at_10": 0.21})}, {"ease": "r1"})
    text = summary_markdown(dataclasses.replace(with_champion, serving={"champion": champion}), None, None)
    assert "**champion: recflow-ml v3 (this run's best: ease, recall_at_10 0.2100; beats v2)**" in text
    assert "try:" not in text
    assert "**champion: unchanged**" in summary_markdown(dataclasses.replace(with_champion, serving=tasks.reporting.CHAMPION_NOT_RUN), None, None)
    assert "**champion: none registered**" in summary_markdown(with_champion, None, None)
