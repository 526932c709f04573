"""TMDB movie metadata (Kaggle "TMDB 5000" ``tmdb_5000_movies.csv`` layout) joined to items.

The CSV has one row per TMDB movie keyed by ``id``; ``genres`` and ``keywords`` are JSON
lists of ``{"id": .., "name": ..}`` objects. Rows are matched to MovieLens items through
``links.tmdb_id``. Only ``id`` is required; absent optional columns become nulls.
Malformed rows (non-numeric id or numbers, bad JSON, bad date, a repeated id) go to the
rejects table like any other row.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import schema as S
from .releases import DatasetFormatError, FileSpec
from .validate import (
    Rejects,
    check_encoding,
    check_not_empty,
    convert_numeric,
    csv_header,
    parse_csv,
    reject_duplicates,
)

_FLOATS = ("popularity", "vote_average", "runtime")
_INTS = ("budget", "revenue", "vote_count")
_STRINGS = ("title", "overview", "original_language")
_JSON_LISTS = ("genres", "keywords")
COLUMNS = ("id", *_STRINGS, *_JSON_LISTS, *_FLOATS, *_INTS, "release_date")


def read_tmdb(path: Path, rejects: Rejects) -> tuple[pa.Table, int]:
    """(table keyed by ``tmdb_id`` with the TMDB schema's columns except ``item_id``, rows read)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"{path}: TMDB file not found; expected a CSV like tmdb_5000_movies.csv")
    spec = FileSpec("tmdb", path.name, "csv", ",", ("id",), ("utf-8",))
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    label = str(path)
    check_not_empty(data, spec, label)
    check_encoding(data, spec, label)
    header = csv_header(data, spec, label)
    parsed = parse_csv(data, spec, path.name, rejects, header, keep=COLUMNS)
    n_read = parsed.n_read
    present = set(parsed.columns)
    parsed = parsed.with_columns({**parsed.columns, "tmdb_id": parsed.columns["id"]})
    parsed = convert_numeric(
        parsed,
        rejects,
        ints=["tmdb_id", *[c for c in _INTS if c in present]],
        floats=[c for c in _FLOATS if c in present],
        optional=[*_INTS, *_FLOATS],
    )
    parsed = reject_duplicates(parsed, rejects, "tmdb_id", S.DUPLICATE_TMDB_ID)

    # JSON lists and dates: small per-row work (thousands of rows), rejects on failure
    n = len(parsed)
    lists: dict[str, list] = {}
    bad_json = np.zeros(n, bool)
    for col in _JSON_LISTS:
        values: list = [[] for _ in range(n)]
        if col in present:
            for k, text in enumerate(_strings(parsed.columns[col])):
                names = _json_names(text)
                if names is None:
                    bad_json[k] = True
                else:
                    values[k] = names
        lists[col] = values
    rejects.add_rows(parsed, bad_json, S.BAD_JSON)
    dates = pa.nulls(n, pa.date32())
    bad_date = np.zeros(n, bool)
    if "release_date" in present:
        text = pc.utf8_trim_whitespace(_array(parsed.columns["release_date"]))
        empty = pc.equal(pc.utf8_length(text), 0).to_numpy(zero_copy_only=False)
        ok = pc.match_substring_regex(text, r"^\d{4}-\d{2}-\d{2}$").to_numpy(zero_copy_only=False)
        parsed_dates = pc.strptime(text, format="%Y-%m-%d", unit="s", error_is_null=True)
        bad_date = ~empty & (~ok | parsed_dates.is_null().to_numpy(zero_copy_only=False))
        dates = pc.cast(parsed_dates, pa.date32())
        rejects.add_rows(parsed, bad_date & ~bad_json, S.BAD_DATE)
    keep = ~(bad_json | bad_date)
    parsed = parsed.filter(keep)
    cols: dict[str, pa.Array] = {"tmdb_id": pa.array(parsed.columns["tmdb_id"])}
    for col in _STRINGS:
        cols["tmdb_title" if col == "title" else col] = _array(parsed.columns[col]) if col in present else pa.nulls(len(parsed), pa.string())
    for col in _JSON_LISTS:
        cols[col] = pa.array([v for v, k in zip(lists[col], keep) if k], pa.list_(pa.string()))
    for col in (*_FLOATS, *_INTS):
        if col in present:
            cols[col] = pa.array(parsed.columns[col], mask=~parsed.columns[col + "__valid"])
        else:
            cols[col] = pa.nulls(len(parsed), pa.float64() if col in _FLOATS else pa.int64())
    cols["release_date"] = dates.filter(pa.array(keep))
    return pa.table(cols), n_read


def join_tmdb(links: pa.Table, tmdb: pa.Table) -> pa.Table:
    """One row per item whose ``links.tmdb_id`` is in ``tmdb``, sorted by item_id."""
    link_tmdb = links.column("tmdb_id")
    has = pc.is_valid(link_tmdb).to_numpy(zero_copy_only=False)
    item_ids = links.column("item_id").to_numpy()[has]
    wanted = link_tmdb.to_numpy(zero_copy_only=False)[has].astype(np.int64)
    ids = tmdb.column("tmdb_id").to_numpy()
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    pos = np.clip(np.searchsorted(sorted_ids, wanted), 0, max(len(sorted_ids) - 1, 0))
    found = (sorted_ids[pos] == wanted) if len(sorted_ids) else np.zeros(len(wanted), bool)
    rows = order[pos[found]]
    item_ids = item_ids[found]
    by_item = np.argsort(item_ids, kind="stable")
    picked = tmdb.take(pa.array(rows[by_item]))
    cols = {"item_id": pa.array(item_ids[by_item])}
    for name in S.TMDB.names:
        if name != "item_id":
            cols[name] = picked.column(name)
    return S.conform(cols, S.TMDB)


def _json_names(text: str) -> list[str] | None:
    text = text.strip()
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    names = []
    for entry in value:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            names.append(entry["name"])
        elif isinstance(entry, str):
            names.append(entry)
        else:
            return None
    return names


def _array(col) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col


def _strings(col) -> list[str]:
    return _array(col).to_pylist()
