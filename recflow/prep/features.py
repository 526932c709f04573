"""User and item feature tables, computed from the training part of a split only.

The callers pass the training ratings (``user_id``, ``item_id``, ``rating``; other columns are
ignored) and the canonical items table (``item_id``, ``title``, ``year``, ``genres`` as lists of
strings). Nothing else is read, so no valid/test rating can leak into a feature.

Genres
    Every genre name is turned into a safe lower-case identifier (``genre_key``): apostrophes
    are dropped, every other run of non-alphanumeric characters becomes ``_``, and leading or
    trailing ``_`` are stripped (a key starting with a digit gets a ``g_`` prefix): ``Children's`` -> ``childrens``, ``Sci-Fi`` -> ``sci_fi``,
    ``Film-Noir`` -> ``film_noir``, ``IMAX`` -> ``imax``. Names that map to the same key are one
    genre. MovieLens's ``(no genres listed)`` marker (and empty names) mean "no genre". The
    genre vocabulary is the sorted set of keys over the whole items table, so the columns do not
    depend on which items the training part happens to contain.

User features (one row per user in train, sorted by user_id), in this column order:
    ``user_id``; ``mean_rating``; ``rating_std`` (sample std, ddof=1; 0 for a single rating);
    ``rating_count``; ``rating_min``; ``rating_max``; ``rating_strictness`` (global train mean
    minus the user's mean); ``rating_variability`` (std / mean; 0 when the mean is 0); for every
    genre key ``g``: ``<g>_favorite_degree`` (the user's ratings on items of genre g divided by the
    sum of those counts over all genres; 0 when the user rated no item with a genre), then for
    every ``g``: ``<g>_rating_cnt`` (that count); ``favorite_genre`` (the key with the largest
    count, ties to the first key in sorted order; null when the user rated no item with a genre);
    ``num_liked_genres`` (genres with a count > 0); ``activity_level`` (``pd.cut`` of rating_count
    on ``cfg.activity_bins`` with ``cfg.activity_labels``, right-closed; a string).
    Rated items missing from the items table count as items without genres.

Item features (one row per item of the items table, sorted by item_id, so that models can score
items nobody rated in train):
    ``item_id``; ``mean_rating`` (the global train mean for items without train ratings);
    ``has_train_ratings``; ``rating_std`` (sample std, 0 below 2 ratings); ``rating_count`` (0
    when unrated); ``popularity`` (``pd.cut`` of rating_count on ``cfg.popularity_bins`` with
    ``cfg.popularity_labels``, right-closed; ``"unrated"`` for a count of 0 whatever the bins; a
    string); ``genre_<g>`` (int8 multi-hot) for every genre key; ``genre_purity`` (1 / number of
    genres, 0 without genres); ``year`` (nullable Int16, from the items table); ``title_length``
    (characters of the title after stripping a trailing release year such as `` (1995)``, so it
    measures the name itself and is the same whether or not the ingestion kept the year in the
    title; the reference notebook counted the full title).
    Train ratings of items missing from the items table are ignored here.

Numeric columns never hold NaN, except the nullable ``year``. Everything is vectorised
(bincount, one sparse users x items by items x genres product); no Python loop per row or user.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from recflow.prep.config import FeaturesConfig
from recflow.prep.genres import NO_GENRES_MARKER, ItemGenres, genre_key  # noqa: F401 - the feature tables' genre keys

UNRATED = "unrated"
USER_TABLE = "user_features"
ITEM_TABLE = "item_features"
_YEAR_SUFFIX = re.compile(r"\s*\(\d{4}(?:\s*[-\u2013]\s*\d{0,4})?\)\s*$")


def _group_stats(codes: np.ndarray, ratings: np.ndarray, n: int):
    """count, mean, sample std (0 below 2), min, max per code in 0..n-1 (count 0 -> mean/min/max NaN)."""
    count = np.bincount(codes, minlength=n)
    total = np.bincount(codes, weights=ratings, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        sq = np.bincount(codes, weights=(ratings - mean[codes]) ** 2, minlength=n)
        std = np.where(count > 1, np.sqrt(sq / np.maximum(count - 1, 1)), 0.0)
    rmin, rmax = _group_min_max(codes, ratings, n, count)
    return count, mean, std, rmin, rmax


def _group_min_max(codes: np.ndarray, values: np.ndarray, n: int, count: np.ndarray):
    """Per-code min and max (NaN for empty codes). Ratings take few distinct values, so one
    bincount over (code, value rank) gives both in O(rows); many distinct values fall back to a sort."""
    rmin = np.full(n, np.nan)
    rmax = np.full(n, np.nan)
    nz = count > 0
    if not nz.any():
        return rmin, rmax
    vcode, uniq = pd.factorize(values, sort=True)
    nv = len(uniq)
    if nv <= 64:
        seen = np.bincount(codes * nv + vcode, minlength=n * nv).reshape(n, nv) > 0
        uniq = np.asarray(uniq, dtype=np.float64)
        rmin[nz] = uniq[seen[nz].argmax(axis=1)]
        rmax[nz] = uniq[nv - 1 - seen[nz][:, ::-1].argmax(axis=1)]
        return rmin, rmax
    order = np.lexsort((values, codes))
    sorted_vals = values[order]
    starts = np.r_[0, np.cumsum(count)[:-1]]
    ends = np.cumsum(count) - 1
    rmin[nz] = sorted_vals[starts[nz]]
    rmax[nz] = sorted_vals[ends[nz]]
    return rmin, rmax


def _train_arrays(train: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if len(train) == 0:
        raise ValueError("the training part is empty: no features can be computed")
    return (
        train["user_id"].to_numpy(np.int64),
        train["item_id"].to_numpy(np.int64),
        train["rating"].to_numpy(np.float64),
    )


def _cut(values: np.ndarray, bins: list[float], labels: list[str]) -> pd.Series:
    cats = pd.cut(values, bins=bins, labels=labels, right=True)
    return pd.Series(np.asarray(cats.astype(object)), dtype="str")


# ----------------------------------------------------------------------------- tables


def user_features(train: pd.DataFrame, items: pd.DataFrame, cfg: FeaturesConfig, _genres: ItemGenres | None = None) -> pd.DataFrame:
    users, item_ids, r = _train_arrays(train)
    genres = _genres or ItemGenres(items)
    ucode, uid = pd.factorize(users, sort=True)
    ucode = ucode.astype(np.int64, copy=False)
    n_u = len(uid)
    count, mean, std, rmin, rmax = _group_stats(ucode, r, n_u)
    global_mean = float(r.mean())

    # users x genres counts: (users x items counts) @ (items x genres multi-hot)
    ipos = genres.index(item_ids)
    known = ipos >= 0
    ui = sp.csr_matrix(
        (np.ones(int(known.sum()), dtype=np.int64), (ucode[known], ipos[known])),
        shape=(n_u, len(genres.item_ids)),
    )
    ug = np.asarray((ui @ genres.matrix.astype(np.int64)).todense(), dtype=np.int64).reshape(n_u, len(genres.keys))
    total = ug.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        degree = np.where(total[:, None] > 0, ug / np.maximum(total, 1)[:, None], 0.0)
    keys = np.array(genres.keys, dtype=object)
    fav = np.full(n_u, np.nan, dtype=object)
    has = total > 0
    if len(keys):
        fav[has] = keys[ug[has].argmax(axis=1)]

    cols: dict[str, Any] = {
        "user_id": uid,
        "mean_rating": mean,
        "rating_std": std,
        "rating_count": count.astype(np.int64),
        "rating_min": rmin,
        "rating_max": rmax,
        "rating_strictness": global_mean - mean,
        "rating_variability": np.where(mean != 0, std / np.where(mean != 0, mean, 1.0), 0.0),
    }
    for j, g in enumerate(genres.keys):
        cols[f"{g}_favorite_degree"] = degree[:, j]
    for j, g in enumerate(genres.keys):
        cols[f"{g}_rating_cnt"] = ug[:, j]
    out = pd.DataFrame(cols)
    out["favorite_genre"] = pd.Series(fav, dtype="str")
    out["num_liked_genres"] = (ug > 0).sum(axis=1).astype(np.int64)
    out["activity_level"] = _cut(count, cfg.activity_bins, cfg.activity_labels)
    return out


def item_features(train: pd.DataFrame, items: pd.DataFrame, cfg: FeaturesConfig, _genres: ItemGenres | None = None) -> pd.DataFrame:
    _, item_ids, r = _train_arrays(train)
    genres = _genres or ItemGenres(items)
    n_i = len(genres.item_ids)
    ipos = genres.index(item_ids)
    known = ipos >= 0
    count, mean, std, _, _ = _group_stats(ipos[known], r[known], n_i)
    global_mean = float(r.mean())
    rated = count > 0

    popularity = _cut(count, cfg.popularity_bins, cfg.popularity_labels)
    popularity[~rated] = UNRATED

    cols: dict[str, Any] = {
        "item_id": genres.item_ids,
        "mean_rating": np.where(rated, mean, global_mean),
        "has_train_ratings": rated,
        "rating_std": np.where(rated, std, 0.0),
        "rating_count": count.astype(np.int64),
    }
    out = pd.DataFrame(cols)
    out["popularity"] = popularity
    multi_hot = genres.matrix.toarray().astype(np.int8)
    n_genres = multi_hot.sum(axis=1, dtype=np.int64)
    genre_cols = pd.DataFrame({f"genre_{g}": multi_hot[:, j] for j, g in enumerate(genres.keys)})
    out = pd.concat([out, genre_cols], axis=1)
    out["genre_purity"] = np.where(n_genres > 0, 1.0 / np.maximum(n_genres, 1), 0.0)

    sorted_items = items.iloc[genres.order].reset_index(drop=True)
    if "year" in sorted_items.columns:
        out["year"] = sorted_items["year"].astype("Int16")
    else:
        out["year"] = pd.array([pd.NA] * n_i, dtype="Int16")
    titles = sorted_items["title"].astype("str") if "title" in sorted_items.columns else pd.Series([""] * n_i, dtype="str")
    stripped = titles.str.replace(_YEAR_SUFFIX, "", regex=True)
    out["title_length"] = stripped.str.len().fillna(0).astype(np.int32)
    return out


def write_feature_tables(train: pd.DataFrame, items: pd.DataFrame, cfg: FeaturesConfig, out_dir: Path, inputs: dict[str, str]) -> dict[str, Any]:
    """Write ``user_features.parquet`` and ``item_features.parquet`` under ``out_dir``; return a
    JSON-able manifest: rows and Arrow schema per table, the caller's input fingerprints, the
    genre keys (column order) with the source names behind each, and the global train mean."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    genres = ItemGenres(items)
    tables = {
        USER_TABLE: user_features(train, items, cfg, _genres=genres),
        ITEM_TABLE: item_features(train, items, cfg, _genres=genres),
    }
    manifest: dict[str, Any] = {"tables": {}, "inputs": dict(inputs), "genres": list(genres.keys)}
    for name, frame in tables.items():
        table = pa.Table.from_pandas(frame, preserve_index=False)
        pq.write_table(table, out_dir / f"{name}.parquet")
        manifest["tables"][name] = {
            "rows": int(table.num_rows),
            "schema": {f.name: str(f.type) for f in table.schema},
        }
    manifest["genre_names"] = {k: list(v) for k, v in genres.names.items()}
    manifest["global_train_mean"] = float(train["rating"].to_numpy(np.float64).mean())
    json.dumps(manifest)  # fail here, not in the caller, if something is not JSON-able
    return manifest
