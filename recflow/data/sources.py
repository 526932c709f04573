"""Where a dataset comes from: one declared form for every source (``dataset.source`` in a preset).

Three kinds, one contract: each produces the canonical tables of ``schema.py`` (``ratings``,
``items``, ``rejects``, and ``users`` / ``tags`` / ``links`` where the source has them) through
the same validation, quarantine, reject budget and fingerprint.

* ``movielens``: a GroupLens release (folder or zip; ``releases.py`` knows the four formats).
* ``table``: your own interaction log, Parquet or CSV (gzip too), one file, a folder, a glob or a
  Hive-partitioned folder (``date=2026-12-01/part-0.parquet``), local or on ``s3://`` (fsspec),
  with a column mapping; ``table.py`` reads it one partition at a time.
* ``sql``: a SQLAlchemy URL plus a table or a query, read in chunks into a local Parquet snapshot
  that is then ingested as a ``table`` (``sql.py``).

The models are pydantic (strict: unknown keys are errors) and the readers take them as they are;
``recflow.data.config.DatasetConfig.source`` embeds them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from recflow.utils.config import Strict as _Strict


class Columns(_Strict):
    """Which source column holds each canonical field. Without ``rating`` (and ``weight``) the feedback is implicit."""

    user: str
    item: str
    timestamp: str
    rating: str | None = Field(None, description="an explicit rating: rating models run, and validate against rating_scale")
    weight: str | None = Field(None, description="implicit feedback with a confidence weight (views, plays): stored as the rating column")

    @model_validator(mode="after")
    def _rating_or_weight(self) -> Columns:
        if self.rating is not None and self.weight is not None:
            raise ValueError("columns: give rating (explicit feedback) or weight (implicit feedback), not both")
        names = [n for n in (self.user, self.item, self.timestamp, self.rating, self.weight) if n is not None]
        if len(names) != len(set(names)):
            raise ValueError(f"columns: one source column mapped twice in {names}")
        return self


class ItemColumns(_Strict):
    item: str
    title: str | None = Field(None, description="default: the item's own id, as text")
    genres: str | None = Field(None, description="a list column, or text split on genres_separator")
    year: str | None = Field(None, description="default: a trailing (YYYY) of the title")


class ItemsTable(_Strict):
    """An optional catalogue beside the interactions: its ids go through the interactions' item mapping."""

    path: str = Field(description="a Parquet or CSV file (gzip too), local or s3://")
    columns: ItemColumns
    genres_separator: str = "|"


TimestampUnit = Literal["auto", "s", "ms", "us", "ns", "iso"]
Duplicates = Literal["auto", "reject", "first", "last"]


class _Interactions(_Strict):
    columns: Columns
    timestamp_unit: TimestampUnit = Field(
        "auto", description="epoch s / ms / us / ns or ISO-8601 text; auto: detected per column (stated in the ingest summary)"
    )
    rating_scale: tuple[float, float] | None = Field(None, description="[lo, hi]: ratings outside are rejects; default: the observed range")
    duplicates: Duplicates = Field(
        "auto",
        description="repeated (user, item): reject the later ones (a reject each), keep the first or the last; auto: reject with a rating, first without",
    )
    items: ItemsTable | None = None

    @property
    def implicit(self) -> bool:
        return self.columns.rating is None

    @property
    def duplicate_policy(self) -> str:
        if self.duplicates != "auto":
            return self.duplicates
        return "first" if self.implicit else "reject"

    @model_validator(mode="after")
    def _scale_ordered(self):
        if self.rating_scale is not None and self.rating_scale[0] > self.rating_scale[1]:
            raise ValueError(f"rating_scale {list(self.rating_scale)}: lo must not exceed hi")
        if self.rating_scale is not None and self.implicit:
            raise ValueError("rating_scale needs a rating column (columns.rating)")
        return self


class MovieLensSource(_Strict):
    kind: Literal["movielens"] = "movielens"
    path: Path | None = Field(None, description="a release folder or zip; default: found by dataset name (bundled, cache, download)")


class TableSource(_Interactions):
    kind: Literal["table"] = "table"
    path: str = Field(description="a file, a folder, a glob or a Hive-partitioned folder; local or s3://")
    format: Literal["auto", "parquet", "csv"] = Field("auto", description="auto: by each file's extension (.parquet, .csv, .csv.gz)")


class SqlSource(_Interactions):
    kind: Literal["sql"] = "sql"
    url: str = Field(description="a SQLAlchemy URL, e.g. postgresql://user@host:5432/db")
    table: str | None = None
    query: str | None = None
    chunk_rows: int = Field(100_000, gt=0, description="rows fetched per round trip (a server-side cursor: never the whole table in memory)")

    @model_validator(mode="after")
    def _table_or_query(self) -> SqlSource:
        if (self.table is None) == (self.query is None):
            raise ValueError("a sql source takes exactly one of table or query")
        return self


SourceConfig = Annotated[Union[MovieLensSource, TableSource, SqlSource], Field(discriminator="kind")]
