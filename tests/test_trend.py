"""``recflow compare --trend``: each model's metric over the pipeline runs of an experiment, by date."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from recflow.cli.main import app
from recflow.experiments.compare import CompareError
from recflow.experiments.trend import TrendPoint, log_trend, trend, trend_rows, write_trend
from tests.test_compare import pipeline_run, store  # noqa: F401  (fixture)


def ci(value: float, low: float, high: float) -> dict[str, float]:
    return {"recall_at_10": value, "recall_at_10_ci_low": low, "recall_at_10_ci_high": high}


@pytest.fixture
def three_nights(store):  # noqa: F811
    """ease in every run with CIs; bias without CIs; popular missing from the second run."""
    pipeline_run(store, "night-1", {"ease": ci(0.20, 0.18, 0.22), "bias": {"recall_at_10": 0.10}, "popular": {"recall_at_10": 0.05}})
    pipeline_run(store, "night-2", {"ease": ci(0.21, 0.19, 0.24), "bias": {"recall_at_10": 0.11}})
    pipeline_run(store, "night-3", {"ease": ci(0.25, 0.20, 0.30), "bias": {"recall_at_10": 0.12}, "popular": {"recall_at_10": 0.06}})
    return store


def test_each_model_has_one_point_per_pipeline_run_oldest_first(three_nights):
    result = trend(metric="recall_at_10")
    assert [r.name for r in result.runs] == ["night-1", "night-2", "night-3"]
    assert result.series["ease"] == [TrendPoint(0.20, 0.18, 0.22), TrendPoint(0.21, 0.19, 0.24), TrendPoint(0.25, 0.20, 0.30)]


def test_runs_without_a_confidence_interval_are_points_without_one(three_nights):
    assert trend(metric="recall_at_10").series["bias"] == [TrendPoint(0.10), TrendPoint(0.11), TrendPoint(0.12)]


def test_a_model_absent_from_a_run_leaves_a_gap_there(three_nights):
    assert trend(metric="recall_at_10").series["popular"] == [TrendPoint(0.05), None, TrendPoint(0.06)]


def test_last_keeps_the_newest_runs(three_nights):
    result = trend(metric="recall_at_10", last=2)
    assert [r.name for r in result.runs] == ["night-2", "night-3"]
    assert result.series["popular"] == [None, TrendPoint(0.06)]


def test_a_metric_no_run_has_is_a_clear_error(three_nights):
    with pytest.raises(CompareError, match="no run .* has the metric 'ndcg_at_5'"):
        trend(metric="ndcg_at_5")


def test_table_rows_are_newest_run_first_with_the_ci_beside_the_metric(three_nights):
    rows = trend_rows(trend(metric="recall_at_10", last=2))
    assert [(r["pipeline_run"], r["model"], r["recall_at_10"], r["recall_at_10_ci"]) for r in rows] == [
        ("night-3", "bias", 0.12, None),
        ("night-3", "ease", 0.25, "[0.2000, 0.3000]"),
        ("night-3", "popular", 0.06, None),
        ("night-2", "bias", 0.11, None),
        ("night-2", "ease", 0.21, "[0.1900, 0.2400]"),
    ]


def test_the_plot_is_a_png_and_is_logged_as_a_trend_run(three_nights, tmp_path):
    result = trend(metric="recall_at_10")
    path = write_trend(result, tmp_path)
    assert path == tmp_path / "trend_recflow-tiny_recall_at_10.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run = three_nights.get_run(log_trend(result, path))
    assert run.info.run_name == "trend recall_at_10" and run.data.tags["recflow.kind"] == "trend"
    assert [a.path for a in three_nights.list_artifacts(run.info.run_id, "trend")] == ["trend/trend_recflow-tiny_recall_at_10.png"]


def test_cli_prints_where_the_png_is_and_logs_only_when_asked(three_nights, tmp_path, monkeypatch):
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "home"))
    out = CliRunner().invoke(app, ["compare", "--trend", "--metric", "recall_at_10"])
    assert out.exit_code == 0, out.output
    png = tmp_path / "home" / "trends" / "trend_recflow-tiny_recall_at_10.png"
    assert f"trend plot: {png}" in out.output.replace("\n", "") and png.exists()
    assert "logged" not in out.output
    exp = three_nights.get_experiment_by_name("recflow/tiny").experiment_id
    assert not three_nights.search_runs([exp], "tags.`recflow.kind` = 'trend'")
    out = CliRunner().invoke(app, ["compare", "--trend", "--log"])
    assert "trend logged to MLflow" in out.output
    assert len(three_nights.search_runs([exp], "tags.`recflow.kind` = 'trend'")) == 1


@pytest.mark.slow  # operates a flow, a server or many threads: end-to-end
def test_a_flow_run_publishes_the_trend_table_artifact(three_nights, prefect_harness):
    import json

    from prefect import flow
    from prefect.artifacts import Artifact

    from recflow.experiments.config import RunConfig
    from tasks.reporting import publish_trend

    cfg = RunConfig.model_validate({"dataset": {"name": "tiny"}})
    tracking = {"experiment": "recflow/tiny", "tracking_uri": three_nights.tracking_uri}
    flow(name="trend-report")(lambda: publish_trend(cfg, tracking, last=2))()
    rows = json.loads(Artifact.get("recflow-tiny-trend").data)
    assert [(r["pipeline_run"], r["model"], r["recall_at_10"], r["recall_at_10_ci"]) for r in rows] == [
        ("night-3", "bias", 0.12, None),
        ("night-3", "ease", 0.25, "[0.2000, 0.3000]"),
        ("night-3", "popular", 0.06, None),
        ("night-2", "bias", 0.11, None),
        ("night-2", "ease", 0.21, "[0.1900, 0.2400]"),
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", r["run_date"]) for r in rows)


def test_a_trend_that_cannot_be_read_warns_and_never_fails_the_run(tmp_path, caplog):
    from recflow.experiments.config import RunConfig
    from tasks.reporting import publish_trend

    cfg = RunConfig.model_validate({"dataset": {"name": "tiny"}})
    tracking = {"experiment": "recflow/tiny", "tracking_uri": f"sqlite:///{tmp_path / 'missing.db'}"}
    assert publish_trend(cfg, tracking) is None
    assert "could not publish the trend artifact: no MLflow store" in caplog.text
