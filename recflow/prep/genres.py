"""Item genres (one multi-hot for features, models and indexes) and how well a vector space's
nearest neighbours agree on them.

"Movies similar to <title>" is judged by genre overlap@k (reference notebook 2): the hybrid
model reports it per mode, and the index stage measures it for every item space so a run can
serve ``similar`` from the model whose neighbours share most genres. ``ItemGenres`` is the one
reading of an items table's genre lists (keys, the no-genre marker): the feature tables, the
hybrid model and the index stage all build their genre columns from it, so they agree. Kept
apart from any model and from the feature tables, below both in the import graph.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recflow.utils.numeric import cosine_neighbours

NO_GENRES_MARKER = "(no genres listed)"


def genre_key(name: str) -> str:
    """A genre name as a safe lower-case identifier: ``"Children's"`` -> ``"childrens"``."""
    s = name.lower().replace("'", "").replace("\u2019", "")
    s = re.sub(r"[^0-9a-z]+", "_", s).strip("_")
    if s and s[0].isdigit():
        s = "g_" + s
    return s


# ----------------------------------------------------------------------------- genre matrix


class ItemGenres:
    """The items table's genres as a sparse items x genres 0/1 matrix aligned with sorted item ids."""

    def __init__(self, items: pd.DataFrame):
        ids = items["item_id"].to_numpy(np.int64)
        order = np.argsort(ids, kind="stable")
        self.item_ids = ids[order]
        if len(self.item_ids) > 1 and (self.item_ids[1:] == self.item_ids[:-1]).any():
            raise ValueError("items table has duplicate item_id values")
        self.order = order  # items-table row of each sorted position

        # one (items-table row, genre name) pair per listed genre; empty lists and nulls vanish
        exploded = items["genres"].reset_index(drop=True).explode().dropna()
        rows = exploded.index.to_numpy(np.int64)
        name_code, names = pd.factorize(exploded.astype(str).to_numpy(dtype=object))
        key_of_name = ["" if n == NO_GENRES_MARKER else genre_key(n) for n in names]
        self.keys: list[str] = sorted({k for k in key_of_name if k})
        col_of_key = {k: j for j, k in enumerate(self.keys)}
        col_of_name = np.array([col_of_key.get(k, -1) for k in key_of_name], dtype=np.int64)
        col = col_of_name[name_code] if len(names) else np.zeros(0, dtype=np.int64)
        ok = col >= 0
        rows, col = rows[ok], col[ok]
        self.names: dict[str, list[str]] = {k: [] for k in self.keys}
        for n, k in sorted(zip(names, key_of_name)):
            if k:
                self.names[k].append(str(n))
        # position of each items-table row in the sorted order
        pos_of_row = np.empty(len(ids), dtype=np.int64)
        pos_of_row[order] = np.arange(len(ids))
        m = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.int32), (pos_of_row[rows], col)),
            shape=(len(ids), len(self.keys)),
        )
        m.sum_duplicates()
        m.data[:] = 1  # a genre listed twice for one item counts once
        self.matrix = m

    def index(self, raw_item_ids: np.ndarray) -> np.ndarray:
        """Sorted positions of raw item ids; -1 where the items table lacks them."""
        raw = np.asarray(raw_item_ids, dtype=np.int64)
        ids = self.item_ids
        if len(ids) == 0:
            return np.full(len(raw), -1, dtype=np.int64)
        lo, hi = int(ids[0]), int(ids[-1])
        if hi - lo < max(4 * len(raw), 1 << 20):  # a lookup table beats a binary search
            lut = np.full(hi - lo + 1, -1, dtype=np.int64)
            lut[ids - lo] = np.arange(len(ids))
            inside = (raw >= lo) & (raw <= hi)
            return np.where(inside, lut[np.where(inside, raw - lo, 0)], -1)
        pos = np.clip(np.searchsorted(ids, raw), 0, len(ids) - 1)
        return np.where(ids[pos] == raw, pos, -1).astype(np.int64)


# ----------------------------------------------------------------------------- genre agreement


def genre_matrix(item_ids: np.ndarray, items: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
    """(n, g) int8 multi-hot of the items table's genres aligned with ``item_ids``, and a name per column.

    Columns follow ``recflow.prep.features``' genre keys (the feature tables' ``genre_<key>``); an item
    missing from the table, or without genres, is an all-zero row.
    """
    n = len(item_ids)
    if items is None or not len(items) or not {"item_id", "genres"} <= set(items.columns):
        return np.zeros((n, 0), np.int8), np.zeros(0, dtype=np.str_)
    genres = ItemGenres(items)
    pos = genres.index(np.asarray(item_ids))
    known = pos >= 0
    matrix = np.zeros((n, len(genres.keys)), np.int8)
    matrix[known] = genres.matrix[pos[known]].toarray()
    return matrix, np.array([genres.names[k][0] for k in genres.keys], dtype=np.str_)


def overlap_queries(genres: np.ndarray, eligible: np.ndarray, cap: int | None = None, seed: int = 0) -> np.ndarray:
    """The query items of a genre-overlap measurement: the ``eligible`` items with >= 1 genre.

    More than ``cap`` (None: no cap): a seeded uniform sample of ``cap`` of them, sorted, so a
    measurement costs the same on any catalogue and repeats exactly. The index stage passes the
    items with a vector, the hybrid model the items with train interactions (one query set for
    its three modes, so they compare).
    """
    cand = np.flatnonzero(np.asarray(eligible, bool) & (np.asarray(genres) > 0).any(axis=1))
    if cap is not None and len(cand) > int(cap):
        cand = np.sort(np.random.default_rng(int(seed)).choice(cand, int(cap), replace=False))
    return cand


def genre_overlap_at_k(
    vectors: np.ndarray, genres: np.ndarray, k: int = 10, queries: np.ndarray | None = None, valid: np.ndarray | None = None
) -> dict[str, float]:
    """Genre agreement of each query item with its ``k`` nearest neighbours by cosine.

    ``genres``: (n, g) 0/1. Queries: ``queries`` (item indices; default every ``valid`` item),
    keeping only those with >= 1 genre and a valid vector. Each query's neighbours are its top-``k``
    cosine items among the ``valid`` ones, the query excluded. With ``G(x)`` an item's genre set:

    * ``genre_overlap_at_{k}``: mean over queries of the fraction of its neighbours with
      ``|G(q) & G(n)| >= 1`` (the reference notebook's "genre overlap@10");
    * ``genre_jaccard_at_{k}``: mean over queries of the mean over its neighbours of
      ``|G(q) & G(n)| / |G(q) | G(n)|`` (a neighbour without genres scores 0);
    * ``n_queries``: how many queries were averaged (queries without any neighbour are skipped;
      a query with fewer than ``k`` candidates averages over the ones it has).
    NaN when no query counts.
    """
    g = np.asarray(genres) > 0
    n = len(g)
    valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    q = np.flatnonzero(valid) if queries is None else np.asarray(queries, dtype=np.int64).reshape(-1)
    q = q[valid[q] & g[q].any(axis=1)] if len(q) else q
    nan = {f"genre_overlap_at_{k}": float("nan"), f"genre_jaccard_at_{k}": float("nan"), "n_queries": 0}
    if not len(q) or not g.shape[1]:
        return nan
    nb, _ = cosine_neighbours(vectors, q, k, valid)
    ok = nb >= 0
    gi = g.astype(np.int32)
    inter = np.einsum("qg,qkg->qk", gi[q], gi[np.where(ok, nb, 0)])
    union = gi[q].sum(axis=1)[:, None] + gi[np.where(ok, nb, 0)].sum(axis=2) - inter
    jac = np.where(ok, inter / np.maximum(union, 1), 0.0)
    share = np.where(ok, inter >= 1, False)
    n_nb = ok.sum(axis=1)
    has = n_nb > 0
    if not has.any():
        return nan
    return {
        f"genre_overlap_at_{k}": float((share.sum(axis=1)[has] / n_nb[has]).mean()),
        f"genre_jaccard_at_{k}": float((jac.sum(axis=1)[has] / n_nb[has]).mean()),
        "n_queries": int(has.sum()),
    }
