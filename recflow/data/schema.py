"""Arrow schemas of every table ``ingest_dataset`` writes, and the one way tables are written.

Every release (ml-100k, ml-1m, ml-10m, the CSV family) is normalised to the same tables, so
downstream stages never look at a release's quirks. ``write_table`` casts to the schema and
refuses nulls in non-nullable columns, so a parquet file here always has exactly this schema.

Users: one schema for all releases. ``occupation`` is a string: ml-100k's occupation name
("technician") or ml-1m's numeric code written as text ("10"); ``age`` is ml-100k's age in
years or ml-1m's age-bucket code (1, 18, 25, ...), as the release defines it.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

RATINGS = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("item_id", pa.int64(), nullable=False),
        pa.field("rating", pa.float32(), nullable=False),
        pa.field("timestamp", pa.int64(), nullable=False),
    ]
)

ITEMS = pa.schema(
    [
        pa.field("item_id", pa.int64(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("year", pa.int16(), nullable=True),
        pa.field("genres", pa.list_(pa.string()), nullable=False),
    ]
)

USERS = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("gender", pa.string(), nullable=False),
        pa.field("age", pa.int16(), nullable=False),
        pa.field("occupation", pa.string(), nullable=False),
        pa.field("zip_code", pa.string(), nullable=False),
    ]
)

TAGS = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("item_id", pa.int64(), nullable=False),
        pa.field("tag", pa.string(), nullable=False),
        pa.field("timestamp", pa.int64(), nullable=False),
    ]
)

LINKS = pa.schema(
    [
        pa.field("item_id", pa.int64(), nullable=False),
        pa.field("imdb_id", pa.int64(), nullable=False),
        pa.field("tmdb_id", pa.int64(), nullable=True),
    ]
)

TMDB = pa.schema(
    [
        pa.field("item_id", pa.int64(), nullable=False),
        pa.field("tmdb_id", pa.int64(), nullable=False),
        pa.field("tmdb_title", pa.string(), nullable=True),
        pa.field("overview", pa.string(), nullable=True),
        pa.field("keywords", pa.list_(pa.string()), nullable=False),
        pa.field("genres", pa.list_(pa.string()), nullable=False),
        pa.field("original_language", pa.string(), nullable=True),
        pa.field("popularity", pa.float64(), nullable=True),
        pa.field("vote_average", pa.float64(), nullable=True),
        pa.field("vote_count", pa.int64(), nullable=True),
        pa.field("runtime", pa.float64(), nullable=True),
        pa.field("budget", pa.int64(), nullable=True),
        pa.field("revenue", pa.int64(), nullable=True),
        pa.field("release_date", pa.date32(), nullable=True),
    ]
)

REJECTS = pa.schema(
    [
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("line_number", pa.int64(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("raw", pa.string(), nullable=False),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "ratings": RATINGS,
    "items": ITEMS,
    "users": USERS,
    "tags": TAGS,
    "links": LINKS,
    "tmdb": TMDB,
    "rejects": REJECTS,
}

# Reject reasons: short, stable strings (they end up in dashboards and tests).
MISSING_FIELD = "missing_field"  # fewer fields than the format has, or an empty required field
EXTRA_FIELD = "extra_field"  # more fields than the format has
NON_NUMERIC = "non_numeric"  # a numeric field that does not parse (or is nan/inf)
NOT_AN_INTEGER = "not_an_integer"  # a number with a fraction or exponent where an integer (id, timestamp) is expected: "1.0"
INTEGER_OVERFLOW = "integer_overflow"  # an integer beyond 18 digits (ids and timestamps are int64)
TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"  # seconds before 1970 or after 2100 (in a file that is not all milliseconds)
RATING_OUT_OF_RANGE = "rating_out_of_range"
RATING_OFF_GRID = "rating_off_grid"  # inside the range but not a step of the release's scale
DUPLICATE_USER_ITEM = "duplicate_user_item"  # a rating of a (user, item) rated again later: the latest rating wins
UNKNOWN_ITEM = "unknown_item"  # item id absent from the items file
UNKNOWN_USER = "unknown_user"  # user id absent from the users file (releases that have one)
DUPLICATE_ITEM = "duplicate_item"  # items/links row repeating an item id
DUPLICATE_USER = "duplicate_user"
DUPLICATE_TMDB_ID = "duplicate_tmdb_id"
BAD_JSON = "bad_json"  # a TMDB JSON list column that does not parse
BAD_DATE = "bad_date"
BAD_TIMESTAMP = "bad_timestamp"  # an interaction log's timestamp that is neither epoch numbers nor ISO-8601 text
NON_POSITIVE_WEIGHT = "non_positive_weight"  # an implicit-feedback weight <= 0


def conform(columns: dict[str, pa.Array | pa.ChunkedArray], schema: pa.Schema) -> pa.Table:
    """A table with exactly ``schema``: columns cast to its types, in its order.

    Raises ``ValueError`` when a non-nullable column holds nulls (a bug upstream: validation
    must have rejected those rows).
    """
    arrays = []
    for field in schema:
        col = columns[field.name]
        if not isinstance(col, (pa.Array, pa.ChunkedArray)):
            col = pa.array(col, type=field.type)
        if col.type != field.type:
            col = col.cast(field.type)
        if not field.nullable and col.null_count:
            raise ValueError(f"column {field.name!r} has {col.null_count} nulls but is not nullable")
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=schema)


def write_table(table: pa.Table, path: Path, schema: pa.Schema) -> int:
    """Write ``table`` (already conformed, or castable) to ``path`` with ``schema``; returns rows."""
    if table.schema != schema:
        table = conform({name: table.column(name) for name in schema.names}, schema)
    pq.write_table(table, path, compression="zstd")
    return table.num_rows


def read_table(path: Path, schema: pa.Schema | None = None) -> pa.Table:
    return pq.read_table(path, schema=schema)
