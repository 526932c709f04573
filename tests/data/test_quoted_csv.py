"""RFC 4180 quoting is valid in every CSV file of the CSV releases: a file written with every field
quoted (Python's ``csv.QUOTE_ALL``) ingests to exactly the tables of the same file quoted only where
needed; a truly bad row of a quoted file is still a reject with its line and reason."""

from __future__ import annotations

import csv
import io

import pyarrow.parquet as pq
import pytest

from recflow.data import ingest_dataset

ALL = {"max_reject_fraction": 1.0}

ROWS = {
    "ratings.csv": [
        ["userId", "movieId", "rating", "timestamp"],
        ["1", "10", "4.0", "964982703"],
        ["1", "20", "3.5", "964981247"],
        ["2", "10", "0.5", "964982224"],
    ],
    "movies.csv": [
        ["movieId", "title", "genres"],
        ["10", "American President, The (1995)", "Comedy|Drama|Romance"],
        ["20", 'The "Babylon 5" Movie, Part 2 (1998)', "Sci-Fi"],
    ],
    "tags.csv": [["userId", "movieId", "tag", "timestamp"], ["1", "10", "funny, sad", "1445714994"]],
    "links.csv": [["movieId", "imdbId", "tmdbId"], ["10", "0112346", "9087"], ["20", "0105946", ""]],
}


def write(rows: list[list[str]], quoting: int) -> bytes:
    out = io.StringIO()
    csv.writer(out, quoting=quoting, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


def ingest(make_release, tmp_path, name: str, files: dict[str, bytes]):
    out = tmp_path / name
    out.mkdir()
    summary = ingest_dataset(make_release("ml-latest", replace=files), out, **ALL)
    return out, summary


def tables(out) -> dict:
    return {t: pq.read_table(out / f"{t}.parquet") for t in ("ratings", "items", "tags", "links", "rejects")}


def test_quote_all_files_ingest_to_the_same_tables_as_minimally_quoted_ones(make_release, tmp_path):
    minimal = {name: write(rows, csv.QUOTE_MINIMAL) for name, rows in ROWS.items()}
    quoted = {name: write(rows, csv.QUOTE_ALL) for name, rows in ROWS.items()}
    assert quoted["ratings.csv"].splitlines()[1] == b'"1","10","4.0","964982703"'
    assert quoted["movies.csv"].splitlines()[2] == b'"20","The ""Babylon 5"" Movie, Part 2 (1998)","Sci-Fi"'

    plain_out, _ = ingest(make_release, tmp_path, "minimal", minimal)
    quoted_out, summary = ingest(make_release, tmp_path, "quoted", quoted)

    assert summary["rows_rejected"] == 0
    for name, table in tables(quoted_out).items():
        assert table.equals(tables(plain_out)[name]), name
    assert pq.read_table(quoted_out / "items.parquet").column("title").to_pylist() == ["American President, The (1995)", 'The "Babylon 5" Movie, Part 2 (1998)']
    assert [(r["user_id"], r["item_id"], r["rating"]) for r in pq.read_table(quoted_out / "ratings.parquet").to_pylist()] == [
        (1, 10, 4.0),
        (1, 20, 3.5),
        (2, 10, 0.5),
    ]


@pytest.mark.parametrize(
    "line, reason",
    [
        ('"3","abc","4.0","964982703"', "non_numeric"),
        ('"3","10","4.0"', "missing_field"),
        ('"3","10","4.0","964982703","x"', "extra_field"),
        ('"3","10","9.0","964982703"', "rating_out_of_range"),
    ],
)
def test_a_bad_row_of_a_quoted_ratings_file_is_a_reject_with_its_line(make_release, tmp_path, line, reason):
    rows = write(ROWS["ratings.csv"], csv.QUOTE_ALL).splitlines(keepends=True)
    ratings = b"".join([*rows[:2], line.encode() + b"\n", *rows[2:]])  # the bad row is line 3

    out, summary = ingest(make_release, tmp_path, "out", {"ratings.csv": ratings})

    assert pq.read_table(out / "rejects.parquet").to_pylist() == [{"source_file": "ratings.csv", "line_number": 3, "reason": reason, "raw": line}]
    assert summary["n_ratings"] == 3
