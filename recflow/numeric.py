"""Numeric helpers every layer shares: top-K selection, unit rows, cosine neighbours.

The bottom of the import graph (NumPy only): models, genre metrics, indexes and the query side
all rank and normalise the same way, so one definition of "best first, ties to the lower index"
and of "a zero row stays zero" holds everywhere.
"""

from __future__ import annotations

import numpy as np


def topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` largest entries per row, sorted best first (ties: lower index).

    The tie rule holds at the cut too: among items tied with the ``k``-th score, the lowest
    indices are kept (``argpartition`` alone keeps an arbitrary subset of them). NaN ranks last.
    """
    scores = np.asarray(scores)
    n_rows, n = scores.shape
    if k <= 0:
        return np.empty((n_rows, 0), dtype=np.int64)
    if np.isnan(scores).any():
        scores = np.where(np.isnan(scores), -np.inf, scores)
    if k >= n:
        return np.argsort(-scores, axis=1, kind="stable")[:, :k]
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
