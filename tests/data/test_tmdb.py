"""TMDB metadata joins to items through links.tmdb_id; malformed TMDB rows are rejects too."""

from __future__ import annotations

import datetime as dt

import pyarrow.parquet as pq
import pytest

from recflow.data import DatasetFormatError, ingest_dataset
from recflow.data import schema as S

HEADER = (
    "budget,genres,homepage,id,keywords,original_language,original_title,overview,popularity,"
    "production_companies,production_countries,release_date,revenue,runtime,spoken_languages,"
    "status,tagline,title,vote_average,vote_count\n"
)
PRESIDENT = (
    '62000000,"[{""id"": 35, ""name"": ""Comedy""}, {""id"": 18, ""name"": ""Drama""}]",,9087,'
    '"[{""id"": 1, ""name"": ""president""}]",en,The American President,"A widowed president, in love.",'
    "9.5,[],[],1995-11-17,107879496,114.0,[],Released,,The American President,6.5,270\n"
)
UNLINKED = "0,[],,555,[],en,Nobody,,0.1,[],[],,0,,[],Released,,Nobody Links Me,0.0,0\n"


@pytest.fixture
def tmdb_csv(tmp_path):
    def write(*rows: str):
        path = tmp_path / "tmdb_movies.csv"
        path.write_text(HEADER + "".join(rows))
        return path

    return write


def test_join_through_links(make_release, out_dir, read, tmdb_csv):
    summary = ingest_dataset(make_release("ml-latest"), out_dir, tmdb_path=tmdb_csv(UNLINKED, PRESIDENT))

    assert read(out_dir, "tmdb") == [
        {
            "item_id": 10,
            "tmdb_id": 9087,
            "tmdb_title": "The American President",
            "overview": "A widowed president, in love.",
            "keywords": ["president"],
            "genres": ["Comedy", "Drama"],
            "original_language": "en",
            "popularity": 9.5,
            "vote_average": 6.5,
            "vote_count": 270,
            "runtime": 114.0,
            "budget": 62000000,
            "revenue": 107879496,
            "release_date": dt.date(1995, 11, 17),
        }
    ]
    assert pq.read_schema(out_dir / "tmdb.parquet").remove_metadata() == S.TMDB
    assert summary["tmdb_matched"] == 1
    assert summary["files"]["tmdb"] == 1
    assert summary["rows_read_by_file"]["tmdb_movies.csv"] == 2


def test_empty_numbers_and_dates_are_null(make_release, out_dir, read, tmdb_csv):
    sparse = "0,[],,9087,[],en,Sparse,,,[],[],,,,[],Released,,Sparse,,\n"
    ingest_dataset(make_release("ml-latest"), out_dir, tmdb_path=tmdb_csv(sparse))
    row = read(out_dir, "tmdb")[0]
    assert (row["runtime"], row["release_date"], row["vote_count"], row["popularity"]) == (None, None, None, None)
    assert row["overview"] == ""


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("0,[{broken,,9087,[],en,X,,1.0,[],[],,0,,[],Released,,X,1.0,1\n", "bad_json"),
        ("0,[],,abc,[],en,X,,1.0,[],[],,0,,[],Released,,X,1.0,1\n", "non_numeric"),
        ("0,[],,9087,[],en,X,,1.0,[],[],1995-13-45,0,,[],Released,,X,1.0,1\n", "bad_date"),
        ("0,[],,555,[],en,Again,,1.0,[],[],,0,,[],Released,,Again,1.0,1\n", "duplicate_tmdb_id"),
    ],
)
def test_bad_tmdb_rows_are_rejected(make_release, out_dir, rejects_of, tmdb_csv, row, reason):
    path = tmdb_csv(UNLINKED, row)

    ingest_dataset(make_release("ml-latest"), out_dir, tmdb_path=path, max_reject_fraction=1.0)

    assert rejects_of(out_dir) == [("tmdb_movies.csv", 3, reason, row.rstrip("\n"))]


def test_release_without_links_writes_no_tmdb(make_release, out_dir, tmdb_csv):
    summary = ingest_dataset(make_release("ml-1m"), out_dir, tmdb_path=tmdb_csv(PRESIDENT))

    assert not (out_dir / "tmdb.parquet").exists()
    assert summary["tmdb_matched"] is None
    assert "no links file" in summary["notes"][0]


def test_missing_tmdb_file_fails_before_writing(make_release, out_dir, tmp_path):
    with pytest.raises(DatasetFormatError, match="tmdb.csv: TMDB file not found"):
        ingest_dataset(make_release("ml-latest"), out_dir, tmdb_path=tmp_path / "tmdb.csv")
    assert list(out_dir.iterdir()) == []


@pytest.mark.shared_data
def test_shared_tmdb_join(shared_datasets, out_dir):
    summary = ingest_dataset(shared_datasets / "ml-latest-small", out_dir, tmdb_path=shared_datasets / "tmdb" / "tmdb_5000_movies.csv")

    assert summary["tmdb_matched"] > 3000
    assert summary["rows_rejected"] == 0
    tmdb = pq.read_table(out_dir / "tmdb.parquet").to_pandas()
    toy_story = tmdb[tmdb["item_id"] == 1].iloc[0]
    assert toy_story["tmdb_id"] == 862
    assert list(toy_story["genres"]) == ["Animation", "Comedy", "Family"]
    assert tmdb["item_id"].is_unique
