"""Nothing disappears silently: each malformed row becomes exactly one reject; broken files fail at once."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from recflow.data import DatasetFormatError, TooManyRejectsError, ingest_dataset

ALL = {"max_reject_fraction": 1.0}  # these tests look at the rejects, not at the threshold


def _insert(data: bytes, line: str, at: int) -> bytes:
    """``data`` with ``line`` inserted so that it becomes physical line ``at`` (1-based)."""
    lines = data.split(b"\n")
    lines.insert(at - 1, line.encode())
    return b"\n".join(lines)


GOOD_CSV_RATINGS = [(1, 10, 4.0), (1, 20, 3.5), (2, 10, 0.5)]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("1,abc,4.0,964982703", "non_numeric"),
        ("3,10,four,964982703", "non_numeric"),
        ("3,10,4.0,9649827.5", "not_an_integer"),  # timestamps are integers
        ("1.0,10,4.0,964982703", "not_an_integer"),
        ("12345678901234567890,10,4.0,964982703", "integer_overflow"),
        ("3,10,4.0,99999999999", "timestamp_out_of_range"),  # year 5138 in seconds, in a file of seconds
        ("3,10,nan,964982703", "non_numeric"),
        ("3,10,4.0", "missing_field"),
        ("3,,4.0,964982703", "missing_field"),
        ("   ", "missing_field"),
        ("3,10,4.0,964982703,extra", "extra_field"),
        ("3,10,5.5,964982703", "rating_out_of_range"),
        ("3,10,0.0,964982703", "rating_out_of_range"),
        ("3,10,4.25,964982703", "rating_off_grid"),
        ("3,99,4.0,964982703", "unknown_item"),
    ],
)
def test_csv_ratings_reject(make_release, out_dir, read, rejects_of, release_bytes, line, reason):
    ratings = _insert(release_bytes["ml-latest"]["ratings.csv"], line, at=3)

    summary = ingest_dataset(make_release("ml-latest", replace={"ratings.csv": ratings}), out_dir, **ALL)

    assert rejects_of(out_dir) == [("ratings.csv", 3, reason, line)]
    assert [(r["user_id"], r["item_id"], r["rating"]) for r in read(out_dir, "ratings")] == GOOD_CSV_RATINGS
    assert summary["rows_rejected"] == 1
    assert summary["reject_reasons"] == {reason: 1}
    assert summary["n_ratings"] == 3


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("1::x::4::978300760", "non_numeric"),
        ("1::10::4", "missing_field"),
        ("1,10,4,978300760", "missing_field"),  # one field: commas are not the separator
        ("3::10::4::978300760::1", "extra_field"),
        ("2::20::6::978300760", "rating_out_of_range"),
        ("2::20::4.5::978300760", "rating_off_grid"),  # ml-1m ratings are whole stars
        ("2::99::4::978300760", "unknown_item"),
        ("9::10::4::978300760", "unknown_user"),  # ml-1m has users.dat
    ],
)
def test_dat_ratings_reject(make_release, out_dir, read, rejects_of, release_bytes, line, reason):
    ratings = _insert(release_bytes["ml-1m"]["ratings.dat"], line, at=2)

    ingest_dataset(make_release("ml-1m", replace={"ratings.dat": ratings}), out_dir, **ALL)

    assert rejects_of(out_dir) == [("ratings.dat", 2, reason, line)]
    assert [(r["user_id"], r["item_id"], r["rating"]) for r in read(out_dir, "ratings")] == [
        (1, 10, 4.0), (1, 20, 3.0), (2, 10, 5.0),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("1\t10\t4", "missing_field"),
        ("3\tx\t4\t881250949", "non_numeric"),
        ("3\t10\t0\t881250949", "rating_out_of_range"),
    ],
)
def test_ml100k_ratings_reject(make_release, out_dir, read, rejects_of, release_bytes, line, reason):
    ratings = _insert(release_bytes["ml-100k"]["u.data"], line, at=4)

    ingest_dataset(make_release("ml-100k", replace={"u.data": ratings}), out_dir, **ALL)

    assert rejects_of(out_dir) == [("u.data", 4, reason, line)]
    assert len(read(out_dir, "ratings")) == 3


def test_half_stars_are_on_the_ml10m_grid(make_release, out_dir, rejects_of, release_bytes):
    ratings = _insert(release_bytes["ml-10m"]["ratings.dat"], "2::20::2.5::978300760", at=4)
    summary = ingest_dataset(make_release("ml-10m", replace={"ratings.dat": ratings}), out_dir)
    assert rejects_of(out_dir) == []
    assert summary["n_ratings"] == 4


@pytest.mark.parametrize(
    ("file", "line", "at", "reason"),
    [
        ("movies.csv", "x,Bad Id (2000),Drama", 3, "non_numeric"),
        ("movies.csv", "30,Title Only (2000)", 3, "missing_field"),
        ("movies.csv", "10,Same Id Again (2000),Drama", 4, "duplicate_item"),
        ("tags.csv", "1,abc,funny,1445714994", 3, "non_numeric"),
        ("tags.csv", "1,99,funny,1445714994", 3, "unknown_item"),
        ("links.csv", "30,0112346,9087", 3, "unknown_item"),
        ("links.csv", "10,0112346,9087", 4, "duplicate_item"),
        ("links.csv", "20,tt0105946,", 3, "non_numeric"),
        ("links.csv", "30,0105946,abc", 4, "non_numeric"),  # tmdbId may be empty, not malformed
    ],
)
def test_csv_side_files_reject(make_release, out_dir, read, rejects_of, release_bytes, file, line, at, reason):
    data = _insert(release_bytes["ml-latest"][file], line, at=at)

    ingest_dataset(make_release("ml-latest", replace={file: data}), out_dir, **ALL)

    assert rejects_of(out_dir) == [(file, at, reason, line)]
    assert len(read(out_dir, "ratings")) == 3
    assert len(read(out_dir, {"movies.csv": "items", "tags.csv": "tags", "links.csv": "links"}[file])) == 2


@pytest.mark.parametrize(
    ("release", "file", "line", "at", "reason"),
    [
        ("ml-1m", "movies.dat", "30::Only Two Fields (1990)", 2, "missing_field"),
        ("ml-1m", "movies.dat", "x::Bad (1990)::Drama", 3, "non_numeric"),
        ("ml-1m", "users.dat", "x::F::1::10::48067", 2, "non_numeric"),
        ("ml-1m", "users.dat", "1::M::25::3::55117", 3, "duplicate_user"),
        ("ml-1m", "users.dat", "3::M::25::lawyer::55117", 3, "non_numeric"),  # ml-1m occupations are codes
        ("ml-100k", "u.item", "30|Bad Flag (1990)|||x|" + "|".join(["2"] + ["0"] * 18), 2, "non_numeric"),
        ("ml-100k", "u.user", "3|x|M|writer|12345", 3, "non_numeric"),
        ("ml-10m", "tags.dat", "1::99::dull::1138537770", 3, "unknown_item"),
    ],
)
def test_dat_side_files_reject(make_release, out_dir, rejects_of, release_bytes, release, file, line, at, reason):
    data = _insert(release_bytes[release][file], line, at=at)

    ingest_dataset(make_release(release, replace={file: data}), out_dir, **ALL)

    assert rejects_of(out_dir) == [(file, at, reason, line)]


def test_line_numbers_count_quoted_newlines(make_release, out_dir, rejects_of, release_bytes):
    # tags.csv: header, line 2, a record spanning lines 3-4, then the bad row on line 5
    tags = release_bytes["ml-latest"]["tags.csv"] + b"x,10,bad,1445714999\n"

    ingest_dataset(make_release("ml-latest", replace={"tags.csv": tags}), out_dir, **ALL)

    assert rejects_of(out_dir) == [("tags.csv", 5, "non_numeric", "x,10,bad,1445714999")]


def test_line_numbers_count_blank_lines(make_release, out_dir, read, rejects_of):
    ratings = b"userId,movieId,rating,timestamp\n1,10,4.0,1\n\n\n1,20,9.0,2\n2,10,0.5,3\n"

    ingest_dataset(make_release("ml-latest", replace={"ratings.csv": ratings}), out_dir, **ALL)

    assert rejects_of(out_dir) == [("ratings.csv", 5, "rating_out_of_range", "1,20,9.0,2")]
    assert [r["timestamp"] for r in read(out_dir, "ratings")] == [1, 3]


def test_blank_lines_alone_reject_nothing(make_release, out_dir, read, rejects_of):
    ratings = b"userId,movieId,rating,timestamp\n1,10,4.0,1\n\n2,10,0.5,3\n\n"
    ingest_dataset(make_release("ml-latest", replace={"ratings.csv": ratings}), out_dir)
    assert rejects_of(out_dir) == []
    assert [r["timestamp"] for r in read(out_dir, "ratings")] == [1, 3]


def test_crlf_raw_text_has_no_carriage_return(make_release, out_dir, rejects_of):
    ratings = b"userId,movieId,rating,timestamp\r\n1,10,4.0,1\r\n1,zz,4.0,2\r\n2,10,0.5,3\r\n"
    ingest_dataset(make_release("ml-latest", replace={"ratings.csv": ratings}), out_dir, **ALL)
    assert rejects_of(out_dir) == [("ratings.csv", 3, "non_numeric", "1,zz,4.0,2")]


def test_several_reasons_at_once(make_release, out_dir, rejects_of):
    ratings = (
        b"userId,movieId,rating,timestamp\n"
        b"1,10,3.0,2\n"  # 2 re-rated at line 3: superseded
        b"1,10,4.0,3\n"  # 3 the latest rating of (1, 10): kept
        b"1,abc,3.0,3\n"  # 4 non-numeric
        b"2,10,7.0,4\n"  # 5 out of range
        b"2,10,4.0,5\n"  # 6 ok: the out-of-range row did not claim (2, 10)
        b"2,77,4.0,6\n"  # 7 unknown item
    )
    summary = ingest_dataset(make_release("ml-latest", replace={"ratings.csv": ratings}), out_dir, **ALL)

    assert [r[1:3] for r in rejects_of(out_dir)] == [
        (2, "duplicate_user_item"), (4, "non_numeric"), (5, "rating_out_of_range"), (7, "unknown_item"),
    ]  # fmt: skip
    assert summary["n_ratings"] == 2
    assert summary["rows_read"] == 6 + 2 + 2 + 2
    assert summary["reject_reasons"] == {
        "duplicate_user_item": 1, "non_numeric": 1, "rating_out_of_range": 1, "unknown_item": 1,
    }  # fmt: skip


def test_exact_path_keeps_the_same_rows_as_the_fast_path(make_release, tmp_path):
    rows = [f"{u},{10 if i % 2 else 20},{(i % 10 + 1) / 2},{1000 + i}" for i, u in enumerate(range(1, 2001))]
    clean = ("userId,movieId,rating,timestamp\n" + "\n".join(rows) + "\n").encode()
    dirty = _insert(clean, "oops", at=1000)
    out_fast, out_exact = tmp_path / "fast", tmp_path / "exact"
    out_fast.mkdir()
    out_exact.mkdir()

    ingest_dataset(make_release("ml-latest", replace={"ratings.csv": clean}), out_fast)
    ingest_dataset(make_release("ml-latest", replace={"ratings.csv": dirty}), out_exact, **ALL)

    assert pq.read_table(out_exact / "ratings.parquet").equals(pq.read_table(out_fast / "ratings.parquet"))
    assert pq.read_table(out_exact / "rejects.parquet").to_pylist() == [
        {"source_file": "ratings.csv", "line_number": 1000, "reason": "missing_field", "raw": "oops"}
    ]


# ----------------------------------------------------------------------------- threshold


def test_too_many_rejects_raises_after_writing_rejects(make_release, out_dir, release_bytes):
    ratings = _insert(release_bytes["ml-latest"]["ratings.csv"], "1,abc,4.0,1", at=3)

    with pytest.raises(TooManyRejectsError) as err:
        ingest_dataset(make_release("ml-latest", replace={"ratings.csv": ratings}), out_dir, max_reject_fraction=0.05)

    message = str(err.value)
    assert "1 of 10 rows rejected" in message
    assert "10.0000%" in message
    assert "max_reject_fraction=0.05" in message
    assert "ratings.csv: 1 of 4 rows" in message
    assert str(out_dir / "rejects.parquet") in message
    assert pq.read_table(out_dir / "rejects.parquet").to_pylist() == [
        {"source_file": "ratings.csv", "line_number": 3, "reason": "non_numeric", "raw": "1,abc,4.0,1"}
    ]


def test_rejects_within_the_threshold_pass(make_release, out_dir, release_bytes):
    ratings = _insert(release_bytes["ml-latest"]["ratings.csv"], "1,abc,4.0,1", at=3)
    summary = ingest_dataset(make_release("ml-latest", replace={"ratings.csv": ratings}), out_dir, max_reject_fraction=0.1)
    assert summary["rows_rejected"] == 1


def test_rejects_file_is_written_when_empty(make_release, out_dir):
    ingest_dataset(make_release("ml-latest"), out_dir)
    table = pq.read_table(out_dir / "rejects.parquet")
    assert table.num_rows == 0
    assert table.column_names == ["source_file", "line_number", "reason", "raw"]


# ----------------------------------------------------------------------------- broken files


@pytest.mark.parametrize(
    ("release", "file", "data", "expected"),
    [
        ("ml-latest", "ratings.csv", b"userId\tmovieId\trating\ttimestamp\n1\t10\t4.0\t1\n", "wrong delimiter"),
        ("ml-latest", "ratings.csv", b"userId;movieId;rating;timestamp\n1;10;4.0;1\n", "wrong delimiter"),
        ("ml-latest", "ratings.csv", b"userId,movieId,rating,timestamp\n1;10;4.0;1\n2;10;4.0;1\n", "wrong delimiter"),
        ("ml-1m", "ratings.dat", b"1,10,4,978300760\n2,10,5,978300761\n", "wrong delimiter"),
        ("ml-100k", "u.data", b"1 10 4 881250949\n", "wrong delimiter"),
        ("ml-latest", "ratings.csv", b"userId,movieId,rating\n1,10,4.0\n", "missing column(s) timestamp"),
        ("ml-latest", "movies.csv", b"movieId,title\n10,X (1995)\n", "missing column(s) genres"),
        ("ml-latest", "ratings.csv", b"", "file is empty"),
        ("ml-latest", "tags.csv", b"\n\n", "file is empty"),
        ("ml-1m", "users.dat", b"", "file is empty"),
        ("ml-latest", "ratings.csv", b"userId,movieId,rating,timestamp\n", "no data rows"),
        ("ml-latest", "movies.csv", b"movieId,title,genres\n10,Bad \xff (1995),Drama\n", "not valid UTF-8"),
        ("ml-latest", "ratings.csv", b"userId,movieId,rating,timestamp\n1,10,4.0,1\n1,2\xc3,4,1\n", "not valid UTF-8"),
        ("ml-1m", "movies.dat", b"10::Bad \x81 (1995)::Drama\n", "neither UTF-8 nor Latin-1"),
    ],
)
def test_broken_file_fails_naming_it(make_release, out_dir, release, file, data, expected):
    src = make_release(release, replace={file: data})

    with pytest.raises(DatasetFormatError) as err:
        ingest_dataset(src, out_dir)

    assert file in str(err.value)
    assert expected in str(err.value)
    assert list(out_dir.iterdir()) == []  # nothing half-written


def test_bad_encoding_names_the_line(make_release, out_dir):
    movies = b"movieId,title,genres\n10,Fine (1995),Drama\n20,Bad \xff (1995),Drama\n"
    with pytest.raises(DatasetFormatError, match=r"movies\.csv: not valid UTF-8 \(byte 0xff on line 3\)"):
        ingest_dataset(make_release("ml-latest", replace={"movies.csv": movies}), out_dir)


@pytest.mark.parametrize(("release", "file"), [("ml-latest", "movies.csv"), ("ml-1m", "movies.dat"), ("ml-100k", "u.item")])
def test_missing_items_file_fails(make_release, out_dir, release, file):
    with pytest.raises(DatasetFormatError, match=f"missing required file {file}"):
        ingest_dataset(make_release(release, drop=[file]), out_dir)


@pytest.mark.parametrize("zip", [False, True])
def test_no_ratings_file_fails(make_release, out_dir, zip):
    src = make_release("ml-latest", drop=["ratings.csv"], zip=zip)
    with pytest.raises(DatasetFormatError, match="no ratings file found") as err:
        ingest_dataset(src, out_dir)
    assert str(src) in str(err.value)


def test_missing_source_fails(tmp_path, out_dir):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ingest_dataset(tmp_path / "nowhere", out_dir)


def test_a_file_that_is_not_a_zip_fails(tmp_path, out_dir):
    src = tmp_path / "ml-1m.zip"
    src.write_bytes(b"not a zip")
    with pytest.raises(DatasetFormatError, match="expected a folder or a .zip"):
        ingest_dataset(src, out_dir)


@pytest.mark.parametrize("fmt", ["ml-latest", "ml-1m"])
def test_of_two_ratings_of_one_pair_the_latest_wins_whatever_the_line_order(make_release, out_dir, read, rejects_of, release_bytes, fmt):
    """A growing log appends re-ratings; the newest is what the user thinks now (a tie: the later line)."""
    name, newer, older = (
        ("ratings.csv", "1,10,2.0,964982704", "1,10,5.0,964982702") if fmt == "ml-latest" else ("ratings.dat", "1::10::2::978300761", "1::10::5::978300759")
    )
    base = release_bytes[fmt][name]
    ratings = _insert(_insert(base, newer, at=2 if fmt == "ml-latest" else 1), older, at=3 if fmt == "ml-latest" else 2)
    ingest_dataset(make_release(fmt, replace={name: ratings}), out_dir, **ALL)
    kept = {(r["user_id"], r["item_id"]): r["rating"] for r in read(out_dir, "ratings")}
    assert kept[(1, 10)] == 2.0  # the newer rating, though an older one comes after it in the file
    assert [(r[2], r[3]) for r in rejects_of(out_dir)] == [
        ("duplicate_user_item", older),
        ("duplicate_user_item", base.decode().splitlines()[1 if fmt == "ml-latest" else 0]),
    ]


def test_a_ratings_file_in_milliseconds_is_detected_and_converted(make_release, out_dir, read):
    ratings = b"userId,movieId,rating,timestamp\n1,10,4.0,964982703000\n1,20,3.5,964981247123\n2,10,0.5,964982224999\n"
    summary = ingest_dataset(make_release("ml-latest", replace={"ratings.csv": ratings}), out_dir, **ALL)
    assert [r["timestamp"] for r in read(out_dir, "ratings")] == [964982703, 964981247, 964982224]
    assert "ratings.csv: timestamps are in milliseconds (all 3 of them); divided by 1000" in summary["notes"]
