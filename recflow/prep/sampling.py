"""Training samples derived from the train part of a split: negatives, BPR triplets, item2vec
sentences and DeepWalk random walks.

Pure NumPy/SciPy/pandas (Parquet through pyarrow); everything is vectorised across users, rows
or walks, with Python loops only over a small number of steps (``n_random``, ``walk_length``...).
Every function takes a ``seed`` and gives the same output for the same input and seed. Writing
the outputs, and a model's check that a file on disk fits its train part and settings, live in
``recflow.prep.sample_files``.

Two vectorised building blocks do the sampling:

* ``_floyd(pool_size, k, rng)``: for every row ``r`` a uniform random *set* of ``k[r]`` distinct
  ranks in ``[0, pool_size[r])`` (Robert Floyd's algorithm, one step for all rows at once), so
  there is no rejection loop and dense users (few unseen items) cost the same as sparse ones.
* ``_unranked(...)``: the rank -> value map of "the r-th value of [0, N) that is not excluded":
  for one row's sorted excluded values ``e_0 < e_1 < ...``, the r-th free value is
  ``r + #{k : e_k - k <= r}``, one ``np.searchsorted`` on the packed keys ``row * (N + 1) + e_k - k``.

Together they draw k distinct unseen items per user exactly uniformly among the unseen ones.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recflow.prep.interactions import Interactions

if TYPE_CHECKING:
    from recflow.prep.config import SamplingConfig

__all__ = [
    "NEGATIVE_KINDS",
    "sample_negatives",
    "popular_high_rated",
    "bpr_triplets",
    "liked_sequences",
    "cooccurrence_graph",
    "random_walks",
    "make_samples",
]

NEGATIVE_KINDS = ("random", "popular", "disliked")


# ----------------------------------------------------------------------------- building blocks


def _floyd(pool_size: np.ndarray, k: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n_rows, max k) int64: row r holds ``k[r]`` distinct uniform draws from ``[0, pool_size[r])``
    in its first ``k[r]`` columns and ``-1`` after them. Requires ``0 <= k <= pool_size``.

    Floyd's algorithm: for ``j = N - k .. N - 1`` draw ``t`` in ``[0, j]``; keep ``t`` unless it is
    already taken, then keep ``j``. Every k-subset is equally likely. One vectorised step per
    column, each comparing against the columns so far (O(rows * k^2), k is small here).
    """
    pool_size = np.asarray(pool_size, dtype=np.int64)
    k = np.asarray(k, dtype=np.int64)
    n = len(pool_size)
    kmax = int(k.max()) if n else 0
    out = np.full((n, kmax), -1, dtype=np.int64)
    for s in range(kmax):
        active = s < k
        j = pool_size - k + s  # >= 0 where active
        t = np.floor(rng.random(n) * np.maximum(j + 1, 0)).astype(np.int64)
        t = np.minimum(t, j)  # guard against float rounding up to j + 1
        taken = (out[:, :s] == t[:, None]).any(axis=1)
        out[:, s] = np.where(active, np.where(taken, j, t), -1)
    return out


def _unranked(row_of_excluded: np.ndarray, excluded: np.ndarray, n_rows: int, universe: int, rows: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Value of rank ``ranks[q]`` among the values of ``[0, universe)`` that row ``rows[q]`` does
    not exclude. ``(row_of_excluded, excluded)`` must be sorted by (row, value) without duplicates."""
    row_of_excluded = row_of_excluded.astype(np.int64)
    counts = np.bincount(row_of_excluded, minlength=n_rows)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    within = np.arange(len(excluded), dtype=np.int64) - indptr[row_of_excluded]
    keys = row_of_excluded * (universe + 1) + (excluded.astype(np.int64) - within)
    rows = rows.astype(np.int64)
    ranks = ranks.astype(np.int64)
    before = np.searchsorted(keys, rows * (universe + 1) + ranks, side="right") - indptr[rows]
    return ranks + before


def _sample_free(
    row_of_excluded: np.ndarray, excluded: np.ndarray, n_rows: int, universe: int, k: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, ``min(k, free)`` distinct uniform values of ``[0, universe)`` not excluded by it.

    Returns flat (rows, values). The exclusion lists must be sorted by (row, value), no duplicates.
    """
    n_excl = np.bincount(row_of_excluded.astype(np.int64), minlength=n_rows)
    free = universe - n_excl
    take = np.minimum(k, free)
    ranks = _floyd(free, take, rng)
    mask = ranks >= 0
    rows = np.nonzero(mask)[0]
    values = _unranked(row_of_excluded, excluded, n_rows, universe, rows, ranks[mask])
    return rows, values


def _item_stats(train: Interactions) -> tuple[np.ndarray, np.ndarray]:
    counts = np.bincount(train.item_idx, minlength=train.n_items)
    sums = np.bincount(train.item_idx, weights=train.ratings.astype(np.float64), minlength=train.n_items)
    means = np.divide(sums, counts, out=np.full(train.n_items, np.nan), where=counts > 0)
    return counts, means


def _user_means(train: Interactions) -> np.ndarray:
    counts = np.bincount(train.user_idx, minlength=train.n_users)
    sums = np.bincount(train.user_idx, weights=train.ratings.astype(np.float64), minlength=train.n_users)
    return np.divide(sums, counts, out=np.full(train.n_users, np.nan), where=counts > 0)


def _sorted_pairs(users: np.ndarray, items: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    keys = np.sort(users.astype(np.int64) * n_items + items.astype(np.int64))
    if len(keys) > 1:
        keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]
    return keys // n_items, keys % n_items


# ----------------------------------------------------------------------------- negatives


def popular_high_rated(train: Interactions, *, popular_pool: int = 200, min_item_mean: float | None = None) -> np.ndarray:
    """Item indices of the popular-and-high-rated pool, most interactions first (ties: lower index).

    The ``popular_pool`` items with the most train interactions among those whose train mean
    rating is ``>= min_item_mean`` (default: ``>=`` the global train mean).
    """
    counts, means = _item_stats(train)
    if min_item_mean is not None:
        threshold = float(min_item_mean)
    else:
        threshold = float(train.ratings.astype(np.float64).mean()) if len(train) else np.inf
    eligible = np.flatnonzero((counts > 0) & (means >= threshold))
    order = np.lexsort((eligible, -counts[eligible]))
    return eligible[order][: max(int(popular_pool), 0)].astype(np.int64)


def sample_negatives(
    train: Interactions,
    *,
    n_random: int,
    n_popular: int,
    n_disliked: int,
    popular_pool: int = 200,
    min_item_mean: float | None = None,
    seed: int,
) -> pd.DataFrame:
    """Negative items per user, of three kinds (the reference notebook's scheme, vectorised).

    ``random``: ``n_random`` distinct items the user has no train interaction with, uniform among
    them. ``popular``: ``n_popular`` distinct unseen items, uniform over the pool of
    ``popular_high_rated(...)`` (popular and rated at least ``min_item_mean``, default the global train
    mean). ``disliked``: ``n_disliked`` distinct items the user *did* rate, below that item's train
    mean, uniform among them. A user with fewer candidates gets all of them. Random and popular
    draws are independent, so one item can appear as both kinds for a user.

    Only users with at least one train interaction get negatives. Returns columns ``user_idx``,
    ``item_idx`` (int32) and ``kind`` (categorical, categories ``NEGATIVE_KINDS``), sorted by
    (user, kind, item). Deterministic for a given ``seed``.
    """
    for name, v in (("n_random", n_random), ("n_popular", n_popular), ("n_disliked", n_disliked)):
        if int(v) < 0:
            raise ValueError(f"{name} must be >= 0, got {v}")
    n_users, n_items = train.n_users, train.n_items
    rng_random, rng_popular, rng_disliked = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    seen_u, seen_i = _sorted_pairs(train.user_idx, train.item_idx, n_items)
    active = np.bincount(train.user_idx, minlength=n_users) > 0

    parts = []
    # random: unseen items, rank-sampled among the user's free items
    rows, items = _sample_free(seen_u, seen_i, n_users, n_items, int(n_random), rng_random)
    keep = active[rows]
    parts.append((rows[keep], items[keep], 0))

    # popular: unseen items of the pool; the universe is the pool's positions
    pool = popular_high_rated(train, popular_pool=popular_pool, min_item_mean=min_item_mean)
    pos_of_item = np.full(n_items, -1, dtype=np.int64)
    pos_of_item[pool] = np.arange(len(pool))
    in_pool = pos_of_item[seen_i] >= 0
    pu, pp = seen_u[in_pool], pos_of_item[seen_i[in_pool]]
    order = np.lexsort((pp, pu))
    rows, pos = _sample_free(pu[order], pp[order], n_users, len(pool), int(n_popular), rng_popular)
    keep = active[rows]
    parts.append((rows[keep], pool[pos[keep]], 1))

    # disliked: seen items rated below the item's train mean
    _, item_mean = _item_stats(train)
    cand = np.flatnonzero(train.ratings.astype(np.float64) < item_mean[train.item_idx])
    cu = train.user_idx[cand].astype(np.int64)
    ci = train.item_idx[cand].astype(np.int64)
    cu, ci = _sorted_pairs(cu, ci, n_items)  # canonical order: independent of the train row order
    order = np.lexsort((rng_disliked.random(len(cu)), cu))
    cu, ci = cu[order], ci[order]
    start = np.concatenate([[0], np.cumsum(np.bincount(cu, minlength=n_users))])
    keep = (np.arange(len(cu)) - start[cu]) < int(n_disliked)
    parts.append((cu[keep], ci[keep], 2))

    users = np.concatenate([p[0] for p in parts]).astype(np.int64)
    items = np.concatenate([p[1] for p in parts]).astype(np.int64)
    kinds = np.concatenate([np.full(len(p[0]), p[2], dtype=np.int8) for p in parts])
    order = np.lexsort((items, kinds, users))
    return pd.DataFrame(
        {
            "user_idx": users[order].astype(np.int32),
            "item_idx": items[order].astype(np.int32),
            "kind": pd.Categorical.from_codes(kinds[order], categories=list(NEGATIVE_KINDS)),
        }
    )


# ----------------------------------------------------------------------------- BPR triplets


def bpr_triplets(
    train: Interactions,
    negatives: pd.DataFrame,
    *,
    positive_threshold: str | float = "user_mean",
    negatives_per_positive: int,
    seed: int,
) -> pd.DataFrame:
    """(user, positive item, negative item) triplets for pairwise (BPR) training.

    Positives: train interactions with rating ``>`` the user's train mean (``"user_mean"``, the
    notebook's rule) or ``>=`` a float threshold. Each positive is paired with
    ``negatives_per_positive`` *distinct* negatives of its user, drawn uniformly from the user's
    distinct negative items in ``negatives`` (all of them when the user has fewer). A triplet
    whose negative is the positive itself (an item rated above the user's mean but below the
    item's mean is both) is dropped; a user without negatives gives no triplets.

    Returns int32 columns ``user_idx``, ``pos_idx``, ``neg_idx``, sorted by (user, positive); a
    positive's negatives follow in draw order.
    """
    k = int(negatives_per_positive)
    if k < 1:
        raise ValueError(f"negatives_per_positive must be >= 1, got {negatives_per_positive}")
    n_users, n_items = train.n_users, train.n_items
    r = train.ratings.astype(np.float64)
    if isinstance(positive_threshold, str):
        if positive_threshold != "user_mean":
            raise ValueError(f"positive_threshold must be 'user_mean' or a number, got {positive_threshold!r}")
        is_pos = r > _user_means(train)[train.user_idx]
    else:
        is_pos = r >= float(positive_threshold)
    pu, pi = _sorted_pairs(train.user_idx[is_pos], train.item_idx[is_pos], n_items)

    nu, ni = _sorted_pairs(negatives["user_idx"].to_numpy(np.int64), negatives["item_idx"].to_numpy(np.int64), n_items)
    if len(nu) and (nu.max() >= n_users or ni.max() >= n_items):
        raise ValueError("negatives hold indices outside the train index")
    n_neg = np.bincount(nu, minlength=n_users)
    start = np.concatenate([[0], np.cumsum(n_neg)])

    has = n_neg[pu] > 0
    pu, pi = pu[has], pi[has]
    ranks = _floyd(n_neg[pu], np.minimum(k, n_neg[pu]), np.random.default_rng(seed))
    mask = ranks >= 0
    row = np.nonzero(mask)[0]
    neg = ni[start[pu[row]] + ranks[mask]]
    u, p = pu[row], pi[row]
    ok = neg != p
    # rows are already in (user, positive) order: positives are sorted and ``row`` ascends
    return pd.DataFrame({"user_idx": u[ok].astype(np.int32), "pos_idx": p[ok].astype(np.int32), "neg_idx": neg[ok].astype(np.int32)})


# ----------------------------------------------------------------------------- sequences


def _liked_sorted(train: Interactions, min_rating: float) -> tuple[np.ndarray, np.ndarray]:
    liked = np.flatnonzero(train.ratings >= min_rating)
    u = train.user_idx[liked].astype(np.int64)
    i = train.item_idx[liked].astype(np.int64)
    t = train.timestamps[liked]
    order = np.lexsort((i, t, u))
    return u[order], i[order]


def liked_sequences(train: Interactions, *, min_rating: float = 4.0) -> list[np.ndarray]:
    """Per user (list position = user index, all ``n_users`` of them), the int32 items the user
    rated ``>= min_rating`` in train, in time order (ties by item index): item2vec's sentences.
    Users who liked nothing get an empty array."""
    u, i = _liked_sorted(train, min_rating)
    bounds = np.cumsum(np.bincount(u, minlength=train.n_users))[:-1]
    return np.split(i.astype(np.int32), bounds)


# ----------------------------------------------------------------------------- DeepWalk


def cooccurrence_graph(
    train: Interactions,
    *,
    min_rating: float,
    window: int | None = None,
    max_neighbors: int | None = None,
    block_entries: int = 20_000_000,
) -> sp.csr_matrix:
    """Item x item float32 CSR of co-like counts, no diagonal.

    ``window=None``: ``w_ij`` = number of users who liked (rating >= ``min_rating``) both i and j,
    i.e. ``X^T X`` of the binarised liked matrix, computed in blocks of item rows so the dense-ish
    product never exceeds about ``block_entries`` entries at once. ``window=w``: only pairs at most
    ``w`` apart in a user's time-ordered liked sequence count (the notebook used ``w = 1``).
    ``max_neighbors=M`` keeps each row's ``M`` heaviest entries (ties: lower item index), which
    bounds memory on large catalogues and makes the graph directed (row i lists i's neighbours).
    """
    n_items = train.n_items
    u, i = _liked_sorted(train, min_rating)
    if window is not None:
        w = int(window)
        if w < 1:
            raise ValueError(f"window must be >= 1 or None, got {window}")
        a_parts, b_parts = [], []
        for d in range(1, w + 1):
            same = u[:-d] == u[d:]
            a_parts += [i[:-d][same], i[d:][same]]
            b_parts += [i[d:][same], i[:-d][same]]
        a = np.concatenate(a_parts) if a_parts else np.empty(0, np.int64)
        b = np.concatenate(b_parts) if b_parts else np.empty(0, np.int64)
        g = sp.csr_matrix((np.ones(len(a), np.float32), (a, b)), shape=(n_items, n_items))
        g.sum_duplicates()
        g.setdiag(0)
        g.eliminate_zeros()
        return _cap_rows(g, max_neighbors)

    x = sp.csr_matrix((np.ones(len(u), np.float32), (u, i)), shape=(train.n_users, n_items))
    xc = x.tocsc()
    block = max(1, int(block_entries) // max(n_items, 1))
    blocks = []
    for a in range(0, n_items, block):
        b = min(a + block, n_items)
        c = (xc[:, a:b].T @ x).tocsr()  # rows a..b-1 of X^T X
        c = c.tocoo()
        off = c.row != (c.col - a)
        c = sp.csr_matrix((c.data[off], (c.row[off], c.col[off])), shape=(b - a, n_items))
        c.eliminate_zeros()
        blocks.append(_cap_rows(c, max_neighbors))
    if not blocks:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    g = sp.vstack(blocks, format="csr").astype(np.float32)
    g.sort_indices()
    return g


def _cap_rows(g: sp.csr_matrix, m: int | None) -> sp.csr_matrix:
    g = sp.csr_matrix(g)
    if m is None or g.nnz == 0 or np.diff(g.indptr).max() <= m:
        g.sort_indices()
        return g
    rows = np.repeat(np.arange(g.shape[0]), np.diff(g.indptr))
    order = np.lexsort((g.indices, -g.data, rows))
    rank = np.arange(g.nnz) - g.indptr[rows[order]]
    keep = order[rank < int(m)]
    out = sp.csr_matrix((g.data[keep], (rows[keep], g.indices[keep])), shape=g.shape)
    out.sort_indices()
    return out


def random_walks(
    train: Interactions,
    *,
    walks_per_item: int,
    walk_length: int,
    min_rating: float,
    seed: int,
    window_cooccurrence: int | None = None,
    max_neighbors: int | None = None,
    graph: sp.csr_matrix | None = None,
) -> np.ndarray:
    """DeepWalk walks on the item co-like graph (``cooccurrence_graph``), int32 (n_walks, walk_length).

    Walks start from every item liked (rating >= ``min_rating``) by someone, ``walks_per_item``
    rounds, each round visiting the start items in a fresh seeded permutation (round-major order).
    A step moves to a neighbour with probability proportional to the edge weight (number of
    common likers): one ``np.searchsorted`` into the CSR's cumulative weights for all walks at
    once. An item without neighbours (liked only by users who liked nothing else) yields a walk of
    the item alone, padded with ``-1``: consumers drop the ``-1`` tail (and single-token walks
    carry no skip-gram context). A precomputed ``graph`` may be passed instead of being built.
    """
    L = int(walk_length)
    if L < 1 or int(walks_per_item) < 0:
        raise ValueError("walk_length must be >= 1 and walks_per_item >= 0")
    n_items = train.n_items
    if graph is None:
        graph = cooccurrence_graph(train, min_rating=min_rating, window=window_cooccurrence, max_neighbors=max_neighbors)
    graph = sp.csr_matrix(graph)
    if graph.shape != (n_items, n_items):
        raise ValueError(f"graph has shape {graph.shape}, expected {(n_items, n_items)}")
    if graph.nnz and graph.data.min() <= 0:
        raise ValueError("graph weights must be positive")
    indptr = graph.indptr.astype(np.int64)
    deg = np.diff(indptr)
    cw = np.cumsum(graph.data.astype(np.float64))
    cw0 = np.concatenate([[0.0], cw])
    row_base = cw0[indptr[:-1]]
    row_total = cw0[indptr[1:]] - row_base

    liked_items = np.flatnonzero(np.bincount(train.item_idx[train.ratings >= min_rating], minlength=n_items) > 0)
    rng = np.random.default_rng(seed)
    rounds = [rng.permutation(liked_items) for _ in range(int(walks_per_item))]
    starts = np.concatenate(rounds).astype(np.int64) if rounds else np.empty(0, np.int64)
    walks = np.full((len(starts), L), -1, dtype=np.int32)
    walks[:, 0] = starts
    alive = np.flatnonzero(deg[starts] > 0)
    cur = starts[alive].astype(np.int64)
    for step in range(1, L):
        if len(cur) == 0:
            break
        target = row_base[cur] + rng.random(len(cur)) * row_total[cur]
        pos = np.searchsorted(cw, target, side="right")
        pos = np.clip(pos, indptr[cur], indptr[cur + 1] - 1)
        cur = graph.indices[pos].astype(np.int64)
        walks[alive, step] = cur
    return walks


# ----------------------------------------------------------------------------- the stage


def make_samples(
    train: Interactions,
    *,
    negatives: SamplingConfig | None = None,
    sequences: dict[str, Any] | None = None,
    walks: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, float]]:
    """The sampling stage: the outputs asked for, for ``recflow.prep.sample_files.write_samples``.

    Returns (outputs, the params each was made with, seconds per step). ``negatives`` makes the
    three negative kinds and the BPR triplets; ``sequences`` / ``walks`` are the keyword
    arguments of ``liked_sequences`` / ``random_walks`` (a model's ``sampling_needs()``).
    """
    made: dict[str, Any] = {}
    params: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    if negatives is not None:
        started = time.perf_counter()
        made["negatives"] = sample_negatives(
            train,
            n_random=negatives.n_random,
            n_popular=negatives.n_popular,
            n_disliked=negatives.n_disliked,
            popular_pool=negatives.popular_pool,
            seed=negatives.seed,
        )
        made["triplets"] = bpr_triplets(
            train,
            made["negatives"],
            positive_threshold=negatives.positive_threshold,
            negatives_per_positive=negatives.negatives_per_positive,
            seed=negatives.seed,
        )
        seconds["negatives_and_triplets"] = time.perf_counter() - started
        params["negatives"] = params["triplets"] = negatives.model_dump(mode="json")
    if sequences is not None:
        started = time.perf_counter()
        made["sequences"] = liked_sequences(train, **sequences)
        seconds["sequences"] = time.perf_counter() - started
        params["sequences"] = sequences
    if walks is not None:
        started = time.perf_counter()
        made["walks"] = random_walks(train, **walks)
        seconds["walks"] = time.perf_counter() - started
        params["walks"] = walks
    return made, params, seconds
