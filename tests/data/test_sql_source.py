"""The SQL source against a real PostgreSQL server (started by the test session, tests/pg.py)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from recflow.data.sources import SqlSource, TableSource
from recflow.data.sql import snapshot
from recflow.data.table import ingest_table

UTC = dt.timezone.utc
ROWS = [  # viewer, video, stars, at
    ("ann", 3, 4.0, dt.datetime(2026, 12, 1, 9, tzinfo=UTC)),
    ("ben", 3, 2.5, dt.datetime(2026, 12, 1, 10, tzinfo=UTC)),
    ("ann", 5, 5.0, dt.datetime(2026, 12, 2, 8, tzinfo=UTC)),
    ("cid", 7, 3.0, dt.datetime(2026, 12, 2, 9, tzinfo=UTC)),
    ("ben", 5, 1.0, dt.datetime(2026, 12, 3, 7, tzinfo=UTC)),
    ("cid", 3, 4.5, dt.datetime(2026, 12, 3, 8, tzinfo=UTC)),
    ("dan", 7, 2.0, dt.datetime(2026, 12, 4, 6, tzinfo=UTC)),
]
COLUMNS = {"user": "viewer", "item": "video", "timestamp": "at", "rating": "stars"}


@pytest.fixture
def events_db(postgres_server):  # the session's PostgreSQL server (tests/pg.py, through tests/conftest.py)
    url = postgres_server.create_database("sql_source")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS events"))
        conn.execute(sa.text("CREATE TABLE events (viewer text, video integer, stars real, at timestamptz)"))
        conn.execute(sa.text("INSERT INTO events VALUES (:v, :i, :s, :t)"), [dict(zip("vist", row)) for row in reversed(ROWS)])
    yield url, engine
    engine.dispose()


def _ingest(spec: TableSource, tmp_path, name: str, **kw) -> tuple[dict, pd.DataFrame]:
    out = tmp_path / name
    out.mkdir()
    summary = ingest_table(spec, out, tmp_path / f"cache-{name}", **kw)
    return summary, pd.read_parquet(out / "ratings.parquet")


def test_a_postgresql_table_read_in_chunks_gives_the_tables_of_the_same_rows_in_parquet(events_db, tmp_path):
    url, _ = events_db
    sql = SqlSource(url=url, table="events", columns=COLUMNS, chunk_rows=3)
    snap = snapshot(sql, tmp_path / "snap")
    assert pq.ParquetFile(snap).metadata.num_row_groups == 3  # 7 rows streamed 3 at a time, never all at once
    _, from_sql = _ingest(TableSource(path=str(snap), columns=COLUMNS), tmp_path, "sql")
    pd.DataFrame(ROWS, columns=["viewer", "video", "stars", "at"]).to_parquet(tmp_path / "events.parquet", index=False)
    _, from_parquet = _ingest(TableSource(path=str(tmp_path / "events.parquet"), columns=COLUMNS), tmp_path, "parquet")
    pd.testing.assert_frame_equal(from_sql, from_parquet)
    assert from_sql["user_id"].tolist() == [1, 2, 1, 3, 2, 3, 4]  # ann, ben, cid, dan by first interaction
    assert from_sql["timestamp"].tolist()[0] == int(ROWS[0][3].timestamp())


def test_a_query_source_rejects_bad_rows_by_their_row_in_the_result(events_db, tmp_path):
    url, _ = events_db
    query = "SELECT viewer, video, stars, CASE WHEN viewer = 'dan' THEN 'soon' ELSE to_char(at, 'YYYY-MM-DD\"T\"HH24:MI:SS') END AS at FROM events ORDER BY at"
    sql = SqlSource(url=url, query=query, columns=COLUMNS)
    snap = snapshot(sql, tmp_path / "snap")
    summary, ratings = _ingest(TableSource(path=str(snap), columns=COLUMNS), tmp_path, "q", max_reject_fraction=0.2)
    rejects = pd.read_parquet(tmp_path / "q" / "rejects.parquet")
    assert rejects[["source_file", "line_number", "reason"]].to_dict("list") == {
        "source_file": ["query.sql.parquet"],
        "line_number": [7],
        "reason": ["bad_timestamp"],
    }
    assert len(ratings) == 6 and summary["timestamp"] == "column 'at' read as ISO-8601 text (UTC where no zone is given) (detected)"


def test_the_sql_fingerprint_holds_while_the_table_does_and_moves_when_a_row_arrives(events_db, tmp_path):
    from tasks.ingest import table_source

    url, engine = events_db
    sql = SqlSource(url=url, table="events", columns=COLUMNS)
    first, again = table_source("ev", sql, tmp_path), table_source("ev", sql, tmp_path)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO events VALUES ('eve', 9, 3.0, '2026-12-05T00:00:00Z')"))
    later = table_source("ev", sql, tmp_path)
    assert first.fingerprint == again.fingerprint != later.fingerprint
    assert first.describe == {"source": "sql", "url": url, "table": "events"}


def test_a_missing_table_is_an_error_naming_it(events_db, tmp_path):
    from recflow.data import DatasetFormatError

    url, _ = events_db
    with pytest.raises(DatasetFormatError, match="sql source nowhere: ProgrammingError"):
        snapshot(SqlSource(url=url, table="nowhere", columns=COLUMNS), tmp_path)
