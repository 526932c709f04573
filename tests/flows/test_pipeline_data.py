"""Data quality and the published anchors, through the whole pipeline."""

from __future__ import annotations

import mlflow
import pytest

from flows.pipeline import run_pipeline
from recflow.data import write_synthetic

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

SMOKE = "configs/smoke.yaml"


def _dataset_overrides(path, name):
    return [f"dataset.path={path}", "dataset.synth=null", f"dataset.name={name}"]


def test_a_few_bad_rows_run_and_are_counted(recflow_home, tmp_path):
    data = write_synthetic(tmp_path / "few-bad", n_users=100, n_items=80, n_ratings=3000, format="ml-25m", seed=1)
    with open(data / "ratings.csv", "a") as fh:
        fh.write("1,abc,4.0,978300760\n")  # non-numeric item
        fh.write("2,3,9.0,978300760\n")  # rating outside 0.5..5
    result = run_pipeline(SMOKE, _dataset_overrides(data, "few-bad"), root=recflow_home)
    mlflow.set_tracking_uri(result["tracking"]["tracking_uri"])
    parent = mlflow.get_run(result["tracking"]["run_id"])
    assert parent.data.metrics["rows_rejected"] == 2
    assert parent.data.metrics["n_ratings"] == 3000


def test_too_many_bad_rows_fail_the_run(recflow_home, tmp_path):
    data = write_synthetic(tmp_path / "many-bad", n_users=50, n_items=40, n_ratings=500, format="ml-25m", seed=1)
    with open(data / "ratings.csv", "a") as fh:
        fh.writelines("1,abc,4.0,978300760\n" for _ in range(5))
    with pytest.raises(Exception, match="ratings.csv"):
        run_pipeline(SMOKE, _dataset_overrides(data, "many-bad"), root=recflow_home)


def test_wrong_delimiter_fails_naming_the_file(recflow_home, tmp_path):
    data = write_synthetic(tmp_path / "tabs", n_users=50, n_items=40, n_ratings=500, format="ml-25m", seed=1)
    ratings = data / "ratings.csv"
    ratings.write_text(ratings.read_text().replace(",", "\t"))
    with pytest.raises(Exception, match="ratings.csv"):
        run_pipeline(SMOKE, _dataset_overrides(data, "tabs"), root=recflow_home)


@pytest.mark.shared_data
def test_bias_rmse_on_ml1m_random_90_10_beats_surprise_baseline(recflow_home, shared_datasets, monkeypatch):
    monkeypatch.setenv("RECFLOW_DATA_DIR", str(shared_datasets))
    result = run_pipeline("configs/ml-1m-rmse.yaml", ["models=[{name: bias}]"], root=recflow_home)
    assert result["metrics"]["bias"]["rmse"] <= 0.91  # Surprise BaselineOnly: 0.9076


@pytest.mark.shared_data
def test_popularity_under_recbole_protocol_is_near_published(recflow_home, shared_datasets, monkeypatch):
    monkeypatch.setenv("RECFLOW_DATA_DIR", str(shared_datasets))
    result = run_pipeline("configs/ml-1m-recbole.yaml", ["models=[{name: popular}]"], root=recflow_home)
    assert result["protocol"] == "recbole"
    assert abs(result["metrics"]["popular"]["recall_at_10"] - 0.0699) <= 0.015


def test_a_one_row_dataset_fails_the_run_saying_there_is_nothing_to_evaluate(recflow_home, tmp_path):
    data = write_synthetic(tmp_path / "one-row", n_users=5, n_items=5, n_ratings=20, format="ml-25m", seed=1)
    ratings = (data / "ratings.csv").read_text().splitlines()
    (data / "ratings.csv").write_text("\n".join(ratings[:2]) + "\n")  # the header and one rating
    with pytest.raises(
        Exception,
        match=r"nothing to evaluate: the user_random split kept 1 of 1 ratings, 1 users; "
        r"the test part has 0 rows of 0 users; no rating went to the test part",
    ):
        run_pipeline(SMOKE, _dataset_overrides(data, "one-row"), root=recflow_home)
