"""``recflow compare``: recent model runs from MLflow, best first, against the champion."""

from __future__ import annotations

import time

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from recflow.cli.main import app
from recflow.experiments.compare import CompareError, compare, log_report

DATASET = "tiny"


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An empty MLflow store with the experiment a pipeline run on ``tiny`` would log to."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(uri)
    client.create_experiment(f"recflow/{DATASET}", artifact_location=(tmp_path / "mlruns").as_uri())
    return client


def pipeline_run(client: MlflowClient, name: str, models: dict[str, dict[str, float]], protocol: str = "temporal") -> dict[str, str]:
    """A parent run tagged like recflow's with one nested run per model; returns model -> run id."""
    exp = client.get_experiment_by_name(f"recflow/{DATASET}").experiment_id
    parent = client.create_run(exp, run_name=name, tags={"recflow.kind": "pipeline", "dataset": DATASET, "protocol": protocol})
    ids = {}
    for model, metrics in models.items():
        child = client.create_run(
            exp, run_name=model, tags={"mlflow.parentRunId": parent.info.run_id, "model": model, "dataset": DATASET, "protocol": protocol}
        )
        for key, value in metrics.items():
            client.log_metric(child.info.run_id, key, value)
        client.set_terminated(child.info.run_id)
        ids[model] = child.info.run_id
    client.set_terminated(parent.info.run_id)
    time.sleep(0.01)  # distinct start times
    return ids


def crown(client: MlflowClient, run_id: str) -> None:
    name = f"recflow-{DATASET}"
    client.create_registered_model(name)
    version = client.create_model_version(name, source=f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias(name, "champion", version.version)


def test_rows_are_ranked_best_first_on_the_metric(store):
    pipeline_run(store, "nightly", {"popular": {"recall_at_10": 0.1}, "bias": {"recall_at_10": 0.3}, "ease": {"recall_at_10": 0.2}})
    result = compare(metric="recall_at_10")
    assert [r.model for r in result.rows] == ["bias", "ease", "popular"]


def test_error_metrics_rank_smallest_first_and_runs_without_the_metric_last(store):
    pipeline_run(store, "nightly", {"popular": {"recall_at_10": 0.1}, "bias": {"rmse": 0.95}, "mf": {"rmse": 0.88}})
    assert [r.model for r in compare(metric="rmse").rows] == ["mf", "bias", "popular"]


def test_last_keeps_only_the_newest_pipeline_runs(store):
    pipeline_run(store, "old", {"bias": {"recall_at_10": 0.9}})
    pipeline_run(store, "new", {"bias": {"recall_at_10": 0.2}})
    rows = compare(last=1).rows
    assert [(r.pipeline_run_name, r.metrics["recall_at_10"]) for r in rows] == [("new", 0.2)]


def test_without_a_champion_the_table_says_so(store):
    pipeline_run(store, "nightly", {"bias": {"recall_at_10": 0.3}})
    result = compare()
    assert result.champions == {}
    assert result.rows[0].delta is None
    assert result.notes == ["no champion for tiny yet (registered model 'recflow-tiny' has no alias 'champion')"]


def test_change_is_measured_against_the_champion(store):
    first = pipeline_run(store, "monday", {"bias": {"recall_at_10": 0.25}})
    pipeline_run(store, "tuesday", {"bias": {"recall_at_10": 0.30}, "popular": {"recall_at_10": 0.10}})
    crown(store, first["bias"])
    result = compare()
    assert [(r.pipeline_run_name, r.model) for r in result.rows] == [("tuesday", "bias"), ("monday", "bias"), ("tuesday", "popular")]
    assert [r.delta for r in result.rows] == pytest.approx([0.05, 0.0, -0.15])
    assert [r.is_champion for r in result.rows] == [False, True, False]
    assert result.champions["tiny"].value == 0.25


def test_runs_under_another_protocol_are_not_measured_against_the_champion(store):
    first = pipeline_run(store, "monday", {"bias": {"recall_at_10": 0.25}})
    pipeline_run(store, "random split", {"bias": {"recall_at_10": 0.40}}, protocol="random")
    crown(store, first["bias"])
    result = compare()
    assert [(r.pipeline_run_name, r.delta, r.other_protocol) for r in result.rows] == [("random split", None, True), ("monday", 0.0, False)]
    shown = CliRunner().invoke(app, ["compare"]).output
    assert "other protocol" in shown


def test_an_unknown_metric_names_the_ones_there_are(store):
    pipeline_run(store, "nightly", {"bias": {"recall_at_10": 0.3, "rmse": 0.9}})
    with pytest.raises(CompareError, match=r"'recall@10'.*\['recall_at_10', 'rmse'\]"):
        compare(metric="recall@10")


def test_report_is_logged_as_markdown_and_one_chart_per_metric(store):
    pipeline_run(store, "nightly", {"bias": {"recall_at_10": 0.3, "ndcg_at_10": 0.2}, "popular": {"recall_at_10": 0.1, "ndcg_at_10": 0.05}})
    result = compare()
    run_id = log_report(result)
    files = {a.path for a in store.list_artifacts(run_id, "comparison")}
    assert files == {"comparison/comparison.md", "comparison/recall_at_10.png", "comparison/ndcg_at_10.png"}
    run = store.get_run(run_id)
    assert run.data.tags["recflow.kind"] == "comparison"
    assert run.data.tags["best_model"] == "bias"
    # a comparison run is never compared itself
    assert {r.model for r in compare().rows} == {"bias", "popular"}


def test_cli_prints_the_table_after_two_runs(store):
    pipeline_run(store, "monday", {"bias": {"recall_at_10": 0.25}})
    pipeline_run(store, "tuesday", {"bias": {"recall_at_10": 0.30}})
    result = CliRunner().invoke(app, ["compare", "--metric", "recall_at_10", "--last", "5", "--no-log"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "bias" in line]
    assert "0.3000" in lines[0] and "tuesday" in lines[0]
    assert "0.2500" in lines[1] and "monday" in lines[1]
    assert "no champion for tiny yet" in result.output


def test_cli_without_a_store_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'absent.db'}")
    result = CliRunner().invoke(app, ["compare"])
    assert result.exit_code == 2
    assert "recflow run" in result.output


def test_the_ranked_metric_shows_half_its_confidence_interval(store):
    pipeline_run(
        store,
        "nightly",
        {
            "ease": {
                "recall_at_10": 0.2139,
                "recall_at_10_ci_low": 0.2098,
                "recall_at_10_ci_high": 0.2180,
                "ndcg_at_10": 0.28,
                "ndcg_at_10_ci_low": 0.27,
                "ndcg_at_10_ci_high": 0.29,
            },
            "popular": {"recall_at_10": 0.07},
        },
    )
    from recflow.experiments.compare import table_header, table_rows

    result = compare()
    header, rows = table_header(result), table_rows(result)
    assert rows[0][header.index("recall_at_10")] == "0.2139 ±0.0041"
    assert rows[0][header.index("ndcg_at_10")] == "0.2800"  # context columns stay bare: the table stays narrow
    assert rows[1][header.index("recall_at_10")] == "0.0700"  # a run without an interval
    assert "recall_at_10_ci_low" not in header


@pytest.mark.parametrize("width", [80, 100])
def test_cli_table_fits_the_terminal_width(store, width):
    models = {
        m: {"recall_at_10": 0.1 * i, "ndcg_at_10": 0.05 * i, "precision_at_10": 0.02 * i, "map_at_10": 0.01 * i, "rmse": 0.9}
        for i, m in enumerate(["two_tower", "item2vec", "deepwalk"], 1)
    }
    first = pipeline_run(store, "nightly-2026-11-30 (default preset)", models)
    crown(store, first["deepwalk"])
    result = CliRunner().invoke(app, ["compare"], env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= width
    row = next(line for line in lines if "two_tower" in line)
    assert "0.1000" in row and "-0.2000" in row  # the ranking metric and the change against the champion stay
    assert "…" not in result.output  # columns are hidden, never squeezed into ellipses


def test_cli_logs_the_report_to_mlflow_only_when_asked(store):
    pipeline_run(store, "nightly", {"bias": {"recall_at_10": 0.3}})
    exp = store.get_experiment_by_name(f"recflow/{DATASET}").experiment_id

    def comparison_runs():
        return store.search_runs([exp], "tags.`recflow.kind` = 'comparison'")

    assert "report logged" not in CliRunner().invoke(app, ["compare"]).output
    assert comparison_runs() == []
    assert "report logged to MLflow" in CliRunner().invoke(app, ["compare", "--log"]).output
    assert len(comparison_runs()) == 1


def test_a_cached_rerun_lists_each_fit_once_in_its_newest_run(store):
    first = pipeline_run(store, "night-1", {"bias": {"recall_at_10": 0.1}, "ease": {"recall_at_10": 0.2}})
    second = pipeline_run(store, "night-2", {"bias": {"recall_at_10": 0.1}, "ease": {"recall_at_10": 0.2}})
    for runs in (first, second):  # the same fits: what a cached rerun logs
        for model, run_id in runs.items():
            store.set_tag(run_id, "recflow.train_fingerprint", f"fit-{model}")
    rows = compare(metric="recall_at_10").rows
    assert [(r.model, r.pipeline_run_name) for r in rows] == [("ease", "night-2"), ("bias", "night-2")]


def test_compare_bars_start_just_below_the_smallest_value_not_at_zero():
    from recflow.experiments.compare import bar_origin

    assert bar_origin([0.21, 0.22, 0.26]) == pytest.approx(0.21 - 0.05 / 5)
    assert bar_origin([0.001, 0.5]) == 0.0  # never below zero for a non-negative metric
