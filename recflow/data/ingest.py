"""Read any MovieLens release (folder or zip) into typed parquet tables plus a rejects table.

Output files (schemas in ``schema.py``): ``ratings``, ``items``, ``users`` (releases with
users), ``tags``, ``links`` (when present), ``tmdb`` (when a TMDB file is given and the
release has links) and ``rejects`` (always; possibly empty). Every data row read is either
in one of the tables or in ``rejects.parquet`` with its file, line, reason and raw text.

Items: ``title`` is the release's title with trailing spaces removed (year kept in it);
``year`` comes from a trailing "(YYYY)" (a range "(2006-2007)" gives its first year), null
when absent. ``genres`` split on ``|``; "(no genres listed)" and ml-100k's "unknown" flag
give an empty list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recflow.utils.numeric import distinct

from . import schema as S
from .releases import (
    CSV_COLUMNS,
    ML100K_GENRES,
    DatasetFormatError,
    FileSpec,
    Release,
    Source,
    detect_release,
    release_files,
)
from .validate import (
    Parsed,
    Rejects,
    TooManyRejectsError,
    check_encoding,
    check_line_format,
    check_not_empty,
    check_ratings,
    check_timestamps,
    convert_numeric,
    csv_header,
    fast_ratings,
    has_data_rows,
    parse_csv,
    parse_lines,
    reject_duplicates,
    reject_unknown,
    too_many_rejects_message,
)

_BOM = b"\xef\xbb\xbf"
_YEAR_RE = r"\((?P<year>\d{4})(?:\s*[-\x{2013}]\s*\d{0,4})?\)$"
_NO_GENRES = {"(no genres listed)", ""}


class _File:
    """One file of the release, loaded and checked for format (not yet parsed)."""

    def __init__(self, src: Source, key: str, spec: FileSpec):
        self.spec = spec
        self.name = spec.name
        self.label = src.label(key)
        data = src.read(key)
        if data.startswith(_BOM):
            data = data[len(_BOM) :]
        check_not_empty(data, spec, self.label)
        self.encoding = check_encoding(data, spec, self.label)
        self.header: list[str] | None = None
        if spec.kind == "csv":
            self.header = csv_header(data, spec, self.label)
            if spec.role == "ratings" and not has_data_rows(data):
                raise DatasetFormatError(f"{self.label}: no data rows under the header; expected ratings")
        else:
            check_line_format(data, spec, self.label)
        self.data = data

    def parse(self, rejects: Rejects) -> Parsed:
        if self.spec.kind == "csv":
            assert self.header is not None
            return parse_csv(self.data, self.spec, self.name, rejects, self.header)
        return parse_lines(self.data, self.spec, self.name, self.encoding, rejects)


def ingest_dataset(
    source: Path,
    out_dir: Path,
    *,
    max_reject_fraction: float = 0.001,
    tmdb_path: Path | None = None,
) -> dict[str, Any]:
    """Parse, validate and write a MovieLens release into ``out_dir``; return a JSON-able summary.

    Summary keys: ``release`` (ml-100k, ml-1m, ml-10m or ml-latest for the CSV family),
    ``rows_read`` / ``rows_rejected`` (data rows of every file read, TMDB included),
    ``reject_reasons`` ({reason: count}), ``rows_read_by_file``, ``rows_rejected_by_file``,
    ``n_ratings`` (kept), ``n_users`` / ``n_items`` (distinct ids among kept ratings: rated
    items, not the catalogue), ``rating_scale`` [lo, hi], ``files`` (rows per written
    table, ``items`` being the catalogue), ``tmdb_matched`` (items with TMDB metadata, None
    when no join was made) and, when something was skipped, ``notes``.

    Raises ``DatasetFormatError`` for a source that cannot be read at all (before writing
    anything) and ``TooManyRejectsError`` (after writing every table and
    ``rejects.parquet``) when ``rows_rejected / rows_read > max_reject_fraction``.
    """
    source, out_dir = Path(source), Path(out_dir)
    src = Source(source)
    release = detect_release(src)
    keys = release_files(src, release)
    rejects = Rejects()
    read: dict[str, int] = {}
    counts: dict[str, int] = {}
    notes: list[str] = []

    def load(role: str) -> _File | None:
        if role not in keys:
            return None
        spec = release.spec(role)
        assert spec is not None
        return _File(src, keys[role], spec)

    # Load (and format-check) every file before writing anything: a broken file fails at once.
    files = {role: load(role) for role in ("items", "users", "ratings", "tags", "links")}
    files = {k: v for k, v in files.items() if v is not None}
    tmdb_raw = None
    if tmdb_path is not None:
        if "links" in files:
            from .tmdb import read_tmdb

            tmdb_raw, read[Path(tmdb_path).name] = read_tmdb(Path(tmdb_path), rejects)
        else:
            notes.append(f"tmdb_path given but {release.name} has no links file: no tmdb.parquet")

    items_f = files["items"]
    items_parsed = items_f.parse(rejects)
    read[items_f.name] = items_parsed.n_read
    items = _items(items_parsed, release, rejects)
    item_ids = items.column("item_id").to_numpy()
    counts["items"] = S.write_table(items, out_dir / "items.parquet", S.ITEMS)

    user_ids = None
    if "users" in files:
        users_f = files.pop("users")
        parsed = users_f.parse(rejects)
        read[users_f.name] = parsed.n_read
        users = _users(parsed, release, rejects)
        user_ids = users.column("user_id").to_numpy()
        counts["users"] = S.write_table(users, out_dir / "users.parquet", S.USERS)

    ratings_f = files.pop("ratings")
    ratings_parsed = check_timestamps(_parse_ratings(ratings_f, rejects), rejects, notes, ratings_f.name)
    read[ratings_f.name] = ratings_parsed.n_read
    del ratings_f.data
    ratings = check_ratings(
        ratings_parsed,
        rejects,
        lo=release.rating_min,
        hi=release.rating_max,
        step=release.rating_step,
        known_items=item_ids,
        known_users=user_ids,
    )
    del ratings_parsed
    u = ratings.columns["user_id"]
    i = ratings.columns["item_id"]
    r = ratings.columns["rating"]
    counts["ratings"] = S.write_table(
        S.conform(
            {
                "user_id": pa.array(u),
                "item_id": pa.array(i),
                "rating": pa.array(r.astype(np.float32)),
                "timestamp": pa.array(ratings.columns["timestamp"]),
            },
            S.RATINGS,
        ),
        out_dir / "ratings.parquet",
        S.RATINGS,
    )
    n_users = _n_distinct(u)
    n_items = _n_distinct(i)
    del ratings, r

    if "tags" in files:
        tags_f = files.pop("tags")
        parsed = tags_f.parse(rejects)
        read[tags_f.name] = parsed.n_read
        tags = _tags(parsed, rejects, item_ids)
        counts["tags"] = S.write_table(tags, out_dir / "tags.parquet", S.TAGS)

    links = None
    if "links" in files:
        links_f = files.pop("links")
        parsed = links_f.parse(rejects)
        read[links_f.name] = parsed.n_read
        links = _links(parsed, rejects, item_ids)
        counts["links"] = S.write_table(links, out_dir / "links.parquet", S.LINKS)

    tmdb_matched = None
    if tmdb_raw is not None and links is not None:
        from .tmdb import join_tmdb

        tmdb = join_tmdb(links, tmdb_raw)
        counts["tmdb"] = S.write_table(tmdb, out_dir / "tmdb.parquet", S.TMDB)
        tmdb_matched = tmdb.num_rows

    rejects_path = out_dir / "rejects.parquet"
    counts["rejects"] = S.write_table(rejects.table(), rejects_path, S.REJECTS)

    rows_read = sum(read.values())
    summary: dict[str, Any] = {
        "release": release.name,
        "rows_read": rows_read,
        "rows_rejected": len(rejects),
        "reject_reasons": rejects.counts(),
        "rows_read_by_file": dict(sorted(read.items())),
        "rows_rejected_by_file": dict(sorted(rejects.per_file.items())),
        "n_ratings": counts["ratings"],
        "n_users": n_users,
        "n_items": n_items,
        "rating_scale": release.scale,
        "files": dict(sorted(counts.items())),
        "tmdb_matched": tmdb_matched,
    }
    if notes:
        summary["notes"] = notes
    if rows_read and len(rejects) / rows_read > max_reject_fraction:
        raise TooManyRejectsError(too_many_rejects_message(rejects, rows_read, max_reject_fraction, rejects_path, read), rejects_path)
    return summary


def _n_distinct(ids: np.ndarray) -> int:
    if len(ids) == 0:
        return 0
    lo, hi = int(ids.min()), int(ids.max())
    if lo >= 0 and hi < 1 << 27:
        seen = np.zeros(hi + 1, bool)
        seen[ids] = True
        return int(seen.sum())
    return len(distinct(ids))


# ----------------------------------------------------------------------------- ratings


def _parse_ratings(f: _File, rejects: Rejects) -> Parsed:
    parsed = fast_ratings(f.data, f.spec, f.header, f.name)
    if parsed is not None:
        return parsed
    if f.spec.kind == "csv" and b'"' in f.data:
        # quoted fields (RFC 4180): the CSV reader unquotes them; a record with the wrong field count
        # is still a reject with its first physical line
        assert f.header is not None
        parsed = parse_csv(f.data, f.spec, f.name, rejects, f.header)
    elif f.spec.kind == "csv":
        # no quote anywhere: split physical lines (vectorised), each bad row a reject
        assert f.header is not None
        names = [CSV_COLUMNS.get(h, h) for h in f.header]
        parsed = parse_lines(f.data, f.spec, f.name, f.encoding, rejects, skip_lines=1, names=names)
    else:
        parsed = f.parse(rejects)
    return convert_numeric(parsed, rejects, ints=["user_id", "item_id", "timestamp"], floats=["rating"])


# ----------------------------------------------------------------------------- items


def _items(parsed: Parsed, release: Release, rejects: Rejects) -> pa.Table:
    parsed = convert_numeric(parsed, rejects, ints=["item_id"])
    if release.name == "ml-100k":
        parsed = _check_flags(parsed, rejects)
    parsed = reject_duplicates(parsed, rejects, "item_id", S.DUPLICATE_ITEM)
    titles = pc.utf8_rtrim_whitespace(_array(parsed.columns["title"]))
    year = pc.cast(pc.struct_field(pc.extract_regex(titles, _YEAR_RE), [0]), pa.int16())
    if release.name == "ml-100k":
        names = np.array(ML100K_GENRES)
        genre_lists = [[g for g in names[row].tolist() if g != "unknown"] for row in parsed.columns["flags"]]
    else:
        genre_lists = [[g for g in s.split("|") if g not in _NO_GENRES] for s in _array(parsed.columns["genres"]).to_pylist()]
    return S.conform(
        {
            "item_id": pa.array(parsed.columns["item_id"]),
            "title": titles,
            "year": year,
            "genres": pa.array(genre_lists, pa.list_(pa.string())),
        },
        S.ITEMS,
    )


def _check_flags(parsed: Parsed, rejects: Rejects) -> Parsed:
    """ml-100k's 19 genre flag columns -> a boolean ``flags`` matrix; a flag other than 0/1 rejects the row."""
    n = len(parsed)
    flags = np.empty((n, 19), dtype=object)
    for k in range(19):
        flags[:, k] = pc.utf8_trim_whitespace(_array(parsed.columns[f"g{k}"])).to_numpy(zero_copy_only=False)
    ok = ((flags == "0") | (flags == "1")).all(axis=1)
    rejects.add_rows(parsed, ~ok, S.NON_NUMERIC)
    parsed = parsed.with_columns({**parsed.columns, "flags": flags == "1"})
    return parsed.filter(ok)


def _array(col) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col


# ----------------------------------------------------------------------------- users, tags, links


def _users(parsed: Parsed, release: Release, rejects: Rejects) -> pa.Table:
    ints = ["user_id", "age"] + (["occupation"] if release.name == "ml-1m" else [])
    strings = {k: pc.utf8_trim_whitespace(_array(parsed.columns[k])) for k in ("gender", "occupation", "zip_code")}
    parsed = parsed.with_columns({**parsed.columns, **{f"{k}_s": v for k, v in strings.items()}})
    parsed = convert_numeric(parsed, rejects, ints=ints)
    parsed = reject_duplicates(parsed, rejects, "user_id", S.DUPLICATE_USER)
    age = parsed.columns["age"]
    out_of_int16 = (age < -32768) | (age > 32767)
    rejects.add_rows(parsed, out_of_int16, S.NON_NUMERIC)
    parsed = parsed.filter(~out_of_int16)
    occupation = pa.array(parsed.columns["occupation"].astype(str).tolist(), pa.string()) if release.name == "ml-1m" else parsed.columns["occupation_s"]
    return S.conform(
        {
            "user_id": pa.array(parsed.columns["user_id"]),
            "gender": parsed.columns["gender_s"],
            "age": pa.array(parsed.columns["age"].astype(np.int16)),
            "occupation": occupation,
            "zip_code": parsed.columns["zip_code_s"],
        },
        S.USERS,
    )


def _tags(parsed: Parsed, rejects: Rejects, item_ids: np.ndarray) -> pa.Table:
    parsed = convert_numeric(parsed, rejects, ints=["user_id", "item_id", "timestamp"])
    parsed = reject_unknown(parsed, rejects, "item_id", item_ids, S.UNKNOWN_ITEM)
    return S.conform(
        {
            "user_id": pa.array(parsed.columns["user_id"]),
            "item_id": pa.array(parsed.columns["item_id"]),
            "tag": _array(parsed.columns["tag"]),
            "timestamp": pa.array(parsed.columns["timestamp"]),
        },
        S.TAGS,
    )


def _links(parsed: Parsed, rejects: Rejects, item_ids: np.ndarray) -> pa.Table:
    parsed = convert_numeric(parsed, rejects, ints=["item_id", "imdb_id", "tmdb_id"], optional=["tmdb_id"])
    parsed = reject_unknown(parsed, rejects, "item_id", item_ids, S.UNKNOWN_ITEM)
    parsed = reject_duplicates(parsed, rejects, "item_id", S.DUPLICATE_ITEM)
    tmdb = pa.array(parsed.columns["tmdb_id"], mask=~parsed.columns["tmdb_id__valid"])
    return S.conform(
        {
            "item_id": pa.array(parsed.columns["item_id"]),
            "imdb_id": pa.array(parsed.columns["imdb_id"]),
            "tmdb_id": tmdb,
        },
        S.LINKS,
    )
