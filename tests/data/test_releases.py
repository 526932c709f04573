"""Every MovieLens release format reads into the same typed tables, from a folder or a zip."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from recflow.data import ingest_dataset, raw_files
from recflow.data import schema as S

LAYOUTS = [
    pytest.param({"zip": False}, id="dir"),
    pytest.param({"zip": False, "top": "release"}, id="dir-with-top-folder"),
    pytest.param({"zip": True}, id="zip"),
    pytest.param({"zip": True, "top": "release"}, id="zip-with-top-folder"),
]


def _assert_schemas(out: Path, tables: list[str]) -> None:
    for name in tables:
        assert pq.read_schema(out / f"{name}.parquet").remove_metadata() == S.SCHEMAS[name], name


@pytest.mark.parametrize("layout", LAYOUTS)
def test_ml100k(make_release, out_dir, read, layout):
    summary = ingest_dataset(make_release("ml-100k", **layout), out_dir)

    assert read(out_dir, "ratings") == [
        {"user_id": 1, "item_id": 10, "rating": 4.0, "timestamp": 881250949},
        {"user_id": 1, "item_id": 20, "rating": 3.0, "timestamp": 881250950},
        {"user_id": 2, "item_id": 10, "rating": 5.0, "timestamp": 881250951},
    ]
    assert read(out_dir, "items") == [
        {"item_id": 10, "title": "Misérables, Les (1995)", "year": 1995, "genres": ["Drama", "Musical"]},
        {"item_id": 20, "title": "unknown", "year": None, "genres": []},  # the "unknown" flag is no genre
    ]
    assert read(out_dir, "users") == [
        {"user_id": 1, "gender": "M", "age": 24, "occupation": "technician", "zip_code": "85711"},
        {"user_id": 2, "gender": "F", "age": 53, "occupation": "other", "zip_code": "94043"},
    ]
    _assert_schemas(out_dir, ["ratings", "items", "users", "rejects"])
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "items.parquet", "ratings.parquet", "rejects.parquet", "users.parquet",
    ]  # fmt: skip
    assert summary["release"] == "ml-100k"
    assert summary["rating_scale"] == [1.0, 5.0]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_ml1m(make_release, out_dir, read, layout):
    summary = ingest_dataset(make_release("ml-1m", **layout), out_dir)

    assert read(out_dir, "ratings") == [
        {"user_id": 1, "item_id": 10, "rating": 4.0, "timestamp": 978300760},
        {"user_id": 1, "item_id": 20, "rating": 3.0, "timestamp": 978302109},
        {"user_id": 2, "item_id": 10, "rating": 5.0, "timestamp": 978301968},
    ]
    assert read(out_dir, "items") == [
        {"item_id": 10, "title": "Misérables, Les (1995)", "year": 1995, "genres": ["Drama", "Musical"]},
        {"item_id": 20, "title": "Heat (1995)", "year": 1995, "genres": ["Action", "Crime", "Thriller"]},
    ]
    assert read(out_dir, "users") == [  # ml-1m occupation codes kept as text, age is the bucket code
        {"user_id": 1, "gender": "F", "age": 1, "occupation": "10", "zip_code": "48067"},
        {"user_id": 2, "gender": "M", "age": 56, "occupation": "16", "zip_code": "70072"},
    ]
    _assert_schemas(out_dir, ["ratings", "items", "users", "rejects"])
    assert summary["release"] == "ml-1m"
    assert summary["rating_scale"] == [1.0, 5.0]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_ml10m(make_release, out_dir, read, layout):
    summary = ingest_dataset(make_release("ml-10m", **layout), out_dir)

    assert read(out_dir, "ratings") == [
        {"user_id": 1, "item_id": 10, "rating": 4.5, "timestamp": 978300760},
        {"user_id": 1, "item_id": 20, "rating": 0.5, "timestamp": 978302109},
        {"user_id": 2, "item_id": 10, "rating": 5.0, "timestamp": 978301968},
    ]
    assert read(out_dir, "items") == [
        {"item_id": 10, "title": "Amélie (2001)", "year": 2001, "genres": ["Comedy", "Romance"]},
        {"item_id": 20, "title": "Nothing Here (2009)", "year": 2009, "genres": []},
    ]
    assert read(out_dir, "tags") == [
        {"user_id": 1, "item_id": 10, "tag": "whimsical", "timestamp": 1138537770},
        {"user_id": 2, "item_id": 20, "tag": "dull", "timestamp": 1138537771},
    ]
    assert not (out_dir / "users.parquet").exists()
    _assert_schemas(out_dir, ["ratings", "items", "tags", "rejects"])
    assert summary["release"] == "ml-10m"
    assert summary["rating_scale"] == [0.5, 5.0]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_csv_family(make_release, out_dir, read, layout):
    summary = ingest_dataset(make_release("ml-latest", **layout), out_dir)

    assert read(out_dir, "ratings") == [
        {"user_id": 1, "item_id": 10, "rating": 4.0, "timestamp": 964982703},
        {"user_id": 1, "item_id": 20, "rating": 3.5, "timestamp": 964981247},
        {"user_id": 2, "item_id": 10, "rating": 0.5, "timestamp": 964982224},
    ]
    assert read(out_dir, "items") == [
        {
            "item_id": 10,
            "title": "American President, The (1995)",
            "year": 1995,
            "genres": ["Comedy", "Drama", "Romance"],
        },
        {"item_id": 20, "title": "Babylon 5", "year": None, "genres": []},
    ]
    assert read(out_dir, "tags") == [
        {"user_id": 1, "item_id": 10, "tag": "funny, sad", "timestamp": 1445714994},
        {"user_id": 2, "item_id": 20, "tag": "two\nlines", "timestamp": 1445714996},
    ]
    assert read(out_dir, "links") == [
        {"item_id": 10, "imdb_id": 112346, "tmdb_id": 9087},
        {"item_id": 20, "imdb_id": 105946, "tmdb_id": None},
    ]
    _assert_schemas(out_dir, ["ratings", "items", "tags", "links", "rejects"])
    assert summary["release"] == "ml-latest"


def test_csv_with_crlf_line_endings(make_release, out_dir, read, release_bytes):
    crlf = {k: v.replace(b"\n", b"\r\n") for k, v in release_bytes["ml-latest"].items()}
    ingest_dataset(make_release("ml-latest", replace=crlf), out_dir)

    assert [r["rating"] for r in read(out_dir, "ratings")] == [4.0, 3.5, 0.5]
    assert [r["title"] for r in read(out_dir, "items")] == ["American President, The (1995)", "Babylon 5"]
    assert [r["genres"] for r in read(out_dir, "items")] == [["Comedy", "Drama", "Romance"], []]
    assert [r["tag"] for r in read(out_dir, "tags")] == ["funny, sad", "two\r\nlines"]  # quoted text kept as is
    assert [r["tmdb_id"] for r in read(out_dir, "links")] == [9087, None]


def test_summary(make_release, out_dir):
    summary = ingest_dataset(make_release("ml-latest"), out_dir)

    assert summary == {
        "release": "ml-latest",
        "rows_read": 3 + 2 + 2 + 2,
        "rows_rejected": 0,
        "reject_reasons": {},
        "rows_read_by_file": {"links.csv": 2, "movies.csv": 2, "ratings.csv": 3, "tags.csv": 2},
        "rows_rejected_by_file": {},
        "n_ratings": 3,
        "n_users": 2,
        "n_items": 2,
        "rating_scale": [0.5, 5.0],
        "files": {"items": 2, "links": 2, "ratings": 3, "rejects": 0, "tags": 2},
        "tmdb_matched": None,
    }


@pytest.mark.parametrize(
    ("title", "year"),
    [
        ("Toy Story (1995)", 1995),
        ("Toy Story (1995)   ", 1995),  # trailing spaces stripped first
        ("Babylon 5", None),
        ("Death Note: Desu nôto (2006–2007)", 2006),  # a range: its first year
        ("1984 (1984)", 1984),
        ("Movie (1995) Extended", None),  # the year must end the title
        ("(500) Days of Summer (2009)", 2009),
    ],
)
def test_year_from_title(make_release, out_dir, read, title, year):
    movies = f'movieId,title,genres\n10,"{title}",Drama\n20,Other (2000),Drama\n'.encode()
    ingest_dataset(make_release("ml-latest", replace={"movies.csv": movies}), out_dir)

    item = read(out_dir, "items")[0]
    assert item["title"] == title.rstrip()
    assert item["year"] == year


def test_latin1_and_utf8_dat_titles_round_trip(make_release, out_dir, read, tmp_path):
    ingest_dataset(make_release("ml-1m"), out_dir)  # movies.dat in Latin-1
    assert read(out_dir, "items")[0]["title"] == "Misérables, Les (1995)"

    out2 = tmp_path / "out2"
    out2.mkdir()
    utf8 = "10::Misérables, Les (1995)::Drama\n20::Heat (1995)::Action\n".encode()
    ingest_dataset(make_release("ml-1m", replace={"movies.dat": utf8}), out2)
    assert read(out2, "items")[0]["title"] == "Misérables, Les (1995)"


def test_dat_free_text_may_contain_the_separator(make_release, out_dir, read):
    movies = b"10::Odd::Title (1995)::Drama\n20::Heat (1995)::Action\n"
    tags = b"1::10::a::b::1138537770\n2::20::dull::1138537771\n"

    ingest_dataset(make_release("ml-10m", replace={"movies.dat": movies, "tags.dat": tags}), out_dir)

    assert [(i["item_id"], i["title"], i["year"]) for i in read(out_dir, "items")] == [
        (10, "Odd::Title (1995)", 1995), (20, "Heat (1995)", 1995),
    ]  # fmt: skip
    assert [(t["item_id"], t["tag"]) for t in read(out_dir, "tags")] == [(10, "a::b"), (20, "dull")]


def test_raw_files_of_a_folder_are_the_release_data_files(make_release):
    src = make_release("ml-latest", top="ml-latest-small")
    (src / "ml-latest-small" / "README.txt").write_text("not data")

    names = sorted(p.name for p in raw_files(src))

    assert names == ["links.csv", "movies.csv", "ratings.csv", "tags.csv"]
    assert all(p.is_file() for p in raw_files(src))


def test_raw_files_of_a_zip_is_the_zip(make_release):
    src = make_release("ml-1m", zip=True, top="ml-1m")
    assert raw_files(src) == [src]


# ----------------------------------------------------------------------------- shared data


@pytest.mark.shared_data
def test_shared_ml1m(shared_datasets, out_dir):
    summary = ingest_dataset(shared_datasets / "ml-1m", out_dir)

    assert summary["n_ratings"] == 1_000_209
    assert summary["n_users"] == 6_040
    assert summary["n_items"] == 3_706  # rated items
    assert summary["files"]["items"] == 3_883
    assert summary["files"]["users"] == 6_040
    assert summary["rows_rejected"] == 0
    assert summary["release"] == "ml-1m"
    ratings = pq.read_table(out_dir / "ratings.parquet")
    assert ratings.slice(0, 1).to_pylist() == [{"user_id": 1, "item_id": 1193, "rating": 5.0, "timestamp": 978300760}]
    assert pq.read_table(out_dir / "rejects.parquet").num_rows == 0


@pytest.mark.shared_data
def test_shared_ml_latest_small(shared_datasets, out_dir):
    summary = ingest_dataset(shared_datasets / "ml-latest-small", out_dir)

    assert summary["n_ratings"] == 100_836
    assert summary["n_users"] == 610
    assert summary["n_items"] == 9_724
    assert summary["files"]["items"] == 9_742
    assert summary["files"]["tags"] == 3_683
    assert summary["files"]["links"] == 9_742
    assert summary["rows_rejected"] == 0


def test_bundled_ml_latest_small(out_dir):
    from recflow.data.locate import BUNDLED_DIR

    summary = ingest_dataset(BUNDLED_DIR / "ml-latest-small", out_dir)

    assert (summary["n_ratings"], summary["n_users"], summary["n_items"]) == (100_836, 610, 9_724)
    assert summary["files"]["items"] == 9_742
    assert summary["rows_rejected"] == 0
