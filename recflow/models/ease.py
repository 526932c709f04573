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
Persistence: ``B``, the Gram matrix ``X^T X`` over ``items_`` (``G_``, without the ridge; kept for
warm starts) and the binarised train matrix go to ``arrays.npz``.

Warm start (``warm_starts``): an append changes the Gram matrix exactly and cheaply. ``G`` is a
sum over users of ``x_u x_u^T``, so with yesterday's ``G`` moved to tonight's item indices (new
items: zero rows and columns), only the users with a new row are redone:
``G = G_old - X_old[t]^T X_old[t] + X[t]^T X[t]`` over those users ``t`` (only their rows are read
from yesterday's ``X``; the difference is sparse and added in place). Integer counts in
float32, so the result equals a cold ``X^T X`` bit for bit. The inversion is the cubic part, and a
night moves ``G`` little, so it is re-solved only when ``G`` has moved by more than ``warm_resolve``
(relative Frobenius norm, 2% by default) since the fit whose ``B`` it would keep: the model
carries ``gram_drift_``, the sum of each night's ``|dG|_F`` since the last solve (by the triangle
inequality an upper bound of ``|G - G_solved|_F``, so it re-solves no later than the exact test
would), and re-solves when ``gram_drift_ / |G|_F`` exceeds ``warm_resolve``, when an earlier
solved item left the kept subset, or when the earlier fit has no ``B``. Below the threshold it
keeps yesterday's ``B`` (moved to tonight's indices) and folds in tonight's histories: the score
is ``X B`` with tonight's ``X``, so every user, new ones included, is ranked from today's history;
items new since the solve have no column of ``B`` and are not recommended until the next solve
(``solved_`` marks the items ``B`` covers; ``warm_fit_`` states ``resolved``, why, and the
relative change). ``warm_resolve=0`` re-solves every warm fit, which then equals a cold fit
exactly (EASE; EDLAE to float32 rounding). The weekly cold rebuild bounds the drift whatever the
threshold. With ``top_items`` the kept subset can move: items that leave it are simply dropped
from ``G`` (exact), and items that enter it are exact only when they are brand new (no history
outside the old subset's Gram matrix); an item with history that enters gets its row and column
of ``G`` from tonight's whole ``X`` (``X[:, e]^T X``: a few sparse columns, exact), so the Gram
update stays exact and only the solve is paid (an item that left the subset re-solves ``B``).

``folds_in_history``: ``score`` is ``X_u B``, so any list of items scores as a new ``X_u`` row (items
outside ``items_`` and, with ``implicit_threshold``, a history has no ratings: every item counts).
Persistence: ``B``, the Gram matrix ``G_`` (for warm starts) and the binarised train matrix go to ``arrays.npz``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from recflow.models.base import Recommender, spread_items
from recflow.models.context import FitContext
from recflow.models.search_space import Dimension, FloatRange
from recflow.prep.interactions import Interactions


class EASERecommender(Recommender):
    """EASE^R closed form; ``l2`` is the ridge lambda (about 500 is best on ML-1M)."""

    name = "ease"
    warm_starts = True
    folds_in_history = True
    search_space: ClassVar[dict[str, Dimension]] = {"l2": FloatRange(10.0, 10_000.0, log=True)}

    #: what the config accepts (checked when it loads, not when fit raises later)
    param_bounds = {"l2": {"gt": 0}, "top_items": {"ge": 1}, "warm_resolve": {"ge": 0}}

    def __init__(
        self, l2: float = 500.0, implicit_threshold: float | None = None, max_items: int = 30_000, top_items: int | None = None, warm_resolve: float = 0.02
    ) -> None:
        self.l2 = l2
        self.implicit_threshold = implicit_threshold
        self.max_items = max_items
        self.top_items = top_items
        self.warm_resolve = warm_resolve

    def catalogue_scope(self) -> str | None:
        if self.top_items is None:
            return None
        return f"{self.name}: fitted on the {int(self.top_items):,} most popular training items only (top_items); every other item is never recommended"

    def fit(self, train: Interactions, context: FitContext | None = None) -> EASERecommender:
        self._check_params()
        warm = self._warm(context)
        self.items_, self.X_ = self._kept_items(train)
        W = self._weighted(self.X_)
        kept_map = self._kept_map(warm) if warm is not None else None
        self.warm_started_ = kept_map is not None
        self.warm_fit_ = None
        drift = 0.0
        if kept_map is not None:
            old = warm.model
            grown = _grown_gram(old.G_, kept_map, self.X_.shape[1])
            G = grown.copy(order="F")
            touched = self._touched_users(warm, train, kept_map)
            if len(touched):
                old_W = _earlier_rows(old.X_, warm.user_map[touched], kept_map, self._weighted)
                new_W = W[touched]
                delta = (new_W.T @ new_W - old_W.T @ old_W).tocoo()  # sparse: the touched users' items only
                G[delta.row, delta.col] += delta.data.astype(np.float32)
            if len(self._entered):  # their rows and columns of X^T X, from every user's history, replace the partial ones
                cross = (W[:, self._entered].T @ W).toarray().astype(np.float32)
                G[self._entered, :] = cross
                G[:, self._entered] = cross.T
            drift = float(np.linalg.norm(G - grown)) + float(getattr(old, "gram_drift_", 0.0))
            del grown
        else:
            G = _gram(W)
        self.G_ = G
        kept = self._kept_weights(warm, kept_map, drift) if kept_map is not None else None
        if kept is not None:
            self.B_, self.solved_, self.gram_drift_ = kept
        else:
            work = np.array(G, dtype=np.float32, order="F", copy=True)
            work[np.diag_indices(len(work))] += np.asarray(self._ridge(np.diag(G).astype(np.float64)), np.float32)
            self.B_ = _weights_from_gram(work)
            self.solved_ = np.ones(len(self.items_), bool)
            self.gram_drift_ = 0.0
        self.history_: list[dict] = []
        self._remember_seen(train)
        return self

    def _touched_users(self, warm, train: Interactions, kept_map: np.ndarray) -> np.ndarray:
        """Every user whose weighted row over the kept items can differ from yesterday's (a superset: equal rows
        cancel exactly): those with a new row, and with ``top_items`` those holding an item that entered or left
        the kept subset (their row over it changed, and with it EDLAE's user weight)."""
        touched = warm.changed_users(train)
        if len(self._entered):
            touched[np.unique(self.X_[:, self._entered].tocoo().row)] = True
        old = warm.model
        still = _still_kept(len(old.items_), kept_map)
        if not still.all():
            inverse = np.full(old.X_.shape[0], -1, dtype=np.int64)
            inverse[warm.user_map[warm.user_map >= 0]] = np.flatnonzero(warm.user_map >= 0)
            rows = inverse[np.unique(old.X_[:, np.flatnonzero(~still)].tocoo().row)]
            touched[rows[rows >= 0]] = True
        return np.flatnonzero(touched)

    def _kept_weights(self, warm, kept_map: np.ndarray, drift: float) -> tuple[np.ndarray, np.ndarray, float] | None:
        """Yesterday's ``B`` on tonight's kept items (with its ``solved_`` mask and the carried drift) when
        ``G`` moved by at most ``warm_resolve`` since it was solved; else None (re-solve). Sets ``warm_fit_``."""
        old = warm.model
        norm = float(np.linalg.norm(self.G_))
        change = drift / norm if norm else (0.0 if drift == 0 else float("inf"))
        old_solved = np.asarray(getattr(old, "solved_", np.ones(len(old.items_), bool)), bool)
        still = _still_kept(len(old.items_), kept_map)
        why = None
        if getattr(old, "B_", None) is None:
            why = "the earlier fit has no B"
        elif (old_solved & ~still).any():
            why = "an item B was solved for left the kept items (top_items)"
        elif change > float(self.warm_resolve):
            why = f"G moved {change:.2%} since the last solve (relative Frobenius norm, summed over nights), above warm_resolve {float(self.warm_resolve):.2%}"
        kept = f"G moved {change:.2%} since the last solve, within warm_resolve {float(self.warm_resolve):.2%}: B kept, tonight's X folded in"
        self.warm_fit_ = {"resolved": why is not None, "why": why or kept, "gram_change": round(change, 6)}
        if why is not None:
            return None
        known = np.flatnonzero(kept_map >= 0)
        B = _moved_square(old.B_, kept_map, len(kept_map), "C")
        solved = np.zeros(len(kept_map), bool)
        solved[known] = old_solved[kept_map[known]]
        self.warm_fit_["unsolved_items"] = int((~solved).sum())
        return B, solved, drift

    def _check_params(self) -> None:
        if not float(self.l2) > 0:
            raise ValueError(f"l2 must be > 0 (G = X^T X + l2 I must be invertible), got {self.l2}")

    def _weighted(self, X: sp.csr_matrix) -> sp.csr_matrix:
        """The matrix whose Gram matrix the model inverts (EASE: X itself)."""
        return X

    def _ridge(self, gram_diag: np.ndarray) -> float | np.ndarray:
        """What is added to the Gram matrix's diagonal (EASE: ``l2``)."""
        return float(self.l2)

    def warm_start_refusal(self) -> str | None:
        return None

    def _kept_map(self, warm) -> np.ndarray | None:
        """For each kept item tonight, its column in the earlier fit's ``items_`` (-1: not there), or None when the
        earlier fit kept no Gram matrix. Sets ``_entered``: the kept items with history that the earlier subset lacked."""
        old = warm.model
        if getattr(old, "G_", None) is None:
            return None
        position = np.full(old.n_items, -1, dtype=np.int64)
        position[old.items_] = np.arange(len(old.items_))
        earlier = warm.item_map[self.items_]
        kept_map = np.where(earlier >= 0, position[np.clip(earlier, 0, None)], -1)
        self._entered = np.flatnonzero((kept_map < 0) & (earlier >= 0))  # items with history that entered the kept subset
        return kept_map

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
        return self._spread(self._times_weights(self.X_[users]))

    def _score_history(self, X: sp.csr_matrix) -> np.ndarray:
        return self._spread(self._times_weights(X if len(self.items_) == self.n_items else X[:, self.items_]))

    def _times_weights(self, X: sp.csr_matrix) -> np.ndarray:
        """``X @ B``, reading only the rows of ``B`` that ``X``'s users have when that is under half of them.

        The same sums in the same order either way; a few users (a query) then touch a few rows of
        a memory-mapped ``B`` (``recflow.models.base.memory_mapped``) instead of all of it (SciPy's
        product would copy the whole, unaligned, mapped matrix first).
        """
        cols = np.unique(X.indices)
        if 2 * len(cols) >= self.B_.shape[0]:
            return np.asarray(X @ self.B_, dtype=np.float32)
        return np.asarray(X[:, cols] @ np.asarray(self.B_[cols]), dtype=np.float32)

    def _spread(self, sub: np.ndarray) -> np.ndarray:
        solved = getattr(self, "solved_", None)
        if solved is not None and not solved.all():  # items new since B was solved: never recommended until the next solve
            return spread_items(sub[:, solved], self.items_[solved], self.n_items)
        return spread_items(sub, self.items_, self.n_items)

    def item_weights(self) -> np.ndarray:
        """The learned matrix ``B`` (row = source item, column = scored item) over ``items_``
        (every item unless ``top_items`` is set)."""
        self._check_fitted()
        return self.B_

    # -- persistence -------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        x = self.X_.tocoo()
        gram = {} if getattr(self, "G_", None) is None else {"G": self.G_, "gram_drift": np.array(float(getattr(self, "gram_drift_", 0.0)))}
        solved = getattr(self, "solved_", None)
        solved = {} if solved is None or solved.all() else {"solved": solved}
        return {"B": self.B_, "x_row": x.row, "x_col": x.col, "items": self.items_, **gram, **solved}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.B_ = np.ascontiguousarray(arrays["B"], dtype=np.float32)
        n_users, n_items = self._seen.shape
        row, col = arrays["x_row"], arrays["x_col"]
        self.items_ = np.asarray(arrays["items"], dtype=np.int64) if "items" in arrays else np.arange(n_items, dtype=np.int64)
        self.X_ = sp.csr_matrix((np.ones(len(row), np.float32), (row, col)), shape=(n_users, len(self.items_)))
        self.G_ = np.asarray(arrays["G"], dtype=np.float32) if "G" in arrays else None
        self.gram_drift_ = float(arrays["gram_drift"]) if "gram_drift" in arrays else 0.0
        self.solved_ = np.asarray(arrays["solved"], bool) if "solved" in arrays else np.ones(len(self.items_), bool)
        self.history_ = []


def _binarise(train: Interactions, threshold: float | None) -> sp.csr_matrix:
    keep = np.ones(len(train), bool) if threshold is None else train.ratings >= threshold
    return sp.csr_matrix(
        (np.ones(int(keep.sum()), np.float32), (train.user_idx[keep], train.item_idx[keep])),
        shape=(train.n_users, train.n_items),
    )


def _gram(X: sp.csr_matrix) -> np.ndarray:
    """``X^T X`` dense float32 (Fortran order): counts are integers, exact in float32 below 2**24 co-occurrences."""
    return (X.T @ X).toarray(order="F").astype(np.float32, order="F", copy=False)


def _still_kept(n_old_items: int, kept_map: np.ndarray) -> np.ndarray:
    """Per column of the earlier fit's ``items_``: whether tonight's kept items still hold it."""
    still = np.zeros(n_old_items, bool)
    still[kept_map[kept_map >= 0]] = True
    return still


def _earlier_rows(X_old: sp.csr_matrix, old_users: np.ndarray, kept_map: np.ndarray, weighted) -> sp.csr_matrix:
    """The earlier fit's weighted rows of these users (``old_users``: their earlier indices, -1 for a new user: an
    empty row) on tonight's kept item columns (``kept_map[new] = old``). ``weighted`` (the model's row weighting)
    sees each row as it was, over the earlier kept items; only then are the columns no longer kept dropped."""
    inverse = np.full(X_old.shape[1], -1, dtype=np.int64)
    inverse[kept_map[kept_map >= 0]] = np.flatnonzero(kept_map >= 0)
    sub = weighted(X_old[np.clip(old_users, 0, None)]).tocoo()
    keep = (old_users[sub.row] >= 0) & (inverse[sub.col] >= 0)
    return sp.csr_matrix((sub.data[keep], (sub.row[keep], inverse[sub.col[keep]])), shape=(len(old_users), len(kept_map)))


def _grown_gram(G: np.ndarray | None, item_map: np.ndarray, n_items: int) -> np.ndarray:
    """An earlier Gram matrix on tonight's item indices; new items get zero rows and columns."""
    if G is None:
        raise ValueError("the earlier fit kept no Gram matrix: fit cold")
    return _moved_square(G, item_map, n_items, "F")


def _moved_square(M: np.ndarray, item_map: np.ndarray, n_items: int, order: str) -> np.ndarray:
    """An items x items matrix moved to tonight's indices (``item_map[new] = old``, -1 for new: zero rows and
    columns); a plain copy where the known items keep their order and lead (the common night: no new item
    sorts before an old one), instead of a fancy-indexed gather of every cell."""
    out = np.zeros((n_items, n_items), dtype=np.float32, order=order)
    known = np.flatnonzero(item_map >= 0)
    n = len(known)
    if np.array_equal(known, np.arange(n)) and np.array_equal(item_map[known], np.arange(n)) and M.shape[0] == n:
        out[:n, :n] = M
    else:
        out[np.ix_(known, known)] = np.asarray(M)[np.ix_(item_map[known], item_map[known])]
    return out


def _ease_weights(X: sp.csr_matrix, l2: float | np.ndarray) -> np.ndarray:
    """B of EASE for a binary ``X``, float32, C-contiguous.

    ``l2``: the ridge added to the Gram matrix's diagonal, one value or one per item (EDLAE's).
    """
    G = _gram(X)
    G[np.diag_indices(len(G))] += np.asarray(l2, np.float32)
    return _weights_from_gram(G)


def _weights_from_gram(G: np.ndarray) -> np.ndarray:
    """B from a ridged Gram matrix (float32, Fortran order), computed in place of it."""
    n = G.shape[0]
    if n == 0:
        return np.zeros((0, 0), np.float32)
    import scipy.linalg as sl  # here, not at import: loading a fitted EASE to recommend needs no LAPACK (~0.1 s)

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
