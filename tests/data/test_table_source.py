"""The table source: your own interaction log (Parquet / CSV, Hive partitions) -> the canonical tables."""

from __future__ import annotations

import gzip
import json
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from recflow.data import DatasetFormatError, TooManyRejectsError, ingest_dataset, write_synthetic
from recflow.data.config import DatasetConfig
from recflow.data.sources import TableSource
from recflow.data.table import ingest_table

EVENTS = pd.DataFrame(
    {
        "uid": ["bob", "alice", "bob", "carol", "alice"],
        "movie": ["m2", "m1", "m1", "m2", "m3"],
        "ts": [1_000, 2_000, 3_000, 3_000, 5_000],
        "stars": [4.0, 3.5, 5.0, 2.0, 1.0],
    }
)
COLUMNS = {"user": "uid", "item": "movie", "timestamp": "ts", "rating": "stars"}


def _spec(path, **kw) -> TableSource:
    return TableSource(path=str(path), columns=kw.pop("columns", COLUMNS), **kw)


def _write_days(folder, frame: pd.DataFrame, day_of=lambda ts: f"day={ts // 2000}") -> None:
    for day, part in frame.groupby(frame["ts"].map(day_of)):
        (folder / day).mkdir(parents=True, exist_ok=True)
        part.to_parquet(folder / day / "part-0.parquet", index=False)


def _ingest(spec, tmp_path, name="out", **kw) -> tuple[dict, pd.DataFrame]:
    out = tmp_path / name
    out.mkdir()
    summary = ingest_table(spec, out, tmp_path / "cache", **kw)
    return summary, pd.read_parquet(out / "ratings.parquet")


def test_a_parquet_log_with_other_column_names_gives_the_tables_of_the_movielens_reader(tmp_path):
    release = write_synthetic(tmp_path / "ml", n_users=30, n_items=20, n_ratings=300, format="ml-25m", seed=3)
    (tmp_path / "ml-out").mkdir()
    ingest_dataset(release, tmp_path / "ml-out")
    ratings = pd.read_csv(release / "ratings.csv").rename(columns={"userId": "uid", "movieId": "movie", "rating": "stars", "timestamp": "ts"})
    ratings.sample(frac=1, random_state=0).to_parquet(tmp_path / "log.parquet", index=False)  # another row order
    movies = pd.read_csv(release / "movies.csv").rename(columns={"movieId": "movie", "title": "name", "genres": "tags"})
    movies.to_parquet(tmp_path / "movies.parquet", index=False)
    items = {"path": str(tmp_path / "movies.parquet"), "columns": {"item": "movie", "title": "name", "genres": "tags"}}
    summary, _ = _ingest(_spec(tmp_path / "log.parquet", rating_scale=(0.5, 5), items=items), tmp_path)
    for table in ("ratings", "items"):
        ours = pq.read_table(tmp_path / "out" / f"{table}.parquet").to_pandas()
        theirs = pq.read_table(tmp_path / "ml-out" / f"{table}.parquet").to_pandas()
        key = ["user_id", "item_id"] if table == "ratings" else ["item_id"]
        ours, theirs = (f.sort_values(key).reset_index(drop=True) for f in (ours, theirs))
        if table == "items":
            ours, theirs = (f.assign(genres=f["genres"].map(list)) for f in (ours, theirs))
        pd.testing.assert_frame_equal(ours, theirs)
    assert summary["ids"] == {"user": "int", "item": "int"} and summary["feedback"] == "explicit"


def test_row_order_and_partitioning_do_not_change_the_tables(tmp_path):
    EVENTS.to_csv(tmp_path / "one.csv", index=False)
    _write_days(tmp_path / "days", EVENTS.iloc[::-1])
    _, one = _ingest(_spec(tmp_path / "one.csv"), tmp_path, "a")
    _, days = _ingest(_spec(tmp_path / "days"), tmp_path, "b")
    summary, globbed = _ingest(_spec(f"{tmp_path}/days/day=*/*.parquet"), tmp_path, "c")
    pd.testing.assert_frame_equal(one, days)
    pd.testing.assert_frame_equal(one, globbed)
    assert sorted(summary["rows_read_by_file"]) == ["day=0/part-0.parquet", "day=1/part-0.parquet", "day=2/part-0.parquet"]
    for name in ("ratings", "items", "user_ids", "item_ids"):
        assert pq.read_table(tmp_path / "a" / f"{name}.parquet").equals(pq.read_table(tmp_path / "b" / f"{name}.parquet")), name


def test_string_ids_get_dense_ids_in_order_of_first_interaction_and_the_mapping_is_kept(tmp_path):
    EVENTS.to_parquet(tmp_path / "log.parquet", index=False)
    summary, ratings = _ingest(_spec(tmp_path / "log.parquet"), tmp_path)
    users = pd.read_parquet(tmp_path / "out" / "user_ids.parquet")
    assert users.to_dict("list") == {"id": [1, 2, 3], "raw": ["bob", "alice", "carol"]}
    assert pd.read_parquet(tmp_path / "out" / "item_ids.parquet")["raw"].tolist() == ["m2", "m1", "m3"]
    # sorted by (timestamp, user_id, item_id): carol (3) and bob (1) both at 3000
    assert ratings.to_dict("list") == {
        "user_id": [1, 2, 1, 3, 2],
        "item_id": [1, 2, 2, 1, 3],
        "rating": [4.0, 3.5, 5.0, 2.0, 1.0],
        "timestamp": [1000, 2000, 3000, 3000, 5000],
    }
    assert summary["ids"] == {"user": "mapped", "item": "mapped"}
    assert pd.read_parquet(tmp_path / "out" / "items.parquet")["title"].tolist() == ["m2", "m1", "m3"]


@pytest.mark.parametrize(
    ("values", "unit", "stated", "seconds"),
    [
        ([1_700_000_000_000, 1_700_000_001_999], "auto", "epoch milliseconds (detected)", [1_700_000_000, 1_700_000_001]),
        ([1_700_000_000, 1_700_000_001], "auto", "epoch seconds (detected)", [1_700_000_000, 1_700_000_001]),
        (["2026-12-01T00:00:00Z", "2026-12-01 00:00:01"], "auto", "ISO-8601 text (UTC where no zone is given) (detected)", [1_796_083_200, 1_796_083_201]),
        ([1_000, 2_000], "ms", "epoch milliseconds (declared)", [1, 2]),
    ],
)
def test_timestamps_are_read_as_epoch_or_iso_and_the_summary_says_how(tmp_path, values, unit, stated, seconds):
    pd.DataFrame({"uid": [1, 2], "movie": [1, 1], "ts": values, "stars": [1.0, 2.0]}).to_parquet(tmp_path / "t.parquet", index=False)
    summary, ratings = _ingest(_spec(tmp_path / "t.parquet", timestamp_unit=unit), tmp_path)
    assert summary["timestamp"] == f"column 'ts' read as {stated}"
    assert ratings["timestamp"].tolist() == seconds


def test_a_mapping_naming_a_missing_column_names_the_file_and_its_columns(tmp_path):
    _write_days(tmp_path / "days", EVENTS)
    expected = r"day=0/part-0.parquet: mapped column\(s\) \['score'\] not in the file; its columns are \['uid', 'movie', 'ts', 'stars'\]"
    with pytest.raises(DatasetFormatError, match=expected):
        _ingest(_spec(tmp_path / "days", columns={**COLUMNS, "rating": "score"}), tmp_path)


def test_a_partition_with_another_schema_is_an_error_naming_both(tmp_path):
    _write_days(tmp_path / "days", EVENTS)
    other = EVENTS.iloc[:1].assign(ts=["2026-12-01"], uid=["bob"])
    (tmp_path / "days" / "day=9").mkdir()
    other.to_parquet(tmp_path / "days" / "day=9" / "part-0.parquet", index=False)
    with pytest.raises(DatasetFormatError, match=r"day=9/part-0.parquet: timestamp column read as iso but as epoch_s in day=0/part-0.parquet"):
        _ingest(_spec(tmp_path / "days"), tmp_path)


def test_bad_rows_are_rejects_naming_partition_and_row_and_the_budget_holds(tmp_path):
    bad = pd.DataFrame(
        {"uid": ["a", "", "c", "d"], "movie": ["x", "y", "y", "x"], "ts": ["1000", "2000", "yesterday", "4000"], "stars": ["4", "3", "2", "lots"]}
    )
    (tmp_path / "days" / "date=2026-12-01").mkdir(parents=True)
    bad.to_csv(tmp_path / "days" / "date=2026-12-01" / "part-0.csv", index=False)
    with pytest.raises(TooManyRejectsError, match=r"3 of 4 rows rejected"):
        _ingest(_spec(tmp_path / "days"), tmp_path)
    rejects = pd.read_parquet(tmp_path / "out" / "rejects.parquet")
    assert rejects[["source_file", "line_number", "reason"]].to_dict("list") == {
        "source_file": ["date=2026-12-01/part-0.csv"] * 3,
        "line_number": [3, 4, 5],
        "reason": ["missing_field", "bad_timestamp", "non_numeric"],
    }
    assert json.loads(rejects["raw"][1]) == {"uid": "c", "movie": "y", "ts": "yesterday", "stars": "2"}


def test_gzip_csv_reads_like_parquet(tmp_path):
    with gzip.open(tmp_path / "log.csv.gz", "wt") as fh:
        EVENTS.to_csv(fh, index=False)
    EVENTS.to_parquet(tmp_path / "log.parquet", index=False)
    pd.testing.assert_frame_equal(_ingest(_spec(tmp_path / "log.csv.gz"), tmp_path, "a")[1], _ingest(_spec(tmp_path / "log.parquet"), tmp_path, "b")[1])


def test_without_a_rating_every_interaction_is_a_positive_and_repeats_collapse_to_the_first(tmp_path):
    views = pd.DataFrame({"uid": [1, 1, 2], "movie": [7, 7, 7], "ts": [10, 20, 30]})
    views.to_parquet(tmp_path / "views.parquet", index=False)
    spec = _spec(tmp_path / "views.parquet", columns={"user": "uid", "item": "movie", "timestamp": "ts"})
    summary, ratings = _ingest(spec, tmp_path)
    assert ratings.to_dict("list") == {"user_id": [1, 2], "item_id": [7, 7], "rating": [1.0, 1.0], "timestamp": [10, 30]}
    assert (summary["feedback"], summary["duplicates"], summary["duplicates_collapsed"], summary["rows_rejected"]) == ("implicit", "first", 1, 0)
    assert summary["rating_scale"] is None
    assert any("models that predict ratings are skipped" in n for n in summary["notes"])


def test_a_repeated_rating_is_a_reject_keeping_the_earliest(tmp_path):
    EVENTS.assign(uid=["bob", "bob", "bob", "carol", "bob"], movie=["m1", "m1", "m2", "m2", "m3"]).to_parquet(tmp_path / "r.parquet", index=False)
    summary, ratings = _ingest(_spec(tmp_path / "r.parquet"), tmp_path, max_reject_fraction=0.5)
    assert summary["reject_reasons"] == {"duplicate_user_item": 1}
    assert ratings["timestamp"].tolist() == [1000, 3000, 3000, 5000]


def test_only_new_partitions_are_read_and_a_late_correction_is_stated(tmp_path):
    _write_days(tmp_path / "days", EVENTS.iloc[:4])  # day=0, day=1
    first, _ = _ingest(_spec(tmp_path / "days"), tmp_path, "n1")
    _write_days(tmp_path / "days", EVENTS.iloc[4:])  # day=2 arrives
    second, ratings = _ingest(_spec(tmp_path / "days"), tmp_path, "n2")
    assert (first["partitions"]["read"], second["partitions"]["read"], second["partitions"]["reused"]) == (2, 1, 2)
    assert second["partitions"]["combine"] == "append"
    assert second["partitions"]["new_partitions"] == ["day=2/part-0.parquet"]
    assert len(ratings) == 5
    corrected = EVENTS.iloc[:1].assign(stars=[1.0])  # day=0 rewritten: bob's m2 corrected
    stat = os.stat(tmp_path / "days" / "day=0" / "part-0.parquet")
    corrected.to_parquet(tmp_path / "days" / "day=0" / "part-0.parquet", index=False)
    os.utime(tmp_path / "days" / "day=0" / "part-0.parquet", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    third, ratings = _ingest(_spec(tmp_path / "days"), tmp_path, "n3")
    assert (third["partitions"]["read"], third["partitions"]["changed"], third["partitions"]["combine"]) == (1, 1, "full")
    changed = {"partition": "day=0/part-0.parquet", "rows_before": 1, "rows_after": 1, "kept_before": 1, "kept_after": 1}
    assert third["partitions"]["changed_partitions"] == [changed]
    assert any(n.startswith("late correction: day=0/part-0.parquet changed since the last ingest") for n in third["notes"])
    assert ratings["rating"].tolist()[0] == 1.0


def test_an_items_table_rejects_interactions_with_unknown_items(tmp_path):
    EVENTS.to_parquet(tmp_path / "log.parquet", index=False)
    pd.DataFrame({"movie": ["m1", "m2", "m9"], "name": ["One (1999)", "Two", None], "tags": [["Drama"], [], None]}).to_parquet(tmp_path / "items.parquet")
    items = {"path": str(tmp_path / "items.parquet"), "columns": {"item": "movie", "title": "name", "genres": "tags"}}
    summary, ratings = _ingest(_spec(tmp_path / "log.parquet", items=items), tmp_path, max_reject_fraction=0.5)
    assert summary["reject_reasons"] == {"unknown_item": 1}  # alice's m3
    catalogue = pd.read_parquet(tmp_path / "out" / "items.parquet")
    assert catalogue[["item_id", "title"]].to_dict("list") == {"item_id": [1, 2, 3], "title": ["Two", "One (1999)", "m9"]}
    assert catalogue["year"].isna().tolist() == [True, False, True] and catalogue["year"][1] == 1999
    assert catalogue["genres"].map(list).tolist() == [[], ["Drama"], []]
    assert pd.read_parquet(tmp_path / "out" / "item_ids.parquet")["raw"].tolist() == ["m2", "m1", "m9"]


def test_a_table_source_is_configured_in_one_form_and_unknown_keys_are_errors():
    columns = {"user": "u", "item": "i", "timestamp": "t"}
    cfg = DatasetConfig.model_validate({"name": "ev", "source": {"kind": "table", "path": "s3://b/ev/", "columns": columns}})
    assert cfg.implicit
    release = DatasetConfig.model_validate({"name": "ml-1m", "source": {"kind": "movielens", "path": "/data/ml-1m.zip"}})
    assert (str(release.release_path), release.implicit) == ("/data/ml-1m.zip", False)
    with pytest.raises(ValidationError, match="colour"):
        DatasetConfig.model_validate({"source": {"kind": "table", "path": "x", "colour": 1, "columns": {"user": "u", "item": "i", "timestamp": "t"}}})
    with pytest.raises(ValidationError, match="exactly one of table or query"):
        DatasetConfig.model_validate({"source": {"kind": "sql", "url": "sqlite://", "columns": {"user": "u", "item": "i", "timestamp": "t"}}})
    with pytest.raises(ValidationError, match="dataset.path is for MovieLens releases"):
        DatasetConfig.model_validate({"path": "x", "source": {"kind": "table", "path": "y", "columns": {"user": "u", "item": "i", "timestamp": "t"}}})


def test_a_folder_holding_another_kind_of_file_is_an_error_not_a_skip(tmp_path):
    EVENTS.to_parquet(tmp_path / "log.parquet", index=False)
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "_SUCCESS").write_text("")
    with pytest.raises(DatasetFormatError, match="notes.txt is neither Parquet"):
        _ingest(_spec(tmp_path), tmp_path)


def test_arrow_timestamps_and_dictionary_ids_are_read(tmp_path):
    table = pa.table(
        {
            "uid": pa.array(["a", "b"]).dictionary_encode(),
            "movie": pa.array([3, 4], pa.int32()),
            "ts": pa.array([1_000_000, 2_000_000], pa.timestamp("ms", tz="UTC")),
            "stars": pa.array([1, 2], pa.int8()),
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    summary, ratings = _ingest(_spec(tmp_path / "t.parquet"), tmp_path)
    assert ratings.to_dict("list") == {"user_id": [1, 2], "item_id": [3, 4], "rating": [1.0, 2.0], "timestamp": [1000, 2000]}
    assert summary["timestamp"] == "column 'ts' read as timestamps (detected)"


def _night_log(tmp_path, nights: int) -> list[pd.DataFrame]:
    """Days of string-id events with repeats within and across days, a bad row, a new user and item per day."""
    rng = np.random.default_rng(0)
    days = []
    for d in range(nights):
        n = 40
        days.append(
            pd.DataFrame(
                {
                    "uid": [f"u{x}" for x in rng.integers(0, 6 + d, n)],
                    "movie": [f"m{x}" for x in rng.integers(0, 5 + d, n)],
                    "ts": (d * 100 + np.sort(rng.integers(0, 100, n))).astype(str),
                    "stars": rng.integers(1, 6, n).astype(float),
                }
            )
        )
    days[1].loc[3, "ts"] = "never"
    return days


@pytest.mark.parametrize("duplicates", ["reject", "first"])
def test_appending_nights_gives_the_tables_of_one_ingest_of_them_all(tmp_path, duplicates):
    days = _night_log(tmp_path, 4)
    spec = _spec(tmp_path / "log", duplicates=duplicates)
    for d, day in enumerate(days):
        (tmp_path / "log" / f"day={d}").mkdir(parents=True)
        day.to_csv(tmp_path / "log" / f"day={d}" / "part-0.csv", index=False)
        (tmp_path / f"night-{d}").mkdir()
        summary = ingest_table(spec, tmp_path / f"night-{d}", tmp_path / "cache", max_reject_fraction=1)
        assert (summary["partitions"]["read"], summary["partitions"]["combine"]) == (1, "append" if d else "full")
    (tmp_path / "cold").mkdir()
    cold = ingest_table(spec, tmp_path / "cold", tmp_path / "cold-cache", max_reject_fraction=1)
    for name in ("ratings", "items", "rejects", "user_ids", "item_ids"):
        assert pq.read_table(tmp_path / "night-3" / f"{name}.parquet").equals(pq.read_table(tmp_path / "cold" / f"{name}.parquet")), name
    drop = ("partitions", "notes")
    assert {k: v for k, v in summary.items() if k not in drop} == {k: v for k, v in cold.items() if k not in drop}
    assert summary["n_users"] == 9 and summary["rows_rejected"] >= 1


def test_a_new_partition_with_earlier_events_is_combined_in_full_and_gives_the_same_tables(tmp_path):
    _write_days(tmp_path / "days", EVENTS.iloc[2:])
    (tmp_path / "n1").mkdir()
    ingest_table(_spec(tmp_path / "days"), tmp_path / "n1", tmp_path / "cache")
    (tmp_path / "days" / "late").mkdir()
    EVENTS.iloc[:2].to_parquet(tmp_path / "days" / "late" / "part-0.parquet", index=False)  # arrives later, happened earlier
    second, ratings = _ingest(_spec(tmp_path / "days"), tmp_path, "n2")
    assert (second["partitions"]["read"], second["partitions"]["combine"]) == (1, "full")
    assert pd.read_parquet(tmp_path / "n2" / "user_ids.parquet")["raw"].tolist() == ["bob", "alice", "carol"]
    assert ratings["timestamp"].tolist() == [1000, 2000, 3000, 3000, 5000]


def test_the_piece_cache_holds_one_piece_per_current_partition(tmp_path):
    _write_days(tmp_path / "days", EVENTS)
    _ingest(_spec(tmp_path / "days"), tmp_path, "n1")
    EVENTS.iloc[:1].assign(stars=[2.0]).to_parquet(tmp_path / "days" / "day=0" / "part-0.parquet", index=False)
    _ingest(_spec(tmp_path / "days"), tmp_path, "n2")
    assert len(list((tmp_path / "cache" / "pieces").glob("*.rejects.parquet"))) == 3


def test_appending_nights_with_an_items_table_gives_the_tables_of_one_ingest_of_them_all(tmp_path):
    days = [d.assign(movie=d["movie"].str[1:].astype(int)) for d in _night_log(tmp_path, 3)]
    pd.DataFrame({"movie": list(range(6)), "name": [f"Film {k} (199{k})" for k in range(6)]}).to_parquet(tmp_path / "items.parquet")  # no item 6
    spec = _spec(tmp_path / "log", items={"path": str(tmp_path / "items.parquet"), "columns": {"item": "movie", "title": "name"}})
    for d, day in enumerate(days):
        (tmp_path / "log" / f"day={d}").mkdir(parents=True)
        day.to_csv(tmp_path / "log" / f"day={d}" / "part-0.csv", index=False)
        (tmp_path / f"night-{d}").mkdir()
        summary = ingest_table(spec, tmp_path / f"night-{d}", tmp_path / "cache", max_reject_fraction=1)
        assert summary["partitions"]["combine"] == ("append" if d else "full")
    (tmp_path / "cold").mkdir()
    ingest_table(spec, tmp_path / "cold", tmp_path / "cold-cache", max_reject_fraction=1)
    for name in ("ratings", "items", "rejects", "user_ids"):
        assert pq.read_table(tmp_path / "night-2" / f"{name}.parquet").equals(pq.read_table(tmp_path / "cold" / f"{name}.parquet")), name
    assert summary["reject_reasons"]["unknown_item"] >= 1


def test_ratings_are_pieces_cut_by_row_number_so_nights_and_one_ingest_write_the_same_files(tmp_path, monkeypatch):
    monkeypatch.setattr("recflow.data.table.RATINGS_PIECE_ROWS", 16)
    days = _night_log(tmp_path, 4)
    spec = _spec(tmp_path / "log", duplicates="first")
    for d, day in enumerate(days):
        (tmp_path / "log" / f"day={d}").mkdir(parents=True)
        day.to_csv(tmp_path / "log" / f"day={d}" / "part-0.csv", index=False)
        (tmp_path / f"night-{d}").mkdir()
        summary = ingest_table(spec, tmp_path / f"night-{d}", tmp_path / "cache", max_reject_fraction=1)
    (tmp_path / "cold").mkdir()
    ingest_table(spec, tmp_path / "cold", tmp_path / "cold-cache", max_reject_fraction=1)
    night, cold = tmp_path / "night-3" / "ratings.parquet", tmp_path / "cold" / "ratings.parquet"
    names = sorted(p.name for p in cold.iterdir())
    assert names == [f"part-{k:05d}.parquet" for k in range(-(-summary["n_ratings"] // 16))] == sorted(p.name for p in night.iterdir())
    assert [(night / n).read_bytes() for n in names] == [(cold / n).read_bytes() for n in names]
    assert [pq.read_metadata(cold / n).num_rows for n in names[:-1]] == [16] * (len(names) - 1)
    assert os.stat(night / names[0]).st_ino == os.stat(tmp_path / "night-2" / "ratings.parquet" / names[0]).st_ino  # a full piece is linked, not written
    ratings = pd.read_parquet(night)
    assert len(ratings) == summary["n_ratings"] and list(ratings.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert ratings.equals(ratings.sort_values(["timestamp", "user_id", "item_id"], kind="stable").reset_index(drop=True))
