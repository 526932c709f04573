"""Item-kNN (Sarwar et al. 2001; RecBole's ItemKNN): cosine item-item similarity, top-k neighbours.

On the binarised train matrix ``X`` (users x items; every interaction, or those rated >=
``implicit_threshold`` when set)::

    sim(i, j) = (X^T X)_ij / (sqrt(n_i n_j) + shrink)      i != j, n_i = users of item i
    W[i, j]   = sim(i, j) if i is among the k most similar items of j (ties: lower index), else 0
    score(u, j) = sum over the user's items i of W[i, j]

So an item scores by how similar it is to what the user already has, counting only its own
``k`` nearest neighbours. ``W`` is built a block of target columns at a time (a dense items x
block slice of ``X^T X``, its top-k kept in a sparse matrix), so memory is O(items x block +
items x k), never items^2. Ranking only; no vectors (the similarity lives in ``W``, not in a
space). Deterministic: no randomness at all. ``folds_in_history``: a list of items scores as a
new row of ``X`` (every item counts, whatever ``implicit_threshold``).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from recflow.models.base import Recommender
from recflow.models.context import FitContext
from recflow.models.search_space import Dimension, FloatRange, IntRange
from recflow.prep.interactions import Interactions
from recflow.utils.numeric import topk

_BLOCK = 1024  # target items per block of the similarity computation


class ItemKNNRecommender(Recommender):
    """Cosine item-item neighbourhood: a user's items vote for their k nearest neighbours."""

    name = "item_knn"
    folds_in_history = True
    search_space: ClassVar[dict[str, Dimension]] = {
        "k": IntRange(10, 1000, log=True),
        "shrink": FloatRange(0.0, 100.0),
    }

    #: what the config accepts (checked when it loads, not when fit raises later)
    param_bounds = {"k": {"ge": 1}, "shrink": {"ge": 0}}

    def __init__(self, k: int = 100, shrink: float = 0.0, implicit_threshold: float | None = None) -> None:
        self.k = k
        self.shrink = shrink
        self.implicit_threshold = implicit_threshold

    def fit(self, train: Interactions, context: FitContext | None = None) -> ItemKNNRecommender:
        if int(self.k) < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if float(self.shrink) < 0:
            raise ValueError(f"shrink must be >= 0, got {self.shrink}")
        keep = np.ones(len(train), bool) if self.implicit_threshold is None else train.ratings >= self.implicit_threshold
        self.X_ = sp.csr_matrix(
            (np.ones(int(keep.sum()), np.float32), (train.user_idx[keep], train.item_idx[keep])),
            shape=(train.n_users, train.n_items),
        )
        self.W_ = _neighbour_weights(self.X_, int(self.k), float(self.shrink))
        self._remember_seen(train)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        return np.asarray((self.X_[users] @ self.W_).toarray(), dtype=np.float32)

    def _score_history(self, X: sp.csr_matrix) -> np.ndarray:
        return np.asarray((X @ self.W_).toarray(), dtype=np.float32)

    def item_weights(self) -> sp.csc_matrix:
        """The sparse items x items ``W`` (row = the user's item, column = the scored item)."""
        self._check_fitted()
        return self.W_

    def _state(self) -> dict[str, np.ndarray]:
        x, w = self.X_.tocoo(), self.W_.tocoo()
        return {"x_row": x.row, "x_col": x.col, "w_row": w.row, "w_col": w.col, "w_val": w.data}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        n_users, n_items = self._seen.shape
        self.X_ = sp.csr_matrix((np.ones(len(arrays["x_row"]), np.float32), (arrays["x_row"], arrays["x_col"])), shape=(n_users, n_items))
        self.W_ = sp.csr_matrix((arrays["w_val"].astype(np.float32), (arrays["w_row"], arrays["w_col"])), shape=(n_items, n_items))


def _neighbour_weights(X: sp.csr_matrix, k: int, shrink: float, block: int = _BLOCK) -> sp.csr_matrix:
    """``W`` of the module docstring, float32 CSR (items x items).

    A block of target items is a block of rows of ``X^T X`` (``X^T`` as CSR, a sparse product),
    made dense in C order, so the division and the top-k read contiguous rows (the transposed
    items x block layout made the top-k gather strided columns).
    """
    n = X.shape[1]
    Xt = X.T.tocsr()  # items x users
    norms = np.sqrt(np.asarray(X.sum(axis=0), dtype=np.float64).ravel())
    k_eff = min(k, max(n - 1, 0))
    rows, cols, vals = [], [], []
    if k_eff == 0:
        return sp.csr_matrix((n, n), dtype=np.float32)
    for start in range(0, n, block):
        targets = np.arange(start, min(start + block, n))
        sim = (Xt[targets] @ X).toarray().astype(np.float64, copy=False)  # b x n co-occurrence counts
        denom = np.multiply.outer(norms[targets], norms)
        denom += shrink
        np.divide(sim, denom, out=sim, where=denom > 0)
        sim[denom <= 0] = 0.0
        del denom
        sim[np.arange(len(targets)), targets] = 0.0  # an item is not its own neighbour
        best = topk(sim, k_eff)  # b x k_eff source items per target, best first, ties to the lower index
        best_sim = np.take_along_axis(sim, best, axis=1)
        nonzero = best_sim > 0
        rows.append(best[nonzero])
        cols.append(np.repeat(targets, k_eff).reshape(len(targets), k_eff)[nonzero])
        vals.append(best_sim[nonzero])
    return sp.csr_matrix((np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
