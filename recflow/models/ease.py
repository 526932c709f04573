"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders"): an item-item model in closed form.

On the binarised train matrix ``X`` (users x items; 1 where the user interacted, or where the
rating is >= ``implicit_threshold`` when that is set)::

    G = X^T X + l2 I,   P = G^-1,   B_ij = -P_ij / P_jj  (i != j),   B_jj = 0
    score(u) = X_u B

``B`` is a dense items x items float32 matrix. ``G`` is built as a sparse product, then inverted
in place by a float32 Cholesky factorisation (LAPACK ``potrf`` + ``potri``), then turned into
``B`` in place, so the peak is about one items x items float32 matrix (plus the sparse ``G``):
4 bytes x items^2. float32 rather than float64: the same ranking metrics on MovieLens at half
the memory and a fraction of the time. Catalogues above ``max_items`` are refused with
an error (memory is quadratic, time cubic in the item count): use an item-kNN, factorisation
or user-kNN model there, or restrict the catalogue (e.g. a minimum item count), or fit EASE on
the ``top_items`` most popular training items only (``items_``; ties to the lower index): ``B`` is
then ``top_items`` x ``top_items``, a user's score uses only their interactions with those items,
and every other item scores ``-inf`` (never recommended). That is how the ML-25M preset keeps EASE
(its summary states the subset); ``top_items=None`` (the default) is the whole catalogue.

Ranking only (``predicts_ratings`` is False). ``history_`` is empty (no epochs).
Persistence: ``B`` and the binarised train matrix go to ``arrays.npz``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.linalg as sl
import scipy.sparse as sp

from recflow.models.base import Recommender
from recflow.models.context import FitContext
from recflow.models.search_space import Dimension, FloatRange
from recflow.prep.interactions import Interactions


class EASERecommender(Recommender):
    """EASE^R closed form; ``l2`` is the ridge lambda (about 500 is best on ML-1M)."""

    name = "ease"
    search_space: ClassVar[dict[str, Dimension]] = {"l2": FloatRange(10.0, 10_000.0, log=True)}

    #: what the config accepts (checked when it loads, not when fit raises later)
    param_bounds = {"l2": {"gt": 0}, "top_items": {"ge": 1}}

    def __init__(self, l2: float = 500.0, implicit_threshold: float | None = None, max_items: int = 30_000, top_items: int | None = None) -> None:
        self.l2 = l2
        self.implicit_threshold = implicit_threshold
        self.max_items = max_items
        self.top_items = top_items

    def fit(self, train: Interactions, context: FitContext | None = None) -> EASERecommender:
        if not float(self.l2) > 0:
            raise ValueError(f"l2 must be > 0 (G = X^T X + l2 I must be invertible), got {self.l2}")
        self.items_, self.X_ = self._kept_items(train)
        self.B_ = _ease_weights(self.X_, float(self.l2))
        self.history_: list[dict] = []
        self._remember_seen(train)
        return self

    def _kept_items(self, train: Interactions) -> tuple[np.ndarray, sp.csr_matrix]:
        """The items the dense matrix covers (all, or the ``top_items`` most popular) and the binary X over them."""
        if self.top_items is not None and int(self.top_items) < 1:
            raise ValueError(f"top_items must be >= 1 or None (the whole catalogue), got {self.top_items}")
        n_items = train.n_items if self.top_items is None else min(train.n_items, int(self.top_items))
        self._check_catalogue(n_items)
        X = _binarise(train, self.implicit_threshold)
        if self.top_items is None:
            return np.arange(train.n_items, dtype=np.int64), X
        counts = np.bincount(X.indices, minlength=train.n_items)
        items = np.sort(np.argsort(-counts, kind="stable")[:n_items]).astype(np.int64)
        return items, X[:, items].tocsr()

    def _check_catalogue(self, n_items: int) -> None:
        if n_items > int(self.max_items):
            raise ValueError(
                f"{self.name} needs a dense {n_items} x {n_items} item-item matrix "
                f"(~{4 * n_items**2 / 2**30:.1f} GiB float32, cubic time); the limit is max_items="
                f"{self.max_items}. Use a factorisation (mf) or neighbourhood (user_cf) model, "
                "or shrink the catalogue (minimum item interactions, or top_items)."
            )

    def score(self, users: np.ndarray) -> np.ndarray:
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        sub = np.asarray(self.X_[users] @ self.B_, dtype=np.float32)
        if len(self.items_) == self.n_items:
            return sub
        out = np.full((len(users), self.n_items), -np.inf, dtype=np.float32)
        out[:, self.items_] = sub
        return out

    def item_weights(self) -> np.ndarray:
        """The learned matrix ``B`` (row = source item, column = scored item) over ``items_``
        (every item unless ``top_items`` is set)."""
        self._check_fitted()
        return self.B_

    # -- persistence -------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        x = self.X_.tocoo()
        return {"B": self.B_, "x_row": x.row, "x_col": x.col, "items": self.items_}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.B_ = np.ascontiguousarray(arrays["B"], dtype=np.float32)
        n_users, n_items = self._seen.shape
        row, col = arrays["x_row"], arrays["x_col"]
        self.items_ = np.asarray(arrays["items"], dtype=np.int64) if "items" in arrays else np.arange(n_items, dtype=np.int64)
        self.X_ = sp.csr_matrix((np.ones(len(row), np.float32), (row, col)), shape=(n_users, len(self.items_)))
        self.history_ = []


def _binarise(train: Interactions, threshold: float | None) -> sp.csr_matrix:
    keep = np.ones(len(train), bool) if threshold is None else train.ratings >= threshold
    return sp.csr_matrix(
        (np.ones(int(keep.sum()), np.float32), (train.user_idx[keep], train.item_idx[keep])),
        shape=(train.n_users, train.n_items),
    )


def _ease_weights(X: sp.csr_matrix, l2: float | np.ndarray) -> np.ndarray:
    """B of EASE for a binary ``X``, float32, C-contiguous, computed in place.

    ``l2``: the ridge added to the Gram matrix's diagonal, one value or one per item (EDLAE's).
    """
    n = X.shape[1]
    if n == 0:
        return np.zeros((0, 0), np.float32)
    # Gram matrix: counts are integers, exact in float32 below 2**24 co-occurrences
    G = (X.T @ X).toarray(order="F").astype(np.float32, order="F", copy=False)
    G[np.diag_indices(n)] += np.asarray(l2, np.float32)
    potrf, potri = sl.lapack.get_lapack_funcs(("potrf", "potri"), (G,))
    c, info = potrf(G, lower=False, overwrite_a=True, clean=False)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: X^T X + l2 I is not positive definite in float32 (potrf info={info}); raise l2")
    P, info = potri(c, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: inverting the Cholesky factor failed (potri info={info})")
    _fill_lower_from_upper(P)
    # P is symmetric now, so its transpose (a C-contiguous view) is P too
    P = P.T
    d = np.diag(P).copy()
    P /= -d[None, :]  # B_ij = -P_ij / P_jj
    P[np.diag_indices(n)] = 0.0
    return np.ascontiguousarray(P)


def _fill_lower_from_upper(A: np.ndarray, block: int = 1024) -> None:
    """Symmetrise ``A`` in place from its upper triangle, in blocks (no n x n temporaries)."""
    n = A.shape[0]
    for s in range(0, n, block):
        e = min(s + block, n)
        A[s:e, :s] = A[:s, s:e].T
        d = A[s:e, s:e]
        A[s:e, s:e] = np.triu(d) + np.triu(d, 1).T
