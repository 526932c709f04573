"""The ``recflow`` command line."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from recflow.cli.main import app
from tests.conftest import REPO

runner = CliRunner()


def test_unknown_config_key_exits_2_naming_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("evaluation:\n  kss: [10]\n")
    result = runner.invoke(app, ["run", "--config", str(bad)])
    assert result.exit_code == 2
    assert "evaluation.kss" in result.output


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_run_prints_metrics_and_task_counts_then_reruns_from_cache(recflow_home):
    first = runner.invoke(app, ["run", "--config", "configs/smoke.yaml"])
    assert first.exit_code == 0, first.output
    assert "R@10" in first.output
    assert "MLflow: run" in first.output
    *_, counts, log = first.output.strip().splitlines()  # the run's log file is named last
    assert (counts, log.split(": ")[0]) == ("tasks: 7 ran, 0 cached", "log (tracebacks, TensorFlow, MLflow)")
    second = runner.invoke(app, ["run", "--config", "configs/smoke.yaml"])
    assert second.output.strip().splitlines()[-2] == "tasks: 0 ran, 7 cached"


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_a_failed_run_exits_1_with_a_line_per_failed_task_and_its_log_file_and_no_traceback(recflow_home):
    """Operated as a user does (a process, its real stdout/stderr); mf's negative initial spread passes the
    config but makes its fit raise, popular still trains and is tracked."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import mlflow
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}  # the session's test server, not a new one
    proc = subprocess.run(
        [sys.executable, "-m", "recflow.cli.main", "run", "--config", "configs/smoke.yaml", "--set", "models.mf.init_std=-1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "train[mf] failed: ValueError: scale < 0\n" in proc.stderr
    log_line = next(line for line in proc.stderr.splitlines() if line.startswith("tracebacks: "))
    log_file = Path(log_line.removeprefix("tracebacks: "))
    assert log_file.parent == recflow_home / "logs"
    assert "Traceback (most recent call last)" in log_file.read_text()
    assert "Traceback" not in output
    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("recflow/synthetic-smoke")
    parent = client.search_runs([experiment.experiment_id], "tags.`recflow.kind` = 'pipeline'")[0]
    assert parent.info.status == "FAILED"
    children = {r.data.tags["model"]: r for r in client.search_runs([experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")}
    assert children["mf"].info.status == "FAILED"
    assert "recall_at_10" in children["popular"].data.metrics


def _summary(result: dict):
    """The run summary the flow returns, from a hand-written result."""
    from recflow.experiments.config import load_config
    from recflow.experiments.summary import ModelRow, RunSummary

    rows = [ModelRow(model, metrics) for model, metrics in result["metrics"].items()]
    return RunSummary.build(load_config(None, ["dataset.name=x"]), rows, result["tracking"], result["tasks"], result["protocol"])


def test_summary_has_a_row_per_model_and_recall_ndcg_per_cutoff(capsys):
    from recflow.cli.main import print_summary

    result = {
        "protocol": "temporal",
        "metrics": {
            "bias": {"rmse": 0.9063, "recall_at_10": 0.05, "ndcg_at_10": 0.0612, "precision_at_10": 0.1, "n_eval_users": 27},
            "ease": {"recall_at_10": 0.2139, "ndcg_at_10": 0.2851, "n_eval_users": 27},
        },
        "tracking": {"run_id": "r1", "experiment": "recflow/x", "tracking_uri": "file:///tmp/mlruns"},
        "tasks": {"ran": 3, "cached": 1},
    }
    print_summary(_summary(result))
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if "RMSE" in line)
    assert header.split() == ["model", "RMSE", "R@10", "N@10", "users"]
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.split()[:1] in (["bias"], ["ease"])}
    assert rows == {"bias": ["0.9063", "0.0500", "0.0612", "27"], "ease": ["-", "0.2139", "0.2851", "27"]}
    assert lines[-1] == "tasks: 3 ran, 1 cached"


def test_summary_shows_intervals_population_and_warns_below_100_users(capsys):
    from recflow.cli.main import print_summary

    ranked = {
        "recall_at_10": 0.0344,
        "recall_at_10_ci_low": 0.0144,
        "recall_at_10_ci_high": 0.0544,
        "ndcg_at_10": 0.05,
        "ndcg_at_10_ci_low": 0.04,
        "ndcg_at_10_ci_high": 0.06,
        "recall_at_20": 0.06,
        "recall_at_20_ci_low": 0.03,
        "recall_at_20_ci_high": 0.09,
        "n_eval_users": 27,
        "n_test_users": 74,
        "n_test_users_no_relevant": 0,
        "n_cold_test_users": 47,
    }
    result = {
        "protocol": "temporal",
        "metrics": {"user_cf": {**ranked, "rmse": 0.95, "n_rated": 10084, "n_rated_cold_users": 4000, "rated_min": 0.5, "rated_max": 5.0}},
        "tracking": {"run_id": "r1", "experiment": "recflow/x", "tracking_uri": "file:///tmp/mlruns"},
        "tasks": {"ran": 3, "cached": 1},
    }
    print_summary(_summary(result))
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.split()[:1] == ["user_cf"])
    assert row.split() == ["user_cf", "0.9500", "0.0344", "±0.0200", "0.0500", "0.0600", "-", "27"]  # ± on recall at the smallest k only
    text = " ".join(out.split())  # rich wraps long lines to the terminal
    assert "ranking metrics: mean over 27 users of 74 test users; not ranked: 0 without a relevant test item, 47 cold" in text
    assert "RMSE / MAE: 10084 test ratings, 4000 from cold users, ratings 0.5 to 5" in text
    assert "warning: only 27 users evaluated (< 100): differences between models are within noise" in text


def test_synth_writes_a_movielens_folder(tmp_path):
    result = runner.invoke(app, ["synth", str(tmp_path / "ds"), "--ratings", "500", "--users", "50", "--items", "40"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ds" / "ratings.csv").is_file()


def test_offline_run_of_a_preset_without_its_data_fails_in_seconds_naming_the_places_and_the_fix(tmp_path):
    """Operated as a new user meets it: ``recflow run`` on a machine without network (a network namespace with
    only loopback), no ``$RECFLOW_DATA_DIR``; it exits before any server starts (the timeout bounds it)."""
    import os
    import shutil
    import subprocess
    import sys

    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rn", "true"], check=False).returncode != 0:
        pytest.skip("no unprivileged network namespaces here")
    env = {k: v for k, v in os.environ.items() if k != "RECFLOW_DATA_DIR"} | {"RECFLOW_HOME": str(tmp_path)}
    proc = subprocess.run(
        ["unshare", "-rn", sys.executable, "-m", "recflow.cli.main", "run", "--config", "configs/ml-1m-rmse.yaml"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    lines = proc.stderr.splitlines()
    assert proc.returncode == 1, proc.stderr
    assert lines[0] == "locate[ml-1m] failed: dataset 'ml-1m' not found; tried:"
    assert lines[1:3] == ["  $RECFLOW_DATA_DIR (not set)", f"  bundled copy: {REPO / 'recflow/data/bundled/ml-1m'}"]
    assert lines[-2].startswith("  download: https://files.grouplens.org/datasets/movielens/ml-1m.zip: no network (")
    assert lines[-1].startswith("  to fix: put the GroupLens release (ml-1m/ or ml-1m.zip) in a folder and export RECFLOW_DATA_DIR=")


def test_schedules_is_the_command_and_serve_a_deprecated_alias_off_the_help():
    listed = runner.invoke(app, ["--help"]).output
    assert "schedules" in listed and "│ serve " not in listed
    assert "deprecated" in runner.invoke(app, ["serve", "--help"]).output.lower()


def test_the_summary_points_at_recflow_uis_mlflow_on_one_line_when_it_runs(tmp_path, monkeypatch, capsys):
    import json
    import os

    from recflow.cli.main import browse_line

    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path))
    tracking = {"run_id": "r1", "experiment": "recflow/x", "experiment_id": "7", "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"}
    assert browse_line(tracking) == f"  browse: recflow ui (or mlflow ui --backend-store-uri sqlite:///{tmp_path}/mlflow.db)"
    (tmp_path / ".ui.json").write_text(json.dumps({"mlflow_url": "http://127.0.0.1:5000", "pid": os.getpid()}))
    assert browse_line(tracking) == "  browse: http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning&viewStateShareKey=recflow"
