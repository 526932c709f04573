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
    assert "recall_at_10" in first.output
    assert "MLflow: run" in first.output
    assert first.output.strip().endswith("tasks: 7 ran, 0 cached")
    second = runner.invoke(app, ["run", "--config", "configs/smoke.yaml"])
    assert second.output.strip().endswith("tasks: 0 ran, 7 cached")


def test_synth_writes_a_movielens_folder(tmp_path):
    result = runner.invoke(app, ["synth", str(tmp_path / "ds"), "--ratings", "500", "--users", "50", "--items", "40"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ds" / "ratings.csv").is_file()
