"""Biased matrix factorisation for explicit ratings, fitted by alternating least squares.

Model: ``r_hat(u, i) = mu + b_u + b_i + p_u . q_i`` with ``mu`` the training mean. Objective::

    sum_{(u,i) in train} (r_ui - r_hat(u, i))^2
      + sum_u n_u^alpha (reg |p_u|^2 + reg_bias b_u^2) + sum_i n_i^alpha (reg |q_i|^2 + reg_bias b_i^2)

with ``n_u`` / ``n_i`` the training counts and ``alpha = reg_exponent``. ``alpha = 1`` is the
weighted-lambda ALS of Zhou et al. 2008 (the objective SGD optimises too); ``alpha = 0`` is plain
ridge. In between, the penalty grows with the count but sub-linearly; on MovieLens a value in
between tuned better than either end.

Each epoch solves every user exactly with the items fixed, then every item with the users fixed:
for user ``u`` the unknown ``x_u = [p_u, b_u]`` with design rows ``z_i = [q_i, 1]`` and targets
``r_ui - mu - b_i`` is a (factors+1)-dimensional ridge problem. The problems are batched, not
looped: users are sorted by count and cut into chunks of similar count; each chunk gathers its
padded design tensor (chunk x max count x (factors+1), padding points at a zero row), forms the
Gram matrices with one stacked float32 ``matmul`` and solves them with one stacked float64
``np.linalg.solve``. BLAS runs single-threaded inside ``fit`` (many small products: threads only
add overhead, on a loaded machine many times over). ``threadpoolctl``'s limit is process-wide, so
while ``fit`` runs it also applies to models training in other threads of the process (their
LAPACK results, e.g. a TruncatedSVD's, can differ in the last bits).

A user or item without training ratings keeps zero factors and bias (its prediction falls back
to the other side's bias). ``predict`` takes index ``-1`` for an unknown user or item, which also
contributes zero; predictions are clipped to the training rating range when ``clip`` (ranking
scores are not clipped). Deterministic for a given ``seed`` (the initial item factors are
N(0, init_std^2); user factors are solved first, so they need no initial value).

Warm start (``warm_starts``): every factor and bias starts from the earlier fit's (new items: the
cold initial draw; new users: zero, solved first) and ``warm_epochs`` ALS epochs run (at least
``warm_min_epochs``, 2: the first solves the changed users against the old items, the second
lets the items move for them). A warm epoch is block-coordinate ALS over what changed: it solves
exactly, from all their rows, the users with a new row tonight, then the items with a new row;
every other user and item keeps its factors (each was the exact solution when last solved, and
only the changed rows moved since). Its cost is the changed users' rows plus the changed items'
rows, not two passes over every row; the weekly cold rebuild re-solves everyone. A warm fit
keeps the earlier fit's ``mu`` (the kept biases were solved against it). ``warm_fit_``
states how many users and items were solved. ``train_rmse`` of a warm epoch is over the solved
items' rows.

``history_``: per epoch ``train_rmse`` (and ``valid_rmse`` when ``context.valid`` is given). With
a validation part, training stops after ``patience`` epochs without a better validation RMSE and
the best epoch's parameters are kept (``best_epoch_``).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recflow.evaluation.metrics import rmse
from recflow.models.base import Recommender
from recflow.models.context import FitContext
from recflow.models.search_space import Dimension, FloatRange, IntRange
from recflow.models.warm import warm_epochs
from recflow.prep.interactions import Interactions

_CHUNK_CELLS = 1 << 18  # padded design cells (rows x width x (factors+1)) per stacked solve: 1 MB float32
_PRED_CHUNK = 1 << 20


class BiasedMFRecommender(Recommender):
    """mu + b_u + b_i + p_u . q_i by ALS with count-scaled ridge penalties (see module doc)."""

    name = "mf"
    trains_in_epochs = True
    warm_starts = True
    warm_min_epochs = 2
    # around the defaults (chosen on ML-1M random 90/10): a few dozen trials must find
    # something, and random start-up trials over decades of reg_bias mostly land far off
    search_space: ClassVar[dict[str, Dimension]] = {
        "factors": IntRange(16, 128, log=True),
        "reg": FloatRange(0.2, 3.0, log=True),
        "reg_bias": FloatRange(0.01, 1.0, log=True),
        "reg_exponent": FloatRange(0.3, 0.9),
        "epochs": IntRange(10, 40),  # a ceiling while tuning (early stopping on valid); exact in a run without valid
    }
    item_spaces = ("items",)
    user_space = True
    predicts_ratings = True

    #: what the config accepts (checked when it loads, not when fit raises later)
    param_bounds = {"factors": {"ge": 1}, "epochs": {"ge": 1}, "reg": {"gt": 0}, "reg_bias": {"ge": 0}}

    def __init__(
        self,
        factors: int = 32,
        reg: float = 0.7,
        reg_bias: float = 0.1,
        reg_exponent: float = 0.6,
        epochs: int = 15,
        init_std: float = 0.1,
        patience: int = 2,
        clip: bool = True,
        seed: int = 0,
    ) -> None:
        self.factors = factors
        self.reg = reg
        self.reg_bias = reg_bias
        self.reg_exponent = reg_exponent
        self.epochs = epochs
        self.init_std = init_std
        self.patience = patience
        self.clip = clip
        self.seed = seed

    # -- learning ------------------------------------------------------------------------
    def fit(self, train: Interactions, context: FitContext | None = None) -> BiasedMFRecommender:
        k = int(self.factors)
        if k < 1 or int(self.epochs) < 1:
            raise ValueError("factors and epochs must be >= 1")
        if self.reg <= 0 or self.reg_bias < 0:
            raise ValueError("reg must be > 0 and reg_bias >= 0")
        valid = context.valid if context is not None else None
        on_epoch_end = context.on_epoch_end if context is not None else None
        if valid is not None and (valid.n_users != train.n_users or valid.n_items != train.n_items):
            raise ValueError("context.valid must use the train split's user and item index")

        u = train.user_idx.astype(np.int64)
        i = train.item_idx.astype(np.int64)
        r = train.ratings.astype(np.float64)
        mu = float(r.mean()) if len(r) else 0.0
        by_user = _Side.build(u, i, r, train.n_users, train.n_items, k)
        by_item = _Side.build(i, u, r, train.n_items, train.n_users, k)

        rng = np.random.default_rng(int(self.seed))
        self.global_mean_ = mu
        self.user_factors_ = np.zeros((train.n_users, k))
        self.user_bias_ = np.zeros(train.n_users)
        self.item_factors_ = rng.normal(0.0, float(self.init_std), (train.n_items, k))
        self.item_factors_[by_item.counts == 0] = 0.0
        self.item_bias_ = np.zeros(train.n_items)
        epochs = int(self.epochs)
        warm = self._warm(context)
        solve_users = solve_items = None  # every row (a cold fit)
        if warm is not None:
            self.item_factors_ = warm.grow_items(warm.model.item_factors_, self.item_factors_)
            self.item_bias_ = warm.grow_items(warm.model.item_bias_, self.item_bias_)
            self.user_factors_ = warm.grow_users(warm.model.user_factors_, self.user_factors_)
            self.user_bias_ = warm.grow_users(warm.model.user_bias_, self.user_bias_)
            epochs = warm_epochs(epochs, warm.share_new, self.warm_min_epochs)
            mu = self.global_mean_ = float(warm.model.global_mean_)  # the offset every kept bias was solved against
            solve_users = np.flatnonzero(warm.changed_users(train))
            solve_items = np.unique(train.item_idx[warm.new_row]).astype(np.int64)
            self.warm_fit_ = {"users_solved": len(solve_users), "of_users": train.n_users, "items_solved": len(solve_items), "of_items": train.n_items}
        if len(r):
            self.rating_range_ = (float(r.min()), float(r.max()))
        else:
            self.rating_range_ = (-np.inf, np.inf)
        self.history_: list[dict[str, float]] = []
        self.best_epoch_ = None
        best, best_rmse, since_best = None, np.inf, 0
        lam = (float(self.reg), float(self.reg_bias), float(self.reg_exponent))
        self._seen = None  # not fitted until the end
        with threadpool_limits(1, user_api="blas"):
            for epoch in range(1, epochs + 1):
                self.user_factors_, self.user_bias_, _, _ = by_user.solve(self.item_factors_, self.item_bias_, mu, *lam, self._kept(solve_users, "user"))
                self.item_factors_, self.item_bias_, sse, n = by_item.solve(self.user_factors_, self.user_bias_, mu, *lam, self._kept(solve_items, "item"))
                entry = {"epoch": epoch, "train_rmse": float(np.sqrt(sse / n)) if n else float("nan")}
                if valid is not None and len(valid):
                    entry["valid_rmse"] = rmse(valid.ratings, self._predict_known(valid.user_idx, valid.item_idx))
                self.history_.append(entry)
                if on_epoch_end is not None:
                    on_epoch_end(epoch, {key: v for key, v in entry.items() if key != "epoch"})
                if "valid_rmse" in entry:
                    if entry["valid_rmse"] < best_rmse:
                        best_rmse, since_best, self.best_epoch_ = entry["valid_rmse"], 0, epoch
                        best = (self.user_factors_, self.user_bias_, self.item_factors_, self.item_bias_)
                    else:
                        since_best += 1
                        if since_best >= int(self.patience):
                            break
        if best is not None:
            self.user_factors_, self.user_bias_, self.item_factors_, self.item_bias_ = best
        self._remember_seen(train)
        return self

    def _kept(self, rows: np.ndarray | None, side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """For a warm epoch: the rows to solve and the current factors and biases every other row keeps."""
        if rows is None:
            return None
        return rows, getattr(self, f"{side}_factors_"), getattr(self, f"{side}_bias_")

    # -- inference -----------------------------------------------------------------------
    def _raw(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Unclipped predictions for valid (non-negative) indices, in chunks."""
        out = np.empty(len(users))
        for s in range(0, len(users), _PRED_CHUNK):
            uu, ii = users[s : s + _PRED_CHUNK], items[s : s + _PRED_CHUNK]
            dot = np.einsum("ij,ij->i", self.user_factors_[uu], self.item_factors_[ii])
            out[s : s + _PRED_CHUNK] = self.global_mean_ + self.user_bias_[uu] + self.item_bias_[ii] + dot
        return out

    def _predict_known(self, users, items) -> np.ndarray:
        pred = self._raw(np.asarray(users, np.int64), np.asarray(items, np.int64))
        return np.clip(pred, *self.rating_range_) if self.clip else pred

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted ratings per (user, item) pair; an unknown (-1) side contributes nothing (``mu + b_i``, ``mu + b_u``, ``mu``)."""
        ku, ki = users >= 0, items >= 0
        both = ku & ki
        pred = np.full(len(users), self.global_mean_)
        pred[both] = self._raw(users[both], items[both])
        only_u = ku & ~ki
        pred[only_u] += self.user_bias_[users[only_u]]
        only_i = ki & ~ku
        pred[only_i] += self.item_bias_[items[only_i]]
        return np.clip(pred, *self.rating_range_) if self.clip else pred

    def score(self, users: np.ndarray) -> np.ndarray:
        """mu + b_u + b_i + p_u . q_i for every item (unclipped), float32."""
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        s = self.user_factors_[users] @ self.item_factors_.T
        s += (self.global_mean_ + self.user_bias_[users])[:, None]
        s += self.item_bias_[None, :]
        return s.astype(np.float32)

    def _user_vectors(self) -> np.ndarray:
        return self.user_factors_.astype(np.float32)

    def _item_vectors(self, space: str) -> np.ndarray:
        return self.item_factors_.astype(np.float32)

    def dot_factors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The biases folded into two extra dimensions: ``[p_u, 1, mu + b_u] . [q_i, b_i, 1]``."""
        self._check_fitted()
        n_users, n_items = len(self.user_factors_), len(self.item_factors_)
        U = np.hstack([self.user_factors_, np.ones((n_users, 1)), (self.global_mean_ + self.user_bias_)[:, None]])
        V = np.hstack([self.item_factors_, self.item_bias_[:, None], np.ones((n_items, 1))])
        return U.astype(np.float32), V.astype(np.float32), np.ones(n_items, bool)

    # -- persistence ---------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        return {
            "global_mean": np.array(self.global_mean_),
            "rating_range": np.array(self.rating_range_, dtype=np.float64),
            "user_factors": self.user_factors_,
            "user_bias": self.user_bias_,
            "item_factors": self.item_factors_,
            "item_bias": self.item_bias_,
            "best_epoch": np.array(-1 if self.best_epoch_ is None else self.best_epoch_),
        }

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.global_mean_ = float(arrays["global_mean"])
        lo, hi = arrays["rating_range"].tolist()
        self.rating_range_ = (lo, hi)
        self.user_factors_ = arrays["user_factors"].astype(np.float64)
        self.user_bias_ = arrays["user_bias"].astype(np.float64)
        self.item_factors_ = arrays["item_factors"].astype(np.float64)
        self.item_bias_ = arrays["item_bias"].astype(np.float64)
        best = int(arrays["best_epoch"])
        self.best_epoch_ = None if best < 0 else best
        self.history_ = []


class _Side:
    """One side's ratings grouped by row (user or item), with the chunk plan of the batched solves."""

    def __init__(self, indptr, cols, vals, counts, chunks):
        self.indptr, self.cols, self.vals, self.counts, self.chunks = indptr, cols, vals, counts, chunks

    @classmethod
    def build(cls, rows, cols, vals, n_rows: int, n_cols: int, k: int) -> _Side:
        m = sp.csr_matrix((vals, (rows, cols)), shape=(n_rows, n_cols))
        m.sort_indices()
        counts = np.diff(m.indptr).astype(np.int64)
        return cls(m.indptr.astype(np.int64), m.indices.astype(np.int64), m.data.astype(np.float64), counts, _chunks(counts, k + 1))

    def solve(self, other_f, other_b, mu, reg, reg_bias, alpha, only=None):
        """Exact ridge solution of every row's [factors, bias] with the other side fixed.

        ``only``: ``(rows, factors, biases)``: solve just those rows, every other row keeping its
        given factors and bias (a warm epoch). Also returns the sum of squared training residuals
        after the solve (the train RMSE's numerator, for free: the design and targets are at hand)
        and the number of ratings it covers.
        """
        n_other, k = other_f.shape
        z = np.zeros((n_other + 1, k + 1), np.float32)  # the last row: padding
        z[:n_other, :k] = other_f
        z[:n_other, k] = 1.0
        ob = np.append(other_b, 0.0)
        lam = np.full(k + 1, reg)
        lam[k] = reg_bias
        f = np.zeros((len(self.counts), k))
        b = np.zeros(len(self.counts))
        chunks = self.chunks
        if only is not None:
            rows, f, b = only[0], np.array(only[1], dtype=np.float64), np.array(only[2], dtype=np.float64)
            chunks = [rows[c] for c in _chunks(self.counts[rows], k + 1)]
        diag = np.arange(k + 1)
        sse, n = 0.0, 0
        for rows in chunks:
            cnt = self.counts[rows]
            n += int(cnt.sum())
            width = int(cnt.max())
            col = np.arange(width)
            inside = col[None, :] < cnt[:, None]
            pos = np.where(inside, self.indptr[rows][:, None] + col[None, :], 0)
            other = np.where(inside, self.cols[pos], n_other)
            y = np.where(inside, self.vals[pos] - mu - ob[other], 0.0).astype(np.float32)[:, :, None]
            zb = z[other]  # chunk x width x (k+1); padding rows are zero
            zt = zb.transpose(0, 2, 1)  # a view: matmul hands BLAS the transposed operand
            gram = np.matmul(zt, zb).astype(np.float64)
            rhs = np.matmul(zt, y).astype(np.float64)
            gram[:, diag, diag] += (cnt.astype(np.float64) ** alpha)[:, None] * lam[None, :]
            x = np.linalg.solve(gram, rhs)
            resid = y - np.matmul(zb, x.astype(np.float32))
            sse += float(np.square(resid, dtype=np.float64).sum())
            f[rows] = x[:, :k, 0]
            b[rows] = x[:, k, 0]
        return f, b, sse, n


def _chunks(counts: np.ndarray, width_k: int) -> list[np.ndarray]:
    """Rows with ratings, sorted by count, cut so each chunk's padded tensor stays near _CHUNK_CELLS."""
    order = np.argsort(counts, kind="stable")
    order = order[counts[order] > 0]
    c = counts[order]
    out, s, n = [], 0, len(order)
    while s < n:
        # chunk [s, e): padded cells (e - s) * c[e - 1] * width_k; c is ascending
        cap = max(_CHUNK_CELLS // (width_k * int(c[s])), 1)
        e = min(s + cap, n)
        cells = (np.arange(s + 1, e + 1) - s) * c[s:e] * width_k
        e = s + max(int(np.searchsorted(cells, _CHUNK_CELLS, side="right")), 1)
        out.append(order[s:e])
        s = e
    return out
