"""A SQL source: a table or a query behind a SQLAlchemy URL, read in chunks into a Parquet snapshot.

Why a snapshot: the rows then go through exactly the table source's reader (``table.py``: the same
mapping, validation, rejects and canonical form), and the snapshot's bytes give the ingest its
content fingerprint, so an unchanged table hits the cache. The read streams: a server-side cursor
(``stream_results``) hands ``chunk_rows`` rows at a time to a Parquet writer, so memory holds one
chunk, never the whole table (no pandas copy of it either). A rejected row is named by its position
in the result (``<table>.sql.parquet`` row N), the order the server returned it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .releases import DatasetFormatError
from .sources import SqlSource

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")


def snapshot(spec: SqlSource, folder: Path) -> Path:
    """Stream the source's rows into ``folder/<table or query>.sql.parquet`` (atomically); returns its path."""
    import sqlalchemy as sa

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{spec.table or 'query'}.sql.parquet"
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    engine = sa.create_engine(spec.url)
    try:
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=spec.chunk_rows).execute(_statement(spec, sa))
            names = list(result.keys())
            writer = None
            try:
                for rows in result.partitions(spec.chunk_rows):
                    chunk = _chunk(names, rows, writer.schema if writer else None)
                    if writer is None:
                        writer = pq.ParquetWriter(tmp, chunk.schema, compression="zstd")
                    writer.write_table(chunk)
                if writer is None:  # no rows: an empty file with the result's columns
                    writer = pq.ParquetWriter(tmp, pa.schema([(n, pa.string()) for n in names]))
            finally:
                if writer is not None:
                    writer.close()
    except sa.exc.SQLAlchemyError as exc:
        raise DatasetFormatError(f"sql source {_where(spec)}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    finally:
        engine.dispose()
    os.replace(tmp, target)
    return target


def _statement(spec: SqlSource, sa):
    if spec.query is not None:
        return sa.text(spec.query)
    if not _IDENTIFIER.match(spec.table):
        raise DatasetFormatError(f"sql source: table {spec.table!r} is not a plain [schema.]name; use query for anything else")
    schema, _, name = spec.table.rpartition(".")
    return sa.select(sa.text("*")).select_from(sa.table(name, schema=schema or None))


def _chunk(names: list[str], rows, schema: pa.Schema | None) -> pa.Table:
    """One chunk as Arrow, cast to the first chunk's schema (a column all null in the first chunk takes the later type)."""
    columns = list(zip(*rows)) if rows else [[] for _ in names]
    arrays = [pa.array(list(col)) for col in columns]
    table = pa.table(dict(zip(names, arrays)))
    if schema is None:
        return table.cast(pa.schema([(f.name, pa.string() if pa.types.is_null(f.type) else f.type) for f in table.schema]))
    return table.cast(schema)


def _where(spec: SqlSource) -> str:
    return spec.table or "query"
