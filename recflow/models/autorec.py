"""I-AutoRec (Sedhain et al. 2015, "AutoRec: Autoencoders Meet Collaborative Filtering"), item-based.

Each item ``i`` is the vector ``r_i`` of its users' training ratings (``n_users`` entries, the
unobserved ones zero). One hidden layer encodes it and a linear layer decodes it::

    h_i = sigmoid(V r_i + c),    r_hat_i = W h_i + b,    r_hat(u, i) = r_hat_i[u]

and the loss counts the observed entries only (the paper's objective)::

    sum_{(u,i) in train} (r_ui - r_hat(u, i))^2 + (reg / 2) (|W|^2 + |V|^2)

Training is Adam over minibatches of items (the paper used L-BFGS / Rprop on the full batch):
each epoch visits every item once in a seeded random order, and each minibatch carries
``batch_size / n_items`` of the penalty, so an epoch's gradients sum to the full objective's.
Everything stays sparse: the encoder is a sparse x dense product, the decoder is evaluated only
at the minibatch's observed (item, user) pairs (gathered rows of ``h`` and of ``W``), and its
gradients are sparse x dense products of the residuals, so an epoch costs O(nnz x hidden) rather
than the dense O(n_items x n_users x hidden). The output bias starts at the training mean so
the first epochs learn structure rather than the rating scale.

Pure NumPy / SciPy, float32: randomness comes from ``np.random.default_rng(seed)`` (initial
weights, the item order per epoch) and nothing process-wide is set, so fits in parallel threads
do not disturb one another.

Fallback: a user or item without training ratings (and index ``-1``, unknown) gets the bias
model's prediction ``mu + b_u + b_i`` (``recflow.models.bias``, fitted on the same train with
its defaults; an unknown side contributes 0). Predictions are clipped to the training rating
range when ``clip``; ``score`` is the same value unclipped (the ranking score of every item).

Fitted state kept for inference is the decoder and the item codes ``h_i`` (computed once from
the training ratings after the fit): predictions need nothing else. The encoder ``V, c`` is kept
too (saved beside them; as large as the decoder), for warm starts.

Warm start (``warm_starts``): the parameters are per *user* (the encoder's input rows ``V``, the
decoder's output rows ``W``, the output bias ``b``), so they grow by user id: a known user's rows
move to tonight's index, a new user keeps the cold initial draw (made first, so a seed still fixes
everything; ``b`` at tonight's training mean), and ``c`` carries over. Items are the examples, not
parameters: an item new tonight is simply another row to encode. ``warm_epochs`` epochs (at least
``warm_min_epochs``, 2) over every item, with fresh Adam moments and the cosine schedule restarted
over the warm epochs (a warm restart, as in SGDR). A fit saved without its encoder (before warm
starts) cannot be continued: the fit is cold and ``warm_started_`` says so.

``history_``: per epoch ``train_rmse`` (over the epoch's minibatches, before each step) and
``valid_rmse`` when ``context.valid`` is given; then training stops after ``patience`` epochs
without a better validation RMSE and keeps the best epoch's weights (``best_epoch_``).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import scipy.sparse as sp

from recflow.evaluation.metrics import rmse
from recflow.models.base import Recommender
from recflow.models.bias import BiasRecommender
from recflow.models.context import FitContext
from recflow.models.search_space import Dimension, FloatRange, IntRange
from recflow.models.warm import warm_epochs
from recflow.prep.interactions import Interactions

_PAIR_CHUNK = 4096  # observed pairs per gathered (pairs x hidden) block: cache-sized blocks are fastest


class AutoRecRecommender(Recommender):
    """I-AutoRec: a one-hidden-layer item autoencoder trained on observed ratings only (see module doc).

    The defaults are the best found on ML-1M's validation part (random 90/10, a 10% per-user part
    carved from train): hidden 500 as in the paper, a stronger penalty than the paper's grid
    favoured under Adam, and a cosine schedule whose end is the model a fixed-epoch run keeps.
    """

    name = "autorec"
    trains_in_epochs = True
    warm_starts = True
    warm_min_epochs = 2
    predicts_ratings = True
    # around the defaults (chosen on a validation part carved from ML-1M random 90/10's train)
    search_space: ClassVar[dict[str, Dimension]] = {
        "hidden": IntRange(100, 800, log=True),
        "reg": FloatRange(10.0, 1000.0, log=True),
        "learning_rate": FloatRange(5e-4, 5e-3, log=True),
        "epochs": IntRange(10, 50),  # also the cosine schedule's length, so it is searched, not only early-stopped
    }

    #: what the config accepts (checked when it loads, not when fit raises later)
    param_bounds = {"hidden": {"ge": 1}, "epochs": {"ge": 1}, "batch_size": {"ge": 1}, "reg": {"ge": 0}, "learning_rate": {"gt": 0}}

    def __init__(
        self,
        hidden: int = 500,
        reg: float = 200.0,
        epochs: int = 25,
        learning_rate: float = 2e-3,
        batch_size: int = 256,
        schedule: Literal["cosine", "constant"] = "cosine",
        patience: int = 3,
        clip: bool = True,
        seed: int = 0,
    ) -> None:
        self.hidden = hidden
        self.reg = reg
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.schedule = schedule
        self.patience = patience
        self.clip = clip
        self.seed = seed

    # -- learning ------------------------------------------------------------------------
    def fit(self, train: Interactions, context: FitContext | None = None) -> AutoRecRecommender:
        k, n_epochs, batch = int(self.hidden), int(self.epochs), int(self.batch_size)
        if k < 1 or n_epochs < 1 or batch < 1:
            raise ValueError("hidden, epochs and batch_size must be >= 1")
        if self.reg < 0 or self.learning_rate <= 0:
            raise ValueError("reg must be >= 0 and learning_rate > 0")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        valid = context.valid if context is not None else None
        on_epoch_end = context.on_epoch_end if context is not None else None
        if valid is not None and (valid.n_users != train.n_users or valid.n_items != train.n_items):
            raise ValueError("context.valid must use the train split's user and item index")

        n_users, n_items = train.n_users, train.n_items
        items_by_row = sp.csr_matrix((train.ratings.astype(np.float32), (train.item_idx, train.user_idx)), shape=(n_items, n_users))
        items_by_row.sort_indices()
        r = train.ratings.astype(np.float64)
        self.rating_range_ = (float(r.min()), float(r.max())) if len(r) else (-np.inf, np.inf)
        self._fallback = BiasRecommender().fit(train)
        self._user_known = np.diff(train.seen.indptr) > 0
        self._item_known = np.diff(items_by_row.indptr) > 0
        self._seen = None  # not fitted until the end

        rng = np.random.default_rng(int(self.seed))
        net = _Net.init(rng, n_users, k, float(r.mean()) if len(r) else 0.0)
        if self._continue_from(context, net):
            n_epochs = warm_epochs(n_epochs, context.warm_start.share_new, self.warm_min_epochs)
        adam = _Adam(net, float(self.learning_rate))
        penalty = float(self.reg) * min(batch, n_items) / max(n_items, 1)
        self.history_: list[dict[str, float]] = []
        self.best_epoch_ = None
        best, best_rmse, since_best = None, np.inf, 0
        steps_per_epoch = -(-n_items // batch)
        total_steps = n_epochs * steps_per_epoch
        for epoch in range(1, n_epochs + 1):
            sse = 0.0
            order = rng.permutation(n_items)
            for s in range(0, n_items, batch):
                if self.schedule == "cosine":
                    adam.lr = float(self.learning_rate) * 0.5 * (1.0 + np.cos(np.pi * adam.t / total_steps))
                rows = items_by_row[np.sort(order[s : s + batch])]
                sse += adam.step(rows, penalty)
            entry = {"epoch": epoch, "train_rmse": float(np.sqrt(sse / len(r))) if len(r) else float("nan")}
            if valid is not None and len(valid):
                self._set_inference(net, items_by_row)
                pred = self._predict_checked(valid.user_idx.astype(np.int64), valid.item_idx.astype(np.int64), clip=self.clip)
                entry["valid_rmse"] = rmse(valid.ratings, pred)
            self.history_.append(entry)
            if on_epoch_end is not None:
                on_epoch_end(epoch, {key: v for key, v in entry.items() if key != "epoch"})
            if "valid_rmse" in entry:
                if entry["valid_rmse"] < best_rmse:
                    best_rmse, since_best, self.best_epoch_ = entry["valid_rmse"], 0, epoch
                    best = (self.item_codes_, self.decoder_, self.output_bias_, self.encoder_, self.encoder_bias_)
                else:
                    since_best += 1
                    if since_best >= int(self.patience):
                        break
        if best is not None:
            self.item_codes_, self.decoder_, self.output_bias_, self.encoder_, self.encoder_bias_ = best
        else:
            self._set_inference(net, items_by_row)
        self._remember_seen(train)
        return self

    def _continue_from(self, context: FitContext | None, net: _Net) -> bool:
        """Start ``net`` (freshly drawn, as a cold fit's) from ``context.warm_start``'s parameters, grown by user id; whether it did."""
        self.warm_declined_ = None
        warm = self._warm(context)
        if warm is None:
            return False
        old = warm.model
        if getattr(old, "encoder_", None) is None:
            self.warm_started_ = False
            self.warm_declined_ = "the earlier fit was saved without its encoder (before autorec warm-started)"
            return False
        net.V = warm.grow_users(old.encoder_, net.V).astype(np.float32)
        net.W = warm.grow_users(old.decoder_, net.W).astype(np.float32)
        net.b = warm.grow_users(old.output_bias_, net.b).astype(np.float32)
        net.c = np.array(old.encoder_bias_, dtype=np.float32)
        return True

    def _set_inference(self, net: _Net, items_by_row: sp.csr_matrix) -> None:
        """Freeze the state predictions read (item codes from the training ratings, decoder copies) and
        the encoder a warm start continues from."""
        self.item_codes_ = net.encode(items_by_row)
        self.decoder_ = net.W.copy()
        self.output_bias_ = net.b.copy()
        self.encoder_ = net.V.copy()
        self.encoder_bias_ = net.c.copy()

    # -- inference -----------------------------------------------------------------------
    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """r_hat_i[u] where both have training ratings, else the bias model's prediction; clipped when ``clip``."""
        return self._predict_checked(users, items, clip=self.clip)

    def _predict_checked(self, users: np.ndarray, items: np.ndarray, clip: bool) -> np.ndarray:
        known = (users >= 0) & (items >= 0)
        known[known] = self._user_known[users[known]] & self._item_known[items[known]]
        pred = self._fallback._predict(users, items)
        pred[known] = _pair_outputs(self.item_codes_, self.decoder_, self.output_bias_, items[known], users[known])
        return np.clip(pred, *self.rating_range_) if clip else pred

    def score(self, users: np.ndarray) -> np.ndarray:
        """Unclipped predicted rating of every item (the fallback where user or item has no training rating)."""
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        out = (self.item_codes_ @ self.decoder_[users].T + self.output_bias_[users]).T.astype(np.float64)
        cold_items = ~self._item_known
        out[:, cold_items] = self._fallback.score(users)[:, cold_items]
        cold_users = ~self._user_known[users]
        out[cold_users] = self._fallback.score(users[cold_users])
        return out.astype(np.float32)

    # -- persistence ---------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        return {
            "rating_range": np.array(self.rating_range_, dtype=np.float64),
            "item_codes": self.item_codes_,
            "decoder": self.decoder_,
            "output_bias": self.output_bias_,
            "encoder": self.encoder_,
            "encoder_bias": self.encoder_bias_,
            "user_known": self._user_known,
            "item_known": self._item_known,
            "fallback_global_mean": np.array(self._fallback.global_mean_),
            "fallback_user_bias": self._fallback.user_bias_,
            "fallback_item_bias": self._fallback.item_bias_,
            "best_epoch": np.array(-1 if self.best_epoch_ is None else self.best_epoch_),
        }

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        lo, hi = arrays["rating_range"].tolist()
        self.rating_range_ = (lo, hi)
        self.item_codes_ = arrays["item_codes"].astype(np.float32)
        self.decoder_ = arrays["decoder"].astype(np.float32)
        self.output_bias_ = arrays["output_bias"].astype(np.float32)
        has_encoder = "encoder" in arrays  # saved since warm starts
        self.encoder_ = arrays["encoder"].astype(np.float32) if has_encoder else None
        self.encoder_bias_ = arrays["encoder_bias"].astype(np.float32) if has_encoder else None
        self._user_known = arrays["user_known"].astype(bool)
        self._item_known = arrays["item_known"].astype(bool)
        self._fallback = BiasRecommender()
        self._fallback.global_mean_ = float(arrays["fallback_global_mean"])
        self._fallback.user_bias_ = arrays["fallback_user_bias"].astype(np.float64)
        self._fallback.item_bias_ = arrays["fallback_item_bias"].astype(np.float64)
        self._fallback._seen = self._seen
        best = int(arrays["best_epoch"])
        self.best_epoch_ = None if best < 0 else best
        self.history_ = []


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """In place, overflow-free: exp of a non-positive argument only."""
    e = np.exp(-np.abs(x))
    pos = x >= 0
    np.divide(1.0, 1.0 + e, out=x, where=pos)
    np.divide(e, 1.0 + e, out=x, where=~pos)
    return x


def _pair_outputs(codes: np.ndarray, decoder: np.ndarray, bias: np.ndarray, items: np.ndarray, users: np.ndarray) -> np.ndarray:
    """``codes[i] . decoder[u] + bias[u]`` per (item, user) pair, gathered in cache-sized blocks (float64 out)."""
    out = np.empty(len(items))
    for s in range(0, len(items), _PAIR_CHUNK):
        ii, uu = items[s : s + _PAIR_CHUNK], users[s : s + _PAIR_CHUNK]
        out[s : s + _PAIR_CHUNK] = np.einsum("ij,ij->i", codes[ii], decoder[uu]) + bias[uu]
    return out


class _Net:
    """The parameters: encoder ``V`` (n_users x hidden, as ``r_i @ V``), ``c``; decoder ``W`` (n_users x hidden), ``b``."""

    def __init__(self, V, c, W, b):
        self.V, self.c, self.W, self.b = V, c, W, b

    @classmethod
    def init(cls, rng: np.random.Generator, n_users: int, k: int, mean: float) -> _Net:
        bound = np.sqrt(6.0 / (n_users + k))  # Glorot uniform
        V = rng.uniform(-bound, bound, (n_users, k)).astype(np.float32)
        W = rng.uniform(-bound, bound, (n_users, k)).astype(np.float32)
        return cls(V, np.zeros(k, np.float32), W, np.full(n_users, mean, np.float32))

    def params(self) -> list[np.ndarray]:
        return [self.V, self.c, self.W, self.b]

    def encode(self, rows: sp.csr_matrix) -> np.ndarray:
        return _sigmoid(np.asarray(rows @ self.V) + self.c)

    def gradients(self, rows: sp.csr_matrix, penalty: float) -> tuple[list[np.ndarray], float]:
        """Gradients of the minibatch's observed squared error plus ``penalty / 2 (|W|^2 + |V|^2)``; and its SSE."""
        h = self.encode(rows)  # batch x k
        local = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
        users = rows.indices
        err = (_pair_outputs(h, self.W, self.b, local, users) - rows.data).astype(np.float32)
        resid = sp.csr_matrix((2.0 * err, users, rows.indptr), shape=rows.shape)  # d loss / d r_hat at observed pairs
        resid_t = resid.T.tocsr()  # users x batch
        gW = np.asarray(resid_t @ h) + penalty * self.W
        gb = np.asarray(resid.sum(axis=0)).ravel().astype(np.float32)
        dz = np.asarray(resid @ self.W)
        dz *= h * (1.0 - h)
        gV = np.asarray(rows.T.tocsr() @ dz) + penalty * self.V
        gc = dz.sum(axis=0)
        return [gV, gc, gW, gb], float(np.dot(err, err))


class _Adam:
    """Adam (Kingma & Ba 2015) over a ``_Net``'s arrays, updated in place, float32."""

    def __init__(self, net: _Net, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.net, self.lr, self.beta1, self.beta2, self.eps = net, lr, beta1, beta2, eps
        self.m = [np.zeros_like(p) for p in net.params()]
        self.v = [np.zeros_like(p) for p in net.params()]
        self.t = 0

    def step(self, rows: sp.csr_matrix, penalty: float) -> float:
        grads, sse = self.net.gradients(rows, penalty)
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        rate = self.lr * np.sqrt(1.0 - b2**self.t) / (1.0 - b1**self.t)
        for p, g, m, v in zip(self.net.params(), grads, self.m, self.v):
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            g *= g
            v += (1.0 - b2) * g
            np.sqrt(v, out=g)
            g += self.eps
            np.divide(m, g, out=g)
            g *= rate
            p -= g
        return sse
