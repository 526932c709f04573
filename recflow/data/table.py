"""An interaction log of your own (Parquet or CSV files, Hive partitions, local or s3://) -> the canonical tables.

Two steps, so that a night's ingest costs what its new partitions cost:

1. **pieces**: every file (a *part*: one Hive partition's file, one file of a folder or glob) is read
   alone, its mapped columns checked, converted and validated row by row (``read_part``). The result,
   a *piece* (raw ids, epoch seconds, rating or weight, row numbers) and its rejects, is cached under
   the source's cache folder, keyed by the part's content digest, its label and the reading settings.
   A part whose digest is unchanged is never opened again (``ingest_table`` reads only new or changed
   ones: the listing's size + mtime or the bucket's ETag, then a content hash of what changed).
2. **combine**: the pieces are concatenated and what needs them all is done once: unknown items (when
   an items table is given), repeated (user, item) pairs (``duplicates``), the dense id mapping of
   string ids and the canonical sort. Every step depends only on the rows' values, never on file
   order or partitioning, so the same interactions give byte-identical tables.

Canonical form: ``ratings`` sorted by (timestamp, user_id, item_id); integer ids are kept as they
are; string ids (or text that is not plain integers) get dense ids 1..n in order of first
interaction (ties by the raw id), so a log that grows forward in time keeps every earlier id (the
mappings ``user_ids.parquet`` / ``item_ids.parquet`` hold ``id`` -> ``raw``); catalogue items never
interacted with come after, by raw id. Timestamps are epoch seconds (ISO text without a zone is UTC).
Without a rating column every interaction counts as a positive with rating 1 (or its ``weight``).

Rejects (``rejects.parquet``): ``source_file`` is the part's label (its partition folders included),
``line_number`` the row: the physical line (header = line 1) for CSV, the 1-based row for Parquet.
A mapping that names a missing column, a column that cannot be timestamps at all, or partitions that
disagree on a column's kind raise ``DatasetFormatError`` naming the file; a bad row is a reject.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recflow.utils.numeric import distinct

from . import schema as S
from .releases import DatasetFormatError
from .sources import ItemsTable, TableSource
from .validate import Rejects, TooManyRejectsError, membership, to_float, too_many_rejects_message

#: bump when a piece's content would change for the same input (old pieces are then never reused)
PIECE_VERSION = "1"
_GLOB = re.compile(r"[*?\[]")
_CANONICAL_INT = r"^(0|-?[1-9]\d{0,17})$"
_NUMBER = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,3})?\s*$"
_YEAR_RE = r"\((?P<year>\d{4})(?:\s*[-\x{2013}]\s*\d{0,4})?\)\s*$"
_MAX_LISTED = 20
#: rows per piece of ``ratings.parquet`` (a folder): cut by row number only, so a night rewrites the last piece and adds new ones
RATINGS_PIECE_ROWS = 1 << 20
#: ratings sorted by time: delta-packed integers, a dictionary for the few rating values; half the CPU of
#: the default zstd encoding to write and to read (5M rows: 0.47 s vs 1.0 s, 0.19 s vs 0.46 s), and smaller
RATINGS_ENCODING = {
    "compression": "zstd",
    "use_dictionary": ["rating"],
    "column_encoding": {"user_id": "DELTA_BINARY_PACKED", "item_id": "DELTA_BINARY_PACKED", "timestamp": "DELTA_BINARY_PACKED"},
}  # partitions named one by one in a summary; the rest are counted


@dataclass(frozen=True)
class Part:
    """One data file of a source. ``label`` (relative to the source's root) names it in rejects and summaries."""

    url: str
    label: str
    token: str  # the listing's fingerprint: etag, or size|mtime_ns
    format: str  # parquet | csv
    local: bool

    @property
    def partition(self) -> dict[str, str]:
        """Hive partition keys of its folders: ``date=2026-12-01/part-0.parquet`` -> {"date": "2026-12-01"}."""
        return dict(p.split("=", 1) for p in self.label.split("/")[:-1] if "=" in p)


# ----------------------------------------------------------------------------- listing


def _format_of(name: str, declared: str) -> str | None:
    lower = name.lower()
    if lower.endswith((".parquet", ".pq", ".parq")):
        return "parquet"
    if lower.endswith((".csv", ".csv.gz", ".gz")) and (declared != "parquet"):
        return "csv"
    return None if declared == "auto" else declared


def list_parts(path: str, declared_format: str = "auto") -> list[Part]:
    """The data files of ``path`` (file, folder, glob, Hive folders; local or any fsspec URL), sorted by label.

    Hidden and bookkeeping files (``.x``, ``_SUCCESS``, ``_common_metadata``) are not data; any other
    file whose format is unknown is an error (never skipped silently).
    """
    fs, root = fsspec.core.url_to_fs(path)
    local = fs.protocol in ("file", "local") or "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
    if _GLOB.search(root):
        found = fs.glob(root, detail=True)
        base = _GLOB.split(root, 1)[0].rsplit("/", 1)[0]
    elif fs.isdir(root):
        found = fs.find(root, detail=True)
        base = root.rstrip("/")
    elif fs.exists(root):
        found = {root: fs.info(root)}
        base = root.rsplit("/", 1)[0]
    else:
        raise DatasetFormatError(f"{path}: no such file or folder (expected a file, a folder, a glob or Hive-partitioned folders)")
    parts = []
    for name, info in sorted(found.items()):
        if info.get("type") == "directory":
            continue
        label = name[len(base) :].lstrip("/") if name.startswith(base) else name.rsplit("/", 1)[-1]
        if any(seg.startswith((".", "_")) for seg in label.split("/")):
            continue
        fmt = _format_of(label, declared_format)
        if fmt is None:
            raise DatasetFormatError(f"{path}: {label} is neither Parquet (.parquet) nor CSV (.csv, .csv.gz); remove it or set format")
        if local:
            st = os.stat(name)
            token = f"{st.st_size}|{st.st_mtime_ns}"
            url = name
        else:
            etag = info.get("ETag") or info.get("etag")
            token = f"etag:{str(etag).strip(chr(34))}|{info.get('size')}" if etag else f"{info.get('size')}|{info.get('LastModified') or info.get('mtime')}"
            url = fs.unstrip_protocol(name)
        parts.append(Part(url, label, token, fmt, local))
    if not parts:
        raise DatasetFormatError(f"{path}: no Parquet or CSV files found")
    return parts


def part_digests(parts: list[Part], cache_file: Path | None = None) -> dict[str, str]:
    """label -> content digest. A bucket's ETag is one already; a local file is hashed once per (size, mtime)."""
    cache: dict[str, str] = {}
    if cache_file is not None and cache_file.exists():
        try:
            cache = json.loads(cache_file.read_text())
        except ValueError:
            cache = {}
    out, changed = {}, False
    for part in parts:
        if part.token.startswith("etag:"):
            out[part.label] = part.token
            continue
        key = f"{part.url}|{part.token}"
        digest = cache.get(key)
        if digest is None:
            h = hashlib.sha256()
            with fsspec.open(part.url, "rb") as f:
                while block := f.read(1 << 22):
                    h.update(block)
            digest = cache[key] = h.hexdigest()
            changed = True
        out[part.label] = digest
    if cache_file is not None and changed:
        _write_json(cache_file, cache)
    return out


# ----------------------------------------------------------------------------- one part -> a piece


@dataclass
class Piece:
    """One part read and validated: ``table`` (user, item, timestamp, rating, row) and its rejects."""

    label: str
    table: pa.Table
    rejects: pa.Table
    n_read: int
    kinds: dict[str, str]  # user / item: int | string; timestamp: how it was read (epoch_s, iso, ...)


def _read_columns(part: Part, names: list[str]) -> pa.Table:
    """The named columns of one file; a missing one is a DatasetFormatError naming the file and what it has."""
    if part.format == "parquet":
        with fsspec.open(part.url, "rb") as f:
            pf = pq.ParquetFile(f)
            have = pf.schema_arrow.names
            _check_columns(part, names, have)
            return pf.read(columns=names)
    with fsspec.open(part.url, "rb", compression="infer") as f:
        data = f.read()
    try:
        header = pacsv.read_csv(
            pa.py_buffer(data), read_options=pacsv.ReadOptions(block_size=1 << 16), convert_options=pacsv.ConvertOptions(include_columns=[])
        )
        have = header.column_names
    except pa.ArrowInvalid as exc:
        raise DatasetFormatError(f"{part.label}: not a readable CSV file ({exc})") from None
    _check_columns(part, names, have)
    try:
        return pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(block_size=1 << 24),
            convert_options=pacsv.ConvertOptions(
                include_columns=names, column_types={n: pa.string() for n in names}, strings_can_be_null=False, null_values=[]
            ),
        )
    except pa.ArrowInvalid as exc:
        raise DatasetFormatError(f"{part.label}: CSV rows do not parse ({exc})") from None


def _check_columns(part: Part, names: list[str], have: list[str]) -> None:
    missing = [n for n in names if n not in have]
    if missing:
        raise DatasetFormatError(f"{part.label}: mapped column(s) {missing} not in the file; its columns are {have}")


def _mapping(spec) -> dict[str, str]:
    """canonical field -> source column, for the fields the spec maps."""
    c = spec.columns
    out = {"user": c.user, "item": c.item, "timestamp": c.timestamp}
    if c.rating is not None:
        out["rating"] = c.rating
    if c.weight is not None:
        out["weight"] = c.weight
    return out


def read_part(part: Part, spec: TableSource, table: pa.Table | None = None) -> Piece:
    """Read one part (or convert an already read ``table``, e.g. a SQL chunk) into a validated piece."""
    mapping = _mapping(spec)
    if table is None:
        table = _read_columns(part, list(mapping.values()))
    first_row = 2 if part.format == "csv" else 1
    n = table.num_rows
    rows = np.arange(first_row, first_row + n, dtype=np.int64)
    rejects = Rejects()
    bad = np.zeros(n, bool)

    def reject(mask: np.ndarray, reason: str) -> None:
        mask = mask & ~bad
        if mask.any():
            idx = np.flatnonzero(mask)
            raws = [json.dumps(r, default=str, ensure_ascii=False) for r in table.take(pa.array(idx)).to_pylist()]
            rejects.add(part.label, rows[idx], reason, raws)
            bad[idx] = True

    kinds: dict[str, str] = {}
    ids = {}
    for field in ("user", "item"):
        values, missing, kinds[field] = _ids(table.column(mapping[field]), part, mapping[field])
        reject(missing, S.MISSING_FIELD)
        ids[field] = values
    ts, ts_ok, ts_empty, kinds["timestamp"] = _timestamps(table.column(mapping["timestamp"]), spec.timestamp_unit, part, mapping["timestamp"])
    reject(ts_empty, S.MISSING_FIELD)
    reject(~ts_ok, S.BAD_TIMESTAMP)
    if "rating" in mapping or "weight" in mapping:
        which = "rating" if "rating" in mapping else "weight"
        value, ok, empty = _numbers(table.column(mapping[which]))
        reject(empty, S.MISSING_FIELD)
        reject(~ok, S.NON_NUMERIC)
        if which == "rating" and spec.rating_scale is not None:
            lo, hi = spec.rating_scale
            reject((value < lo) | (value > hi), S.RATING_OUT_OF_RANGE)
        if which == "weight":
            reject(value <= 0, S.NON_POSITIVE_WEIGHT)
    else:
        value = np.ones(n, np.float64)
    keep = pa.array(~bad)
    piece = pa.table(
        {
            "user": ids["user"].filter(keep),
            "item": ids["item"].filter(keep),
            "timestamp": pa.array(ts[~bad]),
            "rating": pa.array(value[~bad].astype(np.float32)),
            "row": pa.array(rows[~bad]),
        }
    )
    return Piece(part.label, piece, rejects.table(), n, kinds)


def _ids(col: pa.ChunkedArray, part: Part, name: str) -> tuple[pa.Array, np.ndarray, str]:
    """(ids as int64 or trimmed strings, rows with no id, "int" | "string")."""
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    t = col.type
    if pa.types.is_dictionary(t):
        col, t = col.dictionary_decode(), t.value_type
    if pa.types.is_integer(t):
        missing = col.is_null().to_numpy(zero_copy_only=False)
        return pc.fill_null(col, 0).cast(pa.int64()), missing, "int"
    if pa.types.is_floating(t):
        vals = col.to_numpy(zero_copy_only=False)
        whole = np.isfinite(vals) & (vals == np.round(vals))
        if not whole[~np.isnan(vals)].all():
            raise DatasetFormatError(f"{part.label}: id column {name!r} holds non-integer numbers ({t}); ids must be integers or text")
        return pa.array(np.where(whole, vals, 0).astype(np.int64)), ~whole, "int"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        s = pc.utf8_trim_whitespace(col.cast(pa.string()))
        missing = (pc.fill_null(pc.equal(pc.utf8_length(s), 0), True)).to_numpy(zero_copy_only=False)
        return pc.fill_null(s, ""), missing, "string"
    raise DatasetFormatError(f"{part.label}: id column {name!r} has type {t}; expected integers or text")


def _numbers(col) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(float64 values, parsed ok, empty) of a numeric or text column."""
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_decimal(col.type):
        empty = col.is_null().to_numpy(zero_copy_only=False)
        values = pc.fill_null(col.cast(pa.float64()), 0.0).to_numpy()
        return values, np.isfinite(values) | empty, empty
    values, ok, empty = to_float(pc.fill_null(col.cast(pa.string()), ""))
    return values, (ok & np.isfinite(values)) | empty, empty


_UNIT_SECONDS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _timestamps(col, unit: str, part: Part, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(epoch seconds, parsed ok, empty, how it was read). Empty rows count as ok here (a missing_field reject)."""
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    t = col.type
    n = len(col)
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        empty = col.is_null().to_numpy(zero_copy_only=False)
        as_ts = col.cast(pa.timestamp("s", tz=getattr(t, "tz", None)), safe=False) if pa.types.is_timestamp(t) else col.cast(pa.timestamp("s"))
        values = pc.fill_null(as_ts.cast(pa.int64()), 0).to_numpy()
        return values, np.ones(n, bool), empty, "timestamp" if pa.types.is_timestamp(t) else "date"
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        values, ok, empty = _numbers(col)
        kind = _epoch_kind(values, ok & ~empty, unit, part, name)
        if pa.types.is_integer(t):  # exact: no float rounding of ms / ns epochs
            ints = pc.fill_null(col.cast(pa.int64()), 0).to_numpy()
            return np.floor_divide(ints, _UNIT_SECONDS[kind.removeprefix("epoch_")]), ok, empty, kind
        return _epoch(values, ok & ~empty, kind), ok, empty, kind
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        raise DatasetFormatError(f"{part.label}: timestamp column {name!r} has type {t}; expected epoch numbers, ISO-8601 text or timestamps")
    s = pc.fill_null(pc.utf8_trim_whitespace(col.cast(pa.string())), "")
    empty = pc.equal(pc.utf8_length(s), 0).to_numpy(zero_copy_only=False)
    numeric = pc.match_substring_regex(s, _NUMBER).to_numpy(zero_copy_only=False)
    if unit in _UNIT_SECONDS or (unit == "auto" and (~empty).any() and numeric[~empty].mean() >= 0.5):  # the odd bad value is a reject
        values, ok, _ = to_float(s)
        ok &= np.isfinite(values)
        kind = _epoch_kind(values, ok & ~empty, unit, part, name)
        return _epoch(values, ok & ~empty, kind), ok | empty, empty, kind
    dt = pd.to_datetime(pd.Series(s.to_numpy(zero_copy_only=False), dtype=object).where(~empty, None), format="ISO8601", utc=True, errors="coerce")
    ok = dt.notna().to_numpy()
    values = np.zeros(n, np.int64)
    if ok.any():
        values[ok] = dt[ok].dt.as_unit("s").astype("int64").to_numpy()
    if unit == "auto" and (~empty).any() and not ok[~empty].any():
        raise DatasetFormatError(
            f"{part.label}: timestamp column {name!r} is neither epoch numbers nor ISO-8601 text (e.g. {s[int(np.flatnonzero(~empty)[0])].as_py()!r})"
        )
    return values, ok | empty, empty, "iso"


def _epoch_kind(values: np.ndarray, ok: np.ndarray, unit: str, part: Part, name: str) -> str:
    """``epoch_<unit>``: declared, or by the magnitude of the median (1e8..1e11 s, ..1e14 ms, ..1e17 us, else ns)."""
    if unit in _UNIT_SECONDS:
        return f"epoch_{unit}"
    if unit == "iso":
        raise DatasetFormatError(f"{part.label}: timestamp column {name!r} holds numbers but timestamp_unit is iso")
    if not ok.any():
        return "epoch_s"
    m = float(np.median(np.abs(values[ok])))
    for u, limit in (("s", 1e11), ("ms", 1e14), ("us", 1e17)):
        if m < limit:
            return f"epoch_{u}"
    return "epoch_ns"


def _epoch(values: np.ndarray, ok: np.ndarray, kind: str) -> np.ndarray:
    per = _UNIT_SECONDS[kind.removeprefix("epoch_")]
    out = np.zeros(len(values), np.int64)
    out[ok] = np.floor(values[ok] / per).astype(np.int64)
    return out


# ----------------------------------------------------------------------------- the piece cache


_CODE = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]  # the reader as imported: a new version reads every part again


def _reading_token(spec: TableSource) -> str:
    """What changes a piece for the same file: the mapping, the timestamp unit, the rating scale, this module's code."""
    fields = {"columns": spec.columns.model_dump(), "timestamp_unit": spec.timestamp_unit, "rating_scale": spec.rating_scale, "format": spec.format}
    return hashlib.sha256(json.dumps([PIECE_VERSION, _CODE, fields], sort_keys=True).encode()).hexdigest()[:16]


class PieceCache:
    """Validated pieces by (label, content digest, reading settings), under ``<folder>/pieces``; written atomically."""

    def __init__(self, folder: Path, spec: TableSource):
        self.folder = Path(folder) / "pieces"
        self.token = _reading_token(spec)

    def key(self, label: str, digest: str) -> str:
        return hashlib.sha256(f"{self.token}|{label}|{digest}".encode()).hexdigest()[:24]

    def load(self, key: str) -> Piece | None:
        data, rej = self.folder / f"{key}.parquet", self.folder / f"{key}.rejects.parquet"
        if not (data.exists() and rej.exists()):
            return None
        try:
            table = pq.read_table(data)
            meta = json.loads(table.schema.metadata[b"recflow"])
            rejects = pq.read_table(rej) if meta.get("n_rejects", 1) else S.REJECTS.empty_table()
            return Piece(meta["label"], table.replace_schema_metadata(None), rejects, meta["n_read"], meta["kinds"])
        except (OSError, KeyError, ValueError, pa.ArrowInvalid):
            return None  # a damaged piece is read again from its part

    def keep_only(self, keys: set[str]) -> None:
        """Drop the pieces of partitions that are gone or changed (the cache holds one piece per current part)."""
        for path in self.folder.glob("*.parquet") if self.folder.exists() else ():
            if path.name.split(".", 1)[0] not in keys:
                path.unlink(missing_ok=True)

    def save(self, key: str, piece: Piece) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        meta = {"label": piece.label, "n_read": piece.n_read, "kinds": piece.kinds, "n_rejects": piece.rejects.num_rows}
        table = piece.table.replace_schema_metadata({"recflow": json.dumps(meta)})
        for path, t in ((self.folder / f"{key}.rejects.parquet", piece.rejects), (self.folder / f"{key}.parquet", table)):
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            pq.write_table(t, tmp, compression="zstd")
            os.replace(tmp, path)


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=0, sort_keys=True))
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- ingest


def ingest_table(
    spec: TableSource,
    out_dir: Path,
    cache_dir: Path,
    *,
    max_reject_fraction: float = 0.001,
    parts: list[Part] | None = None,
    digests: dict[str, str] | None = None,
    describe_as: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Ingest a table source into ``out_dir`` (ratings, items, rejects, id mappings); return its summary.

    Only parts without a cached piece are read (new or changed ones); ``partitions`` in the summary
    counts them, and lists what changed since this cache folder's last ingest: a changed old
    partition (a late correction) is named with its rows before and after, as a note. Raises
    ``TooManyRejectsError`` after writing every table when the rejects exceed the budget.
    """
    out_dir, cache_dir = Path(out_dir), Path(cache_dir)
    parts = parts if parts is not None else list_parts(spec.path, spec.format)
    digests = digests if digests is not None else part_digests(parts, cache_dir / "digests.json")
    cache = PieceCache(cache_dir, spec)
    state_file = cache_dir / "state.json"
    previous = _read_state(state_file)
    keys = {p.label: cache.key(p.label, digests[p.label]) for p in parts}
    read: list[str] = []
    loaded: dict[str, Piece] = {}

    def piece(part: Part) -> Piece:
        if part.label not in loaded:
            found = cache.load(keys[part.label])
            if found is None:
                found = read_part(part, spec)
                cache.save(keys[part.label], found)
                read.append(part.label)
            loaded[part.label] = found
        return loaded[part.label]

    describe_as = describe_as or {"source": "table", "path": spec.path}
    items_digest = None
    if spec.items is not None:
        items_digest = hashlib.sha256(json.dumps(sorted(part_digests(list_parts(spec.items.path), cache_dir / "digests.json").items())).encode()).hexdigest()
    combined = Combined(cache_dir / "combined", spec, items_digest)
    prior = combined.prior(set(keys.values()))
    summary, appended = None, False
    if prior is not None:  # every piece of the last combine is still here: append the new ones to its tables
        new_parts = [p for p in parts if keys[p.label] not in prior["keys"]]
        summary = append(combined, prior, [piece(p) for p in new_parts], [keys[p.label] for p in new_parts], spec, out_dir, describe_as)
    appended = summary is not None
    if summary is None:
        summary = combine([piece(p) for p in parts], spec, out_dir, describe_as=describe_as, keep=(combined, [keys[p.label] for p in parts]))
    for p in parts:  # a piece the last combine used but this cache's partition state lost: open it for its counts
        if p.label not in loaded and previous.get(p.label, {}).get("digest") != digests[p.label]:
            piece(p)
    current = {
        p.label: (
            {"digest": digests[p.label], "rows": loaded[p.label].n_read, "kept": loaded[p.label].table.num_rows}
            if p.label in loaded
            else previous[p.label]  # reused without being opened: its digest is the one the last ingest saw
        )
        for p in parts
    }
    partitions, notes = _changes(previous, current, read)
    partitions["combine"] = "append" if appended else "full"  # append: only the new rows were processed
    summary["partitions"] = partitions
    if notes:
        summary["notes"] = [*notes, *summary.get("notes", [])]
    _write_json(state_file, {"parts": current})
    cache.keep_only(set(keys.values()))
    _check_budget(summary, out_dir, max_reject_fraction)
    return summary


def _read_state(path: Path) -> dict[str, dict]:
    try:
        return json.loads(path.read_text())["parts"]
    except (OSError, ValueError, KeyError):
        return {}


def _changes(previous: dict[str, dict], current: dict[str, dict], read: list[str]) -> tuple[dict[str, Any], list[str]]:
    """What the summary says about partitions: counts, and what is new, changed or gone since the last ingest."""
    new = [k for k in current if k not in previous]
    changed = [k for k in current if k in previous and previous[k]["digest"] != current[k]["digest"]]
    removed = [k for k in previous if k not in current]
    info: dict[str, Any] = {"total": len(current), "read": len(read), "reused": len(current) - len(read), "new": len(new), "changed": len(changed)}
    info["removed"] = len(removed)
    if previous:
        info["new_partitions"] = new[:_MAX_LISTED]
    info["changed_partitions"] = [
        {"partition": k, **{f"{what}_{when}": state[k][what] for what in ("rows", "kept") for when, state in (("before", previous), ("after", current))}}
        for k in changed[:_MAX_LISTED]
    ]
    info["removed_partitions"] = removed[:_MAX_LISTED]
    notes = []
    for c in info["changed_partitions"]:
        delta = c["kept_after"] - c["kept_before"]
        notes.append(
            f"late correction: {c['partition']} changed since the last ingest ({c['kept_before']} -> {c['kept_after']} interactions kept, "
            f"{delta:+d}); it was read again, so the split and every model downstream see the corrected data"
        )
    for k in removed[:_MAX_LISTED]:
        notes.append(f"partition {k} is gone since the last ingest: its {previous[k]['kept']} interactions are no longer in the data")
    return info, notes


def _check_budget(summary: dict[str, Any], out_dir: Path, max_reject_fraction: float) -> None:
    n_read, n_rej = summary["rows_read"], summary["rows_rejected"]
    if n_read and n_rej / n_read > max_reject_fraction:
        rejects = Rejects()
        table = pq.read_table(out_dir / "rejects.parquet")
        files, reasons = table.column("source_file").to_numpy(zero_copy_only=False), table.column("reason").to_numpy(zero_copy_only=False)
        for reason in np.unique(reasons):
            for f in np.unique(files[reasons == reason]):
                k = int(((files == f) & (reasons == reason)).sum())
                rejects.add(str(f), np.zeros(k, np.int64), str(reason), [""] * k)
        raise TooManyRejectsError(too_many_rejects_message(rejects, n_read, max_reject_fraction, out_dir / "rejects.parquet", summary["rows_read_by_file"]))


# ----------------------------------------------------------------------------- combine


def _agree(pieces: list[Piece]) -> dict[str, str]:
    """Each field's kind, the same in every non-empty piece; partitions that disagree are a DatasetFormatError."""
    seen: dict[str, tuple[str, str]] = {}
    for p in pieces:
        if not p.table.num_rows:
            continue
        for field, kind in p.kinds.items():
            if field not in seen:
                seen[field] = (kind, p.label)
            elif seen[field][0] != kind:
                first_kind, first_label = seen[field]
                raise DatasetFormatError(
                    f"{p.label}: {field} column read as {kind} but as {first_kind} in {first_label}; every partition must have the same schema"
                )
    return {f: k for f, (k, _) in seen.items()}


@dataclass
class _Ids:
    codes: np.ndarray  # int64 per row: the raw id itself ("int") or its rank among the distinct raw ids ("mapped")
    raw: pa.Array | None  # distinct raw ids (sorted) for "mapped"
    how: str


def _resolve(values: pa.ChunkedArray, kind: str) -> _Ids:
    if kind == "int":
        return _Ids(values.to_numpy().astype(np.int64, copy=False), None, "int")
    values = values.cast(pa.string())
    if len(values) and pc.all(pc.match_substring_regex(values, _CANONICAL_INT)).as_py():
        return _Ids(pc.cast(values, pa.int64()).to_numpy(), None, "int")
    uniq = pc.unique(values)
    uniq = uniq.take(pc.sort_indices(uniq))
    return _Ids(pc.index_in(values, value_set=uniq).to_numpy().astype(np.int64), uniq, "mapped")


def _dense(codes: np.ndarray, ts: np.ndarray, n_codes: int, listed: np.ndarray | None = None) -> np.ndarray:
    """code -> dense id 1..n by first interaction (ties: raw order); ``listed`` codes without a row (catalogue
    items) come after, in raw order; codes with neither (every row rejected) get 0 and no id."""
    first = np.full(n_codes, np.iinfo(np.int64).max)
    present = np.zeros(n_codes, bool)
    present[codes] = True
    if listed is not None:
        present[listed] = True
    if len(codes):
        mins = pd.Series(ts).groupby(codes).min()
        first[mins.index.to_numpy()] = mins.to_numpy()
    kept = np.flatnonzero(present)
    order = kept[np.lexsort((kept, first[kept]))]
    dense = np.zeros(n_codes, np.int64)
    dense[order] = np.arange(1, len(order) + 1)
    return dense


def combine(
    pieces: list[Piece],
    spec: TableSource,
    out_dir: Path,
    *,
    describe_as: dict[str, Any],
    keep: tuple[Combined, list[str]] | None = None,
) -> dict[str, Any]:
    """Validated pieces -> the canonical tables in ``out_dir``; returns the summary (the budget is checked by the caller).

    ``keep``: where to remember this combine (and the piece keys it used) for the next ``append``.
    """
    kinds = _agree(pieces)
    kinds.setdefault("user", "int")
    kinds.setdefault("item", "int")
    rejects = Rejects()
    tables = [p.table for p in pieces]
    labels = np.array([p.label for p in pieces], dtype=object)
    file_of = np.repeat(np.arange(len(pieces)), [t.num_rows for t in tables])

    def column(name: str, kind: str | None = None) -> pa.ChunkedArray:
        return _column(tables, name, kind)

    ts = column("timestamp").to_numpy().astype(np.int64, copy=False)
    rating = column("rating").to_numpy().astype(np.float32, copy=False)
    rows = column("row").to_numpy().astype(np.int64, copy=False)
    catalogue = read_items(spec.items, rejects) if spec.items is not None else None
    item_kind = "string" if catalogue is not None and "string" in (kinds["item"], catalogue.kind) else kinds["item"]
    user_ids = _resolve(column("user", kinds["user"]), kinds["user"])
    item_values = column("item", item_kind)
    if catalogue is not None:
        cat_ids = catalogue.ids.cast(pa.string()) if item_kind == "string" else catalogue.ids
        both = _resolve(pa.chunked_array([*item_values.chunks, cat_ids], item_values.type), item_kind)
        n_rows = len(item_values)
        item_ids = _Ids(both.codes[:n_rows], both.raw, both.how)
        cat_codes = both.codes[n_rows:]
    else:
        item_ids = _resolve(item_values, item_kind)
        cat_codes = None

    def reject(mask: np.ndarray, reason: str) -> None:
        _reject_rows(rejects, np.flatnonzero(mask), reason, column, ts, rating, rows, file_of, labels)

    kept = np.ones(len(ts), bool)
    if cat_codes is not None:
        unknown = ~membership(item_ids.codes, cat_codes)
        reject(unknown, S.UNKNOWN_ITEM)
        kept &= ~unknown
    policy = spec.duplicate_policy
    repeated = _repeats(user_ids.codes, item_ids.codes, ts, rating, file_of, rows, kept, policy)
    collapsed = 0
    if repeated.any():
        if policy == "reject":
            reject(repeated, S.DUPLICATE_USER_ITEM)
        else:
            collapsed = int(repeated.sum())
        kept &= ~repeated

    u, i, t, r = user_ids.codes[kept], item_ids.codes[kept], ts[kept], rating[kept]
    maps: dict[str, pa.Table] = {}
    if user_ids.how == "mapped":
        dense = _dense(u, t, len(user_ids.raw))
        u = dense[u]
        maps["user_ids"] = _mapping_table(dense, user_ids.raw)
    if item_ids.how == "mapped":
        dense = _dense(i, t, len(item_ids.raw), cat_codes)
        i = dense[i]
        if cat_codes is not None:
            cat_codes = dense[cat_codes]
        maps["item_ids"] = _mapping_table(dense, item_ids.raw)
    order = _canonical_order(t, u, i)
    if order is not None:
        u, i, t, r = u[order], i[order], t[order], r[order]
    read_by_file = {p.label: p.n_read for p in pieces}
    if catalogue is not None:
        read_by_file.update(catalogue.n_read)
    outputs = Outputs(u, i, t, r, maps, _items_table(i, maps.get("item_ids"), catalogue, cat_codes), [*(p.rejects for p in pieces), rejects.table()])
    history = {"read_by_file": read_by_file, "collapsed": collapsed, "kinds": kinds, "ids": {"user": user_ids.how, "item": item_ids.how}}
    summary = _finish(outputs, history, spec, out_dir, describe_as)
    if keep is not None:
        keep[0].save(out_dir, keep[1], history, outputs)
    return summary


def _column(tables: list[pa.Table], name: str, kind: str | None = None) -> pa.ChunkedArray:
    """One column of every piece, end to end; ids cast to one kind (``int`` or ``string``) when given."""
    chunks = [t.column(name) for t in tables]
    if kind == "int":
        chunks = [c.cast(pa.int64()) for c in chunks]
    elif kind == "string":
        chunks = [c.cast(pa.string()) for c in chunks]
    return pa.chunked_array([ch for c in chunks for ch in c.chunks], chunks[0].type if chunks else pa.int64())


# ----------------------------------------------------------------------------- append: a night's new pieces onto the last combine


class Combined:
    """The last combine's tables and what it was made of, under ``<cache>/combined/<generation>/``.

    ``current.json`` names the generation and is replaced last, so a crash mid-way leaves the previous
    one in force. Its token holds the items table's digest: a changed catalogue is never appended to.
    """

    def __init__(self, folder: Path, spec: TableSource, items_digest: str | None = None):
        self.folder = Path(folder)
        self.token = hashlib.sha256(f"{_reading_token(spec)}|{spec.duplicate_policy}|{items_digest}|{spec.items}".encode()).hexdigest()[:16]

    def prior(self, keys: set[str]) -> dict[str, Any] | None:
        """The last combine's record when every piece it used is among ``keys`` (nothing changed or vanished)."""
        try:
            state = json.loads((self.folder / "current.json").read_text())
        except (OSError, ValueError):
            return None
        gen = self.folder / state.get("generation", "")
        if state.get("token") != self.token or not set(state["keys"]) <= keys or not (gen / "ratings.parquet").is_dir() or "n_ratings" not in state:
            return None
        return {**state, "keys": set(state["keys"]), "dir": gen}

    def save(self, out_dir: Path, keys: list[str], history: dict[str, Any], out: Outputs) -> None:
        pairs = out.pairs if out.pairs is not None else _pairs(out.u, out.i)
        gen_name = hashlib.sha256("|".join(sorted(keys)).encode()).hexdigest()[:16] + f"-{os.getpid()}"
        gen = self.folder / gen_name
        gen.mkdir(parents=True, exist_ok=True)
        for name in ("items", "rejects", *out.maps):
            _link(out_dir / f"{name}.parquet", gen / f"{name}.parquet")
        (gen / "ratings.parquet").mkdir(exist_ok=True)
        for piece in sorted((out_dir / "ratings.parquet").iterdir()):
            _link(piece, gen / "ratings.parquet" / piece.name)
        if pairs is not None:
            np.save(gen / "pairs.npy", pairs)
        stats = out.stats
        np.save(gen / "users.npy", stats["users"])
        np.save(gen / "items.npy", stats["items"])
        state = {
            "generation": gen_name,
            "token": self.token,
            "keys": sorted(keys),
            "n_ratings": stats["n_ratings"],
            "ts_max": stats["ts_max"],
            "rating_range": stats["rating_range"],
            "pairs": pairs is not None,
            **history,
        }
        old = None
        with contextlib.suppress(OSError, ValueError):
            old = json.loads((self.folder / "current.json").read_text()).get("generation")
        _write_json(self.folder / "current.json", state)
        if old and old != gen_name:
            shutil.rmtree(self.folder / old, ignore_errors=True)


def _link(src: Path, dst: Path) -> None:
    """A hard link (the stage folder's file is immutable; the link keeps its bytes when gc removes the folder), else a copy."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _pairs(u: np.ndarray, i: np.ndarray) -> np.ndarray | None:
    """Sorted (user_id << 32 | item_id) keys, or None when ids do not fit 32 bits (then every night combines in full)."""
    if len(u) and (int(u.min()) < 0 or int(i.min()) < 0 or int(u.max()) >= 1 << 31 or int(i.max()) >= 1 << 32):
        return None
    return np.sort((u.astype(np.int64) << 32) | i.astype(np.int64))


def append(
    combined: Combined, prior: dict[str, Any], pieces: list[Piece], keys: list[str], spec: TableSource, out_dir: Path, describe_as: dict[str, Any]
) -> dict[str, Any] | None:
    """The last combine's tables plus ``pieces`` (the new partitions), written as ``combine`` would write them all.

    Exact only when the new rows all come after the old ones (every timestamp later than the last
    combine's latest, so the old rows keep their order, their ids and their claim on a repeated pair),
    the policy keeps the first of a repeated pair and, with an items table, the catalogue is unchanged
    and item ids are integers; otherwise returns None and the caller combines every piece. Costs the
    new rows plus one read and write of the old tables: no sort of the old rows, no re-mapping of
    their ids (new ids are numbered after the old), repeats found by binary search in the last
    combine's sorted pair keys.
    """
    if not prior["pairs"] or spec.duplicate_policy == "last" or prior["ts_max"] is None:
        return None
    tables = [p.table for p in pieces]
    ts = _column(tables, "timestamp").to_numpy().astype(np.int64, copy=False) if tables else np.zeros(0, np.int64)
    if len(ts) and int(ts.min()) <= prior["ts_max"]:
        return None  # a late event: its rows interleave with the old ones
    kinds = {**prior["kinds"]}
    for f, k in (_agree(pieces) if pieces else {}).items():
        if kinds.setdefault(f, k) != k:
            return None  # the full combine names the partitions that disagree
    gen = prior["dir"]
    rating = _column(tables, "rating").to_numpy().astype(np.float32, copy=False) if tables else np.zeros(0, np.float32)
    rows = _column(tables, "row").to_numpy().astype(np.int64, copy=False) if tables else np.zeros(0, np.int64)
    labels = np.array([p.label for p in pieces], dtype=object)
    file_of = np.repeat(np.arange(len(pieces)), [t.num_rows for t in tables])
    ids, maps = {}, {}
    for field in ("user", "item"):
        how = prior["ids"][field]
        values = _column(tables, field, kinds.get(field)) if tables else pa.chunked_array([], pa.int64())
        if how == "int":
            if kinds.get(field) == "string":
                if len(values) and not pc.all(pc.match_substring_regex(values, _CANONICAL_INT)).as_py():
                    return None  # text ids that stop being integers: the full combine maps them all
                values = pc.cast(values, pa.int64())
            ids[field] = values.to_numpy().astype(np.int64, copy=False) if len(values) else np.zeros(0, np.int64)
        else:
            old = pq.read_table(gen / f"{field}_ids.parquet")
            found = pc.index_in(values, value_set=old.column("raw")) if len(values) else pa.chunked_array([], pa.int32())
            known = found.is_valid().to_numpy(zero_copy_only=False) if len(values) else np.zeros(0, bool)
            codes = pc.fill_null(found, -1).to_numpy().astype(np.int64) + 1 if len(values) else np.zeros(0, np.int64)
            n_old = old.num_rows
            fresh = values.filter(pa.array(~known)) if (~known).any() else None
            if fresh is not None:
                raw_new = pc.unique(fresh.combine_chunks())
                raw_new = raw_new.take(pc.sort_indices(raw_new))
                codes[~known] = n_old + 1 + pc.index_in(fresh, value_set=raw_new).to_numpy().astype(np.int64)
            ids[field] = codes
            maps[field] = (old, raw_new if fresh is not None else None, n_old)
    u, i = ids["user"], ids["item"]
    rejects = Rejects()
    old_items = pq.read_table(gen / "items.parquet")
    unknown = np.zeros(len(i), bool)
    if spec.items is not None:
        if prior["ids"]["item"] != "int":
            return None  # a catalogue item's first interaction renumbers mapped ids: the full combine does
        unknown = ~membership(i, old_items.column("item_id").to_numpy())
        _reject_rows(rejects, np.flatnonzero(unknown), S.UNKNOWN_ITEM, lambda n, k=None: _column(tables, n, k), ts, rating, rows, file_of, labels)
    if len(u) and (int(u.min()) < 0 or int(u.max()) >= 1 << 31 or int(i.min()) < 0 or int(i.max()) >= 1 << 32):
        return None
    old_pairs = np.load(gen / "pairs.npy", mmap_mode="r")
    key = (u << 32) | i
    in_old = np.zeros(len(key), bool)
    if len(old_pairs) and len(key):
        in_old = old_pairs[np.minimum(np.searchsorted(old_pairs, key), len(old_pairs) - 1)] == key
    repeated = ~unknown & (in_old | _repeats(u, i, ts, rating, file_of, rows, ~in_old & ~unknown, spec.duplicate_policy))
    collapsed = prior["collapsed"]
    if repeated.any():
        if spec.duplicate_policy == "reject":
            _reject_rows(rejects, np.flatnonzero(repeated), S.DUPLICATE_USER_ITEM, lambda n, k=None: _column(tables, n, k), ts, rating, rows, file_of, labels)
        else:
            collapsed += int(repeated.sum())
    kept = ~repeated & ~unknown
    u, i, t, r = u[kept], i[kept], ts[kept], rating[kept]
    for field, arr in (("user", u), ("item", i)):
        if field not in maps:
            continue
        old, raw_new, n_old = maps[field]
        if raw_new is None:
            maps[field] = old
            continue
        fresh_codes = arr[arr > n_old] - n_old - 1  # temporary codes: ranks among the new raw ids
        dense = _dense(fresh_codes, t[arr > n_old], len(raw_new)) + n_old
        arr[arr > n_old] = dense[fresh_codes]
        extra = _mapping_table(dense - n_old, raw_new)
        maps[field] = pa.concat_tables([old, extra.set_column(0, "id", pc.add(extra.column("id"), n_old))])
    order = _canonical_order(t, u, i)
    if order is not None:
        u, i, t, r = u[order], i[order], t[order], r[order]
    n_before = prior["n_ratings"]
    full = n_before // RATINGS_PIECE_ROWS  # old pieces that stay as they are; the last, shorter one is read and written again
    kept_pieces = [gen / "ratings.parquet" / _piece_name(k) for k in range(full)]
    tail = pq.read_table(gen / "ratings.parquet" / _piece_name(full)) if n_before % RATINGS_PIECE_ROWS else None
    all_u, all_i, all_t, all_r = (
        np.concatenate([tail.column(c).to_numpy(), new]) if tail is not None else new
        for c, new in (("user_id", u), ("item_id", i), ("timestamp", t), ("rating", r))
    )
    del tail
    rr = [x for x in (prior["rating_range"], [float(r.min()), float(r.max())] if len(r) else None) if x]
    stats = {
        "n_ratings": n_before + len(u),
        "users": np.union1d(np.load(gen / "users.npy"), u),
        "items": np.union1d(np.load(gen / "items.npy"), i),
        "ts_max": int(t.max()) if len(t) else prior["ts_max"],
        "rating_range": [min(x[0] for x in rr), max(x[1] for x in rr)] if rr else None,
    }
    new_key = np.sort((u << 32) | i)
    pairs = np.insert(np.asarray(old_pairs), np.searchsorted(old_pairs, new_key), new_key)
    fresh_items = np.setdiff1d(distinct(i), old_items.column("item_id").to_numpy())
    if len(fresh_items) and spec.items is None:  # a catalogue lists every item already
        mapping = maps.get("item")
        titles = mapping.column("raw").take(pa.array(fresh_items - 1)).cast(pa.string()) if mapping is not None else pa.array([str(x) for x in fresh_items])
        more = _untitled_items(fresh_items, titles)
        old_items = pa.concat_tables([old_items, more])
        old_items = old_items.take(pc.sort_indices(old_items, [("item_id", "ascending")]))
    out = Outputs(
        all_u, all_i, all_t, all_r,
        {f"{k}_ids": v for k, v in maps.items()},
        old_items,
        [pq.read_table(gen / "rejects.parquet"), *(p.rejects for p in pieces), rejects.table()],
        pairs,
        kept_pieces,
        stats,
    )  # fmt: skip
    history = {
        "read_by_file": {**prior["read_by_file"], **{p.label: p.n_read for p in pieces}},
        "collapsed": collapsed,
        "kinds": kinds,
        "ids": prior["ids"],
    }
    summary = _finish(out, history, spec, out_dir, describe_as)
    combined.save(out_dir, sorted(prior["keys"] | set(keys)), history, out)
    return summary


@dataclass
class Outputs:
    """The canonical tables of one ingest, before writing: ratings as arrays, the rest as Arrow tables.

    ``u, i, t, r`` are the ratings from row ``len(kept) * RATINGS_PIECE_ROWS`` on; ``kept`` are the
    earlier (full, unchanged) pieces of the last combine, linked rather than written again, and
    ``stats`` what the summary says of every row (an append knows it without reading the old rows).
    """

    u: np.ndarray
    i: np.ndarray
    t: np.ndarray
    r: np.ndarray
    maps: dict[str, pa.Table]
    items: pa.Table
    rejects: list[pa.Table]
    pairs: np.ndarray | None = None  # sorted (user_id << 32 | item_id), when ``append`` computed it already
    kept: list[Path] = dc_field(default_factory=list)
    stats: dict[str, Any] | None = None  # n_ratings, users / items (sorted distinct ids), ts_max, rating_range

    def __post_init__(self) -> None:
        if self.stats is None:
            self.stats = {
                "n_ratings": len(self.u),
                "users": distinct(self.u) if len(self.u) else np.zeros(0, np.int64),
                "items": distinct(self.i) if len(self.i) else np.zeros(0, np.int64),
                "ts_max": int(self.t.max()) if len(self.t) else None,
                "rating_range": [float(self.r.min()), float(self.r.max())] if len(self.r) else None,
            }


def _piece_name(k: int) -> str:
    return f"part-{k:05d}.parquet"


def write_ratings(out: Outputs, folder: Path) -> None:
    """``ratings.parquet`` as a folder of pieces of exactly ``RATINGS_PIECE_ROWS`` rows (the last one shorter).

    The cut depends only on the row number, so the same interactions give the same piece files
    (and the same stage manifest, hence fingerprint) whether they came in one ingest or night by
    night; a night links the unchanged full pieces and writes the last one and the new ones only.
    Readers see one table in canonical order: pyarrow (``pq.read_table``, ``pd.read_parquet``,
    ``pyarrow.dataset``) lists a folder's files sorted by name.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for k, src in enumerate(out.kept):
        _link(src, folder / _piece_name(k))
    first, n = len(out.kept), len(out.u)
    starts = range(0, n, RATINGS_PIECE_ROWS) if n or first else [0]  # no rows at all: one empty piece carries the schema
    for k, start in enumerate(starts):
        cut = slice(start, start + RATINGS_PIECE_ROWS)
        columns = {"user_id": out.u[cut], "item_id": out.i[cut], "rating": out.r[cut], "timestamp": out.t[cut]}
        table = S.conform({name: pa.array(values) for name, values in columns.items()}, S.RATINGS)
        pq.write_table(table, folder / _piece_name(first + k), **RATINGS_ENCODING)


def _finish(out: Outputs, history: dict[str, Any], spec: TableSource, out_dir: Path, describe_as: dict[str, Any]) -> dict[str, Any]:
    """Write the tables of ``out`` into ``out_dir`` and say what they hold (``combine`` and ``append`` alike)."""
    write_ratings(out, out_dir / "ratings.parquet")
    stats = out.stats
    counts = {"ratings": stats["n_ratings"]}
    counts["items"] = S.write_table(out.items, out_dir / "items.parquet", S.ITEMS)
    for name, table in sorted(out.maps.items()):
        pq.write_table(table, out_dir / f"{name}.parquet", compression="zstd")
        counts[name] = table.num_rows
    all_rejects = pa.concat_tables(out.rejects).cast(S.REJECTS)
    all_rejects = all_rejects.take(pc.sort_indices(all_rejects, [("source_file", "ascending"), ("line_number", "ascending")]))
    counts["rejects"] = S.write_table(all_rejects, out_dir / "rejects.parquet", S.REJECTS)
    read_by_file, collapsed, policy = history["read_by_file"], history["collapsed"], spec.duplicate_policy
    rejected_by_file = pd.Series(all_rejects.column("source_file").to_numpy(zero_copy_only=False)).value_counts().sort_index()
    reasons = pd.Series(all_rejects.column("reason").to_numpy(zero_copy_only=False)).value_counts().sort_index()
    implicit = spec.implicit
    scale = None if implicit else (list(spec.rating_scale) if spec.rating_scale else stats["rating_range"])
    summary: dict[str, Any] = {
        **describe_as,
        "feedback": "implicit" if implicit else "explicit",
        "timestamp": _timestamp_statement(spec, history["kinds"].get("timestamp")),
        "ids": dict(history["ids"]),
        "duplicates": policy,
        "duplicates_collapsed": collapsed,
        "rows_read": int(sum(read_by_file.values())),
        "rows_rejected": all_rejects.num_rows,
        "reject_reasons": {str(k): int(v) for k, v in reasons.items()},
        "rows_read_by_file": _listed(read_by_file, set(rejected_by_file.index)),
        "rows_rejected_by_file": {str(k): int(v) for k, v in rejected_by_file.items()},
        "n_ratings": counts["ratings"],
        "n_users": len(stats["users"]),
        "n_items": len(stats["items"]),
        "rating_scale": scale,
        "files": dict(sorted(counts.items())),
        "tmdb_matched": None,
    }
    notes = []
    if collapsed:
        notes.append(f"{collapsed} repeated (user, item) interactions collapsed into one each (duplicates: {policy}: the {policy} one kept)")
    if implicit:
        notes.append(
            "implicit feedback (no rating column): every interaction is a positive"
            + (f" weighted by {spec.columns.weight!r}" if spec.columns.weight else " with rating 1")
            + "; models that predict ratings are skipped"
        )
    if notes:
        summary["notes"] = notes
    return summary


def _reject_rows(rejects: Rejects, idx: np.ndarray, reason: str, column, ts, rating, rows, file_of, labels) -> None:
    """Record rows ``idx`` of the concatenated pieces as rejects, by file, with their raw fields as JSON."""
    if not len(idx):
        return
    take = pa.array(idx)
    raws = np.array(
        [
            json.dumps({"user": u, "item": i, "timestamp": int(t), "rating": float(r)}, default=str)
            for u, i, t, r in zip(column("user").take(take).to_pylist(), column("item").take(take).to_pylist(), ts[idx], rating[idx])
        ],
        dtype=object,
    )
    order = np.argsort(file_of[idx], kind="stable")
    files = file_of[idx][order]
    for group in np.split(order, np.flatnonzero(np.diff(files)) + 1):
        rejects.add(str(labels[file_of[idx[group[0]]]]), rows[idx[group]], reason, raws[group].tolist())


def n_distinct(ids: np.ndarray) -> int:
    """Distinct ids: a lookup table for dense non-negative ids (canonical ones are), else a sort."""
    if not len(ids):
        return 0
    if int(ids.min()) >= 0 and int(ids.max()) < max(4 * len(ids), 1 << 20):
        seen = np.zeros(int(ids.max()) + 1, bool)
        seen[ids] = True
        return int(seen.sum())
    return len(distinct(ids))


def _listed(read_by_file: dict[str, int], with_rejects: set[str]) -> dict[str, int]:
    """Rows read per file: every file when there are few; with many partitions, those with rejects (the rest are in the total)."""
    if len(read_by_file) <= _MAX_LISTED:
        return dict(sorted(read_by_file.items()))
    return {k: v for k, v in sorted(read_by_file.items()) if k in with_rejects}


def _repeats(u, i, ts, rating, file_of, rows, keep, policy: str) -> np.ndarray:
    """Rows that repeat a (user, item) pair among ``keep``: all but the earliest (by timestamp, rating, file, row) or, for ``last``, the latest."""
    out = np.zeros(len(u), bool)
    idx = np.flatnonzero(keep)
    if len(idx) < 2:
        return out
    span = int(i[idx].max()) - int(i[idx].min()) + 1
    key = (u[idx] - int(u[idx].min())) * span + (i[idx] - int(i[idx].min()))
    s = np.sort(key)
    dup_keys = distinct(s[1:][s[1:] == s[:-1]])  # sorted, so a lookup is a binary search (np.isin hashes: slower here)
    if not len(dup_keys):
        return out
    hit = dup_keys[np.minimum(np.searchsorted(dup_keys, key), len(dup_keys) - 1)] == key
    sel, k = idx[hit], key[hit]
    order = np.lexsort((rows[sel], file_of[sel], rating[sel], ts[sel], k))
    sel, k = sel[order], k[order]
    first = np.ones(len(k), bool)
    first[1:] = k[1:] != k[:-1]
    if policy == "last":
        last = np.ones(len(k), bool)
        last[:-1] = k[1:] != k[:-1]
        out[sel[~last]] = True
    else:
        out[sel[~first]] = True
    return out


def _canonical_order(t: np.ndarray, u: np.ndarray, i: np.ndarray) -> np.ndarray | None:
    """The permutation sorting rows by (timestamp, user_id, item_id); None when they already are (a time-ordered log)."""
    if len(t) < 2:
        return None
    ui = (u - int(u.min())) * (int(i.max()) - int(i.min()) + 1) + (i - int(i.min()))
    dt = np.diff(t)
    if (dt > 0).all() or ((dt >= 0).all() and (np.diff(ui)[dt == 0] > 0).all()):
        return None
    return np.lexsort((ui, t))


def _mapping_table(dense: np.ndarray, raw: pa.Array) -> pa.Table:
    order = np.flatnonzero(dense)
    order = order[np.argsort(dense[order])]
    return pa.table({"id": pa.array(dense[order]), "raw": raw.take(pa.array(order))})


def _timestamp_statement(spec: TableSource, kind: str | None) -> str:
    how = {"epoch_s": "epoch seconds", "epoch_ms": "epoch milliseconds", "epoch_us": "epoch microseconds", "epoch_ns": "epoch nanoseconds"}
    how |= {"iso": "ISO-8601 text (UTC where no zone is given)", "timestamp": "timestamps", "date": "dates"}
    said = how.get(kind or "", "no rows")
    return f"column {spec.columns.timestamp!r} read as {said} ({'declared' if spec.timestamp_unit != 'auto' else 'detected'})"


# ----------------------------------------------------------------------------- items


@dataclass
class Catalogue:
    ids: pa.Array  # raw item ids (int64 or string), one per kept row
    titles: list[str | None]
    genres: list[list[str]]
    years: list[int | None]
    n_read: dict[str, int]
    kind: str


def read_items(items: ItemsTable, rejects: Rejects) -> Catalogue:
    """The catalogue: one row per item id (a repeated id keeps its row with the smallest title: a reject each for the rest)."""
    c = items.columns
    mapping = {k: v for k, v in {"item": c.item, "title": c.title, "genres": c.genres, "year": c.year}.items() if v is not None}
    frames, n_read = [], {}
    for part in list_parts(items.path):
        table = _read_columns(part, list(dict.fromkeys(mapping.values())))
        n = table.num_rows
        label = f"items:{part.label}"
        n_read[label] = n
        ids, missing, kind = _ids(table.column(c.item), part, c.item)
        first_row = 2 if part.format == "csv" else 1
        rows = np.arange(first_row, first_row + n)
        if missing.any():
            rejects.add(label, rows[missing], S.MISSING_FIELD, [json.dumps(r, default=str) for r in table.filter(pa.array(missing)).to_pylist()])
        keep = pa.array(~missing)
        frame = pd.DataFrame({"id": ids.filter(keep).to_pylist(), "row": rows[~missing], "label": label})
        for field in ("title", "genres", "year"):
            if field in mapping:
                frame[field] = table.column(mapping[field]).filter(keep).to_pylist()
        frames.append((frame, kind))
    kinds = {k for _, k in frames}
    kind = "string" if "string" in kinds else "int"
    frame = pd.concat([f for f, _ in frames], ignore_index=True)
    if kind == "string":
        frame["id"] = frame["id"].astype(str)
    frame["_title"] = frame["title"].fillna("").astype(str) if "title" in frame else ""
    frame = frame.sort_values(["id", "_title", "label", "row"], kind="stable")
    dup = frame["id"].duplicated(keep="first").to_numpy()
    for label, group in frame[dup].groupby("label"):
        rejects.add(str(label), group["row"].to_numpy(), S.DUPLICATE_ITEM, [json.dumps({"item": x}, default=str) for x in group["id"]])
    frame = frame[~dup]
    titles = [None if t is None or pd.isna(t) else str(t) for t in frame["title"]] if "title" in frame else [None] * len(frame)
    genres = [_genre_list(g, items.genres_separator) for g in frame["genres"]] if "genres" in frame else [[] for _ in range(len(frame))]
    years = [None if y is None or pd.isna(y) else int(y) for y in frame["year"]] if "year" in frame else [None] * len(frame)
    ids = pa.array(frame["id"].tolist(), pa.string() if kind == "string" else pa.int64())
    return Catalogue(ids, titles, genres, years, n_read, kind)


def _genre_list(value, sep: str) -> list[str]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    values = list(value) if isinstance(value, (list, tuple, np.ndarray)) else str(value).split(sep)
    return [str(g).strip() for g in values if str(g).strip() and str(g).strip() != "(no genres listed)"]


def _items_table(interacted: np.ndarray, mapping: pa.Table | None, catalogue: Catalogue | None, cat_codes: np.ndarray | None) -> pa.Table:
    """items.parquet: the catalogue's rows under their canonical ids, else one row per interacted item titled by its raw id."""
    if catalogue is not None:
        ids = cat_codes if mapping is not None else catalogue.ids.to_numpy(zero_copy_only=False)
        raw_text = catalogue.ids.cast(pa.string()).to_pylist()
        titles = pa.array([t if t not in (None, "") else raw for t, raw in zip(catalogue.titles, raw_text)], pa.string())
        titles = pc.utf8_rtrim_whitespace(titles)
        derived = pc.cast(pc.struct_field(pc.extract_regex(titles, _YEAR_RE), [0]), pa.int16())
        years = pa.array([y if y is not None else d for y, d in zip(catalogue.years, derived.to_pylist())], pa.int16())
        genres = pa.array(catalogue.genres, pa.list_(pa.string()))
        table = S.conform({"item_id": pa.array(ids, pa.int64()), "title": titles, "year": years, "genres": genres}, S.ITEMS)
        return table.take(pc.sort_indices(table, [("item_id", "ascending")]))
    ids = distinct(interacted)
    if mapping is not None:  # dense ids are 1..n: row id - 1 of the mapping
        raw = mapping.column("raw").take(pa.array(ids - 1)).cast(pa.string())
    else:
        raw = pa.array([str(x) for x in ids.tolist()], pa.string())
    return _untitled_items(ids, raw)


def _untitled_items(ids: np.ndarray, titles: pa.Array) -> pa.Table:
    return S.conform(
        {"item_id": pa.array(ids), "title": titles, "year": pa.nulls(len(ids), pa.int16()), "genres": pa.array([[]] * len(ids), pa.list_(pa.string()))},
        S.ITEMS,
    )
