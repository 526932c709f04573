"""tests/pg.py's PostgresServer: a real server that both drivers reach, and that is gone after stop()."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tests.pg import PostgresServer, unavailable_reason

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=unavailable_reason() or "")


def test_a_started_server_answers_psycopg_and_asyncpg_on_its_database_and_its_port_is_free_after_stop(tmp_path):
    import asyncpg
    import psycopg

    with PostgresServer().start(tmp_path / "pg") as pg:
        url = pg.create_database("specs")
        assert url == f"postgresql://postgres@127.0.0.1:{pg.port}/specs"
        assert pg.create_database("specs") == url  # a second call keeps the database
        with psycopg.connect(url) as connection, connection.cursor() as cursor:
            cursor.execute("create table t (x int)")
            cursor.execute("insert into t values (41), (1)")
            cursor.execute("select sum(x) from t")
            assert cursor.fetchone() == (42,)

        async def total() -> int:
            connection = await asyncpg.connect(pg.url(database="specs"))
            try:
                return await connection.fetchval("select sum(x) from t")
            finally:
                await connection.close()

        assert asyncio.run(total()) == 42
        port = pg.port
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_the_session_fixture_serves_a_url_with_the_driver_named(postgres_server):
    assert postgres_server.url("asyncpg", "prefect") == f"postgresql+asyncpg://postgres@127.0.0.1:{postgres_server.port}/prefect"
