"""The batch export (``recflow export``, the pipeline's ``export`` task) on the hand-made root of ``serving_root``."""

from __future__ import annotations

import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner

from recflow.cli.main import app
from recflow.experiments.config import ExportConfig
from recflow.experiments.serving.resolve import resolve
from recflow.retrieval.search import Retriever
from tasks.export import export_sources
from tests.api.serving_root import USER_IDS


@pytest.fixture
def home(tiny_root, monkeypatch):
    monkeypatch.setenv("RECFLOW_HOME", str(tiny_root))
    return tiny_root


def test_the_export_holds_every_warm_users_ranking_partitioned_by_user_bucket(home):
    sources, info = resolve(home, run="run-a")
    done = export_sources(sources, info, ExportConfig(k=7, partitions=4))
    folder = home / done.path / "top_k"
    assert sorted(p.name for p in folder.iterdir()) == ["bucket=0", "bucket=1", "bucket=2", "bucket=3"]
    table = ds.dataset(folder, partitioning="hive").to_table().to_pandas()
    assert list(table.columns[:4]) == ["user_id", "rank", "item_id", "score"]
    assert (table["user_id"] % 4 == table["bucket"].astype(int)).all()
    assert sorted(table["user_id"].unique()) == USER_IDS.tolist()  # the cold user has no ranking to export
    expected = Retriever.from_sources(sources, info)
    for user in (10, 200, 400):
        rows = table[table["user_id"] == user].sort_values("rank")
        assert rows["rank"].tolist() == list(range(1, 8))
        assert rows["item_id"].tolist() == expected.recommend(user, 7).item_ids.tolist()
    assert (done.meta["users"], done.meta["users_with_rows"], done.meta["rows"], done.meta["model"]) == (40, 40, 280, "ease")


def test_the_same_files_and_settings_reuse_the_export_and_other_settings_write_another(home):
    sources, info = resolve(home, run="run-a")
    first = export_sources(sources, info, ExportConfig(k=5, partitions=2))
    written = (home / first.path / "summary.json").stat().st_mtime_ns
    again = export_sources(sources, info, ExportConfig(k=5, partitions=2))
    assert again == first and (home / again.path / "summary.json").stat().st_mtime_ns == written
    assert export_sources(sources, info, ExportConfig(k=6, partitions=2)).path != first.path


def test_recflow_export_writes_the_champions_top_k(home):
    out = CliRunner().invoke(app, ["export", "-k", "3", "--partitions", "2"])
    assert out.exit_code == 0, out.output
    assert out.output.startswith("40 users x top 3 of ease (recflow-tiny@champion v1): 120 rows in ")
    assert "(hive: bucket = user_id % 2)" in out.output


def test_recflow_export_of_an_unknown_run_exits_1_naming_where_runs_are(home):
    out = CliRunner().invoke(app, ["export", "--run", "nope"])
    assert out.exit_code == 1 and "no pipeline or model run 'nope' recorded under" in out.output
