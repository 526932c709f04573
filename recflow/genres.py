"""Item genres and how well a vector space's nearest neighbours agree on them.

"Movies similar to <title>" is judged by genre overlap@k (reference notebook 2): the hybrid
model reports it per mode, and the index stage measures it for every item space so a run can
serve ``similar`` from the model whose neighbours share most genres. Kept apart from any model
so the index task needs no model module (and its cache key holds this source).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def genre_matrix(item_ids: np.ndarray, items: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
    """(n, g) int8 multi-hot of the items table's genres aligned with ``item_ids``, and a name per column.

    Columns follow ``recflow.features``' genre keys (the feature tables' ``genre_<key>``); an item
    missing from the table, or without genres, is an all-zero row.
    """
    from recflow.features import ItemGenres  # lazily: features -> config -> models -> hybrid -> here

    n = len(item_ids)
    if items is None or not len(items) or not {"item_id", "genres"} <= set(items.columns):
        return np.zeros((n, 0), np.int8), np.zeros(0, dtype=np.str_)
    genres = ItemGenres(items)
    pos = genres.index(np.asarray(item_ids))
    known = pos >= 0
    matrix = np.zeros((n, len(genres.keys)), np.int8)
    matrix[known] = genres.matrix[pos[known]].toarray()
    return matrix, np.array([genres.names[k][0] for k in genres.keys], dtype=np.str_)


def normalise_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0).astype(np.float32)


def cosine_neighbours(vectors: np.ndarray, queries: np.ndarray, k: int, valid: np.ndarray | None = None,
                      batch_size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` cosine neighbours of each query row among the ``valid`` rows, the query excluded.

    Best first, ties to the lower index; padded with -1 / -inf (also for a query that is not valid).
    """
    from recflow.models.base import topk  # lazily: recflow.models imports this module

    unit = normalise_rows(vectors)
    n = len(unit)
    valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    q = np.asarray(queries, dtype=np.int64).reshape(-1)
    if len(q) and (q.min() < 0 or q.max() >= n):
        raise IndexError(f"item indices must lie in [0, {n})")
    k_eff = min(int(k), n)
    out_i = np.full((len(q), int(k)), -1, dtype=np.int64)
    out_s = np.full((len(q), int(k)), -np.inf, dtype=np.float32)
    for start in range(0, len(q), batch_size):
        b = q[start : start + batch_size]
        sims = (unit[b] @ unit.T).astype(np.float32)
        sims[:, ~valid] = -np.inf
        sims[~valid[b]] = -np.inf
        sims[np.arange(len(b)), b] = -np.inf
        top = topk(sims, k_eff)
        top_s = np.take_along_axis(sims, top, axis=1)
        out_i[start : start + len(b), :k_eff] = np.where(np.isneginf(top_s), -1, top)
        out_s[start : start + len(b), :k_eff] = top_s
    return out_i, out_s


def genre_overlap_at_k(vectors: np.ndarray, genres: np.ndarray, k: int = 10, queries: np.ndarray | None = None,
                       valid: np.ndarray | None = None) -> dict[str, float]:
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
