"""Numeric helpers every layer shares: top-K selection, unit rows, cosine neighbours.

The bottom of the import graph (NumPy only): models, genre metrics, indexes and the query side
all rank and normalise the same way, so one definition of "best first, ties to the lower index"
and of "a zero row stays zero" holds everywhere.
"""

from __future__ import annotations

import numpy as np

#: block width of ``topk``'s prefilter; rows narrower than ``_PREFILTER_MIN`` (or ``k`` too close to
#: the width) take the direct route
_BLOCK = 16
_PREFILTER_MIN = 4096


def topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` largest entries per row, sorted best first (ties: lower index).

    The tie rule holds at the cut too: among items tied with the ``k``-th score, the lowest
    indices are kept (``argpartition`` alone keeps an arbitrary subset of them). NaN ranks last.

    Wide float rows (a full catalogue per user) are prefiltered: split the columns into groups of
    ``_BLOCK``; the ``k``-th largest of the group maxima is a lower bound of the row's ``k``-th
    largest value (each of those ``k`` groups holds an entry reaching it), so the row's top ``k``
    lie in the groups whose maximum reaches it (usually about ``k`` groups). Only their members are
    ordered, by score then column, so ties resolve exactly as on the whole row. Rows where the
    bound keeps too much (e.g. mostly ``-inf``) are ranked whole.
    """
    scores = np.asarray(scores)
    n_rows, n = scores.shape
    if k <= 0:
        return np.empty((n_rows, 0), dtype=np.int64)
    if np.isnan(scores).any():
        scores = np.where(np.isnan(scores), -np.inf, scores)
    if k >= n:
        return np.argsort(-scores, axis=1, kind="stable")[:, :k]
    if n >= _PREFILTER_MIN and 4 * _BLOCK * k <= n and np.issubdtype(scores.dtype, np.floating) and n_rows:
        return _topk_prefiltered(scores, k)
    return _topk_direct(scores, k)


def _topk_direct(scores: np.ndarray, k: int) -> np.ndarray:
    """``topk`` over whole rows (no NaN, ``k < n``)."""
    n_rows = scores.shape[0]
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]  # k-th largest value per row
    chosen = scores > kth
    short = k - chosen.sum(axis=1)  # how many of the tied-with-kth items each row still needs
    tied = scores == kth
    n_tied = tied.sum(axis=1)
    excess = np.flatnonzero(n_tied > short)  # rows where only the lowest-index ties may go in
    if len(excess):
        t = tied[excess]
        t &= np.cumsum(t, axis=1, dtype=np.int32) <= short[excess, None]
        tied[excess] = t
    chosen |= tied
    part = np.nonzero(chosen)[1].reshape(n_rows, k).astype(np.int64)  # ascending index per row
    part_scores = np.take_along_axis(scores, part, axis=1)
    # order by score desc, then index asc, for deterministic ties
    order = np.lexsort((part, -part_scores), axis=1)
    return np.take_along_axis(part, order, axis=1)


def _topk_prefiltered(scores: np.ndarray, k: int) -> np.ndarray:
    """``topk`` of wide float rows through the group-maxima bound (see ``topk``)."""
    n_rows, n = scores.shape
    width = n // _BLOCK
    whole = width * _BLOCK
    # group g holds columns g, g + width, g + 2 width, ... (strided: the max is elementwise over 16 slices)
    maxima = scores[:, :whole].reshape(n_rows, _BLOCK, width).max(axis=1)
    bound = -np.partition(-maxima, k - 1, axis=1)[:, k - 1 : k]
    reach = maxima >= bound  # >= k groups per row, each with an entry >= bound
    n_groups = reach.sum(axis=1)
    light = n_groups * _BLOCK <= max(n // 8, k)
    out = np.empty((n_rows, k), dtype=np.int64)
    if not light.all():
        heavy = np.flatnonzero(~light)
        out[heavy] = _topk_direct(scores[heavy], k)
    rows = np.flatnonzero(light)
    if not len(rows):
        return out
    reach, n_groups = reach[rows], n_groups[rows]
    r, g = np.nonzero(reach)
    pos = np.arange(len(g)) - (np.cumsum(n_groups) - n_groups)[r]
    groups = np.full((len(rows), int(n_groups.max())), -1, dtype=np.int64)
    groups[r, pos] = g
    # candidates: every member of a reaching group, plus the columns past the last whole group
    cols = (groups[:, :, None] + width * np.arange(_BLOCK)[None, None, :]).reshape(len(rows), -1)
    pad = groups.repeat(_BLOCK, axis=1) < 0
    cols = np.concatenate([cols, np.broadcast_to(np.arange(whole, n), (len(rows), n - whole))], axis=1)
    pad = np.concatenate([pad, np.zeros((len(rows), n - whole), bool)], axis=1)
    cols[pad] = n  # after every real column: loses every tie
    vals = np.take_along_axis(scores[rows], np.minimum(cols, n - 1), axis=1)
    vals[pad] = -np.inf
    order = np.lexsort((cols, -vals), axis=1)[:, :k]  # score desc, then column asc
    out[rows] = np.take_along_axis(cols, order, axis=1)
    return out


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest finite entries of one row, best first (ties: lower index).

    The query side's variant of ``topk``: one user at a time, and ``-inf`` (masked) entries are
    left out instead of padding the result.
    """
    finite = np.flatnonzero(np.isfinite(scores))
    if len(finite) > k:
        part = np.argpartition(-scores[finite], k - 1)[:k]
        kth = scores[finite[part]].min()
        finite = finite[scores[finite] >= kth]  # everything tied with the k-th competes on index
    order = np.lexsort((finite, -scores[finite]))
    return finite[order][:k]


def distinct(values: np.ndarray) -> np.ndarray:
    """The sorted distinct values of ``values`` (flattened): ``np.unique(values)``, by a sort.

    NumPy 2.3+ answers a plain ``np.unique`` through a hash table, which on millions of integer
    ids (a split's users, a model's seen (user, item) keys) is an order of magnitude slower than
    sorting and dropping repeats; every stage that reads a split pays it, so the pipeline uses
    this. Floating-point input goes to ``np.unique`` (its NaN handling).
    """
    x = np.asarray(values).ravel()
    if x.dtype.kind not in "iub":
        return np.unique(x)
    x = np.sort(x)
    if len(x) < 2:
        return x
    keep = np.empty(len(x), bool)
    keep[0] = True
    np.not_equal(x[1:], x[:-1], out=keep[1:])
    return x[keep]


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """Unit rows (float32, C-contiguous); zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(np.divide(x, norms, out=np.zeros_like(x), where=norms > 0), dtype=np.float32)


def cosine_neighbours(
    vectors: np.ndarray, queries: np.ndarray, k: int, valid: np.ndarray | None = None, batch_size: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` cosine neighbours of each query row among the ``valid`` rows, the query excluded.

    Best first, ties to the lower index; padded with -1 / -inf (also for a query that is not valid).
    """
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
