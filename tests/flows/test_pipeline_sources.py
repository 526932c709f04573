"""Every source through the whole pipeline: a log of your own gives what the MovieLens reader gives."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from flows.pipeline import run_pipeline
from recflow.data import write_synthetic

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

SMOKE = "configs/smoke.yaml"


def _overlay(tmp_path, name: str, dataset: dict) -> list[str]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"dataset": {"name": name, **dataset}}))
    return [SMOKE, str(path)]


def test_a_partitioned_parquet_log_with_other_column_names_gives_the_metrics_of_the_movielens_reader(recflow_home, tmp_path):
    release = write_synthetic(tmp_path / "release", n_users=200, n_items=150, n_ratings=6000, rank=4, format="ml-25m", seed=0)
    ratings = pd.read_csv(release / "ratings.csv").rename(columns={"userId": "uid", "movieId": "movie", "rating": "stars", "timestamp": "ts"})
    for year, part in ratings.groupby(pd.to_datetime(ratings["ts"], unit="s").dt.year):
        (tmp_path / "log" / f"year={year}").mkdir(parents=True)
        part.sample(frac=1, random_state=year).to_parquet(tmp_path / "log" / f"year={year}" / "part-0.parquet", index=False)
    movies = pd.read_csv(release / "movies.csv").rename(columns={"movieId": "movie", "title": "name", "genres": "tags"})
    movies.to_parquet(tmp_path / "movies.parquet", index=False)
    source = {
        "kind": "table",
        "path": str(tmp_path / "log"),
        "columns": {"user": "uid", "item": "movie", "timestamp": "ts", "rating": "stars"},
        "rating_scale": [0.5, 5.0],
        "items": {"path": str(tmp_path / "movies.parquet"), "columns": {"item": "movie", "title": "name", "genres": "tags"}},
    }
    movielens = run_pipeline(_overlay(tmp_path, "as-release", {"synth": None, "path": str(release)}), root=recflow_home)
    table = run_pipeline(_overlay(tmp_path, "as-table", {"synth": None, "source": source}), root=recflow_home)
    assert table["metrics"] == movielens["metrics"]
    assert set(table["metrics"]) == {"popular", "bias"}


def test_an_implicit_log_skips_the_rating_models_and_runs_the_ranking_ones(recflow_home, tmp_path, caplog):
    release = write_synthetic(tmp_path / "release", n_users=100, n_items=80, n_ratings=3000, rank=4, format="ml-25m", seed=1)
    views = pd.read_csv(release / "ratings.csv").rename(columns={"userId": "viewer", "movieId": "video"})
    views["at"] = pd.to_datetime(views.pop("timestamp"), unit="s").dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    views.drop(columns="rating").assign(viewer=lambda f: "u" + f["viewer"].astype(str)).to_csv(tmp_path / "views.csv", index=False)
    source = {"kind": "table", "path": str(tmp_path / "views.csv"), "columns": {"user": "viewer", "item": "video", "timestamp": "at"}}
    with caplog.at_level("WARNING"):
        result = run_pipeline(_overlay(tmp_path, "views", {"synth": None, "source": source}), root=recflow_home)
    assert set(result["metrics"]) == {"popular"}
    assert "skipping bias: it predicts ratings, and dataset 'views' has no rating column (implicit feedback)" in caplog.text


def test_a_second_night_reads_only_its_new_partition_and_states_a_late_correction(recflow_home, tmp_path):
    release = write_synthetic(tmp_path / "release", n_users=100, n_items=80, n_ratings=3000, rank=4, format="ml-25m", seed=2)
    ratings = pd.read_csv(release / "ratings.csv")
    year = pd.to_datetime(ratings["timestamp"], unit="s").dt.year
    cut = int(year.quantile(0.5))

    def write(name: str, rows: pd.DataFrame) -> None:
        (tmp_path / "log" / name).mkdir(parents=True, exist_ok=True)
        rows.to_parquet(tmp_path / "log" / name / "part-0.parquet", index=False)

    write("half=1", ratings[year < cut])
    write("half=2", ratings[year == cut])
    source = {"kind": "table", "path": str(tmp_path / "log"), "columns": {"user": "userId", "item": "movieId", "timestamp": "timestamp", "rating": "rating"}}
    config = _overlay(tmp_path, "nights", {"synth": None, "source": source})
    first = run_pipeline(config, root=recflow_home)
    write("half=3", ratings[year > cut])  # the next night
    write("half=1", ratings[year < cut].iloc[:-1])  # and a late correction: one interaction withdrawn
    second = run_pipeline(config, root=recflow_home)
    assert (first["ingest"]["partitions"]["read"], second["ingest"]["partitions"]["read"], second["ingest"]["partitions"]["reused"]) == (2, 2, 1)
    assert (second["ingest"]["partitions"]["new"], second["ingest"]["partitions"]["changed"]) == (1, 1)
    [note] = [n for n in second["ingest"]["notes"] if n.startswith("late correction")]
    assert note.startswith("late correction: half=1/part-0.parquet changed since the last ingest (") and "-1); it was read again" in note
