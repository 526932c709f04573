"""The ``recflow`` command line."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from recflow.cli import app

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
    assert (counts, log.split(": ")[0]) == ("tasks: 7 ran, 0 cached", "log (TensorFlow, MLflow)")
    second = runner.invoke(app, ["run", "--config", "configs/smoke.yaml"])
    assert second.output.strip().splitlines()[-2] == "tasks: 0 ran, 7 cached"


def test_summary_has_a_row_per_model_and_recall_ndcg_per_cutoff(capsys):
    from types import SimpleNamespace

    from recflow.cli import print_summary

    result = {
        "protocol": "temporal",
        "metrics": {
            "bias": {"rmse": 0.9063, "recall_at_10": 0.05, "ndcg_at_10": 0.0612, "precision_at_10": 0.1, "n_eval_users": 27},
            "ease": {"recall_at_10": 0.2139, "ndcg_at_10": 0.2851, "n_eval_users": 27},
        },
        "tracking": {"run_id": "r1", "experiment": "recflow/x", "tracking_uri": "file:///tmp/mlruns"},
        "tasks": {"ran": 3, "cached": 1},
    }
    print_summary(SimpleNamespace(dataset=SimpleNamespace(name="x")), result)
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if "RMSE" in line)
    assert header.split() == ["model", "RMSE", "R@10", "N@10", "users"]
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.split()[:1] in (["bias"], ["ease"])}
    assert rows == {"bias": ["0.9063", "0.0500", "0.0612", "27"], "ease": ["-", "0.2139", "0.2851", "27"]}
    assert lines[-1] == "tasks: 3 ran, 1 cached"


def test_synth_writes_a_movielens_folder(tmp_path):
    result = runner.invoke(app, ["synth", str(tmp_path / "ds"), "--ratings", "500", "--users", "50", "--items", "40"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ds" / "ratings.csv").is_file()
