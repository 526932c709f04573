"""Mult-VAE (Liang et al. 2018, "Variational Autoencoders for Collaborative Filtering") in plain Keras 3.

Each user is the binary row ``x_u`` of the train matrix (every interaction, or those rated >=
``implicit_threshold``), scaled to unit L2 norm. The network::

    encoder: x -> Dense(h, tanh) for h in hidden -> (mu, logvar), each Dense(dim)
    decoder: z -> Dense(h, tanh) for h in reversed(hidden) -> Dense(n_items)   (logits)

Training maximises the multinomial likelihood of the user's items under ``softmax(logits)`` with
a KL term towards N(0, I), on an input with dropout::

    loss = mean_u [ -sum_i x_ui log softmax(f(z_u))_i + beta * KL(N(mu_u, sigma_u^2) || N(0, I)) ]
    z_u = mu_u + sigma_u * eps,   mu_u, sigma_u = encoder(dropout(x_u / |x_u|))

``beta`` is annealed as in the paper: ``beta(step) = min(beta_max, step / anneal_steps)``
(``kl_weight``), ``step`` counting updates from 1; ``anneal_steps = 0`` holds it at ``beta_max``.
Adam (``lr``), mini-batches of ``batch_size`` users in a seeded order; ``l2`` adds
``l2 * sum |W|^2`` over the dense kernels. Scoring takes the mean (no sampling):
``score(u) = decoder(mu_u)``; ranking by logits equals ranking by the softmax.

Determinism: the initial kernels use Glorot initialisers with explicit seeds, and the dropout
masks and ``eps`` are stateless draws keyed by ``(seed, step)``, so a fit does not depend on
TensorFlow's global random state (``deterministic`` also switches on op determinism).

Early stopping and history: ``recflow.models.keras_training`` (Recall@``early_stopping_k`` on
``context.valid`` per epoch, best epoch's weights restored); ``history_`` per epoch: ``loss``,
``nll``, ``kl``, ``beta`` and the validation metric.

Warm start (``warm_starts``, ``recflow.models.keras_warm``): users are inputs, not parameters, so
nothing grows with them; the network is built as a cold fit builds it, then takes the earlier fit's
weights, the input layer's rows and the output layer's columns (and biases) by item id over the
fitted items (an item new tonight, or new to the ``top_items`` subset, keeps its cold draw; one that
left the subset is dropped), the other layers as they were. The KL weight goes on from the earlier
fit's place on the annealing schedule (``updates_``, saved; a fit saved without it counts as
annealed) rather than restarting at 0. ``warm_epochs`` epochs (at least 2), fresh Adam moments,
early stopping as in a cold fit.

Catalogue: ``top_items=None`` (the default) covers every item. At large catalogues the input and
output layers are ``n_items`` wide and dominate the cost (one dense softmax over all items per
user), so ``top_items=N`` fits the network on the N most popular training items only (``items_``;
ties to the lower index), as EASE does: a user's input is their interactions with those items,
every other item scores ``-inf`` (never recommended) and has a zero vector (not valid in the
``items`` space); the run summary states the subset (``Recommender.catalogue_scope``).

Persistence: ``model.keras`` (Keras native, the full encoder -> mu -> decoder network) plus the
npz with the dense weights and the train matrix, from which ``score`` runs in NumPy: a loaded
model scores without TensorFlow. ``dot_factors``: the last decoder layer is a dot product of the
user's last hidden activation (with a 1 for the bias) and the item's output weights, which are
also the ``items`` vector space. ``folds_in_history``: the encoder reads only the user's binary
row, so any list of items is encoded like a training row (items outside ``items_`` ignored).
"""

from __future__ import annotations

import time
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from recflow.models.base import spread_items
from recflow.models.context import FitContext
from recflow.models.keras_training import KerasRecommender
from recflow.models.keras_warm import Grow
from recflow.models.search_space import Dimension, FloatRange, IntRange
from recflow.models.warm import WarmStart
from recflow.prep.interactions import Interactions


def kl_weight(step: int, beta_max: float, anneal_steps: int) -> float:
    """The KL weight of update ``step`` (from 1): linear from 0 up to ``beta_max`` (Liang et al.'s schedule)."""
    if int(anneal_steps) <= 0:
        return float(beta_max)
    return float(min(float(beta_max), step / int(anneal_steps)))


class MultVAERecommender(KerasRecommender):
    """Variational autoencoder over users' item sets with a multinomial likelihood (see module doc)."""

    name = "mult_vae"
    folds_in_history = True
    warm_starts = True
    item_spaces = ("items",)
    search_space: ClassVar[dict[str, Dimension]] = {
        "dim": IntRange(64, 256, log=True),
        "dropout": FloatRange(0.2, 0.7),
        "beta_max": FloatRange(0.0, 0.6),
        "lr": FloatRange(3e-4, 3e-3, log=True),
    }

    def __init__(
        self,
        dim: int = 200,
        hidden: tuple[int, ...] | list[int] = (600,),
        dropout: float = 0.5,
        beta_max: float = 0.2,
        anneal_steps: int = 2000,
        batch_size: int = 500,
        epochs: int = 100,
        lr: float = 1e-3,
        l2: float = 0.0,
        implicit_threshold: float | None = None,
        top_items: int | None = None,
        early_stopping_k: int = 10,
        patience: int = 10,
        seed: int = 0,
        deterministic: bool = True,
        threads: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.dim = dim
        self.hidden = hidden
        self.dropout = dropout
        self.beta_max = beta_max
        self.anneal_steps = anneal_steps
        self.batch_size = batch_size
        self.epochs = epochs
        self.lr = lr
        self.l2 = l2
        self.implicit_threshold = implicit_threshold
        self.top_items = top_items
        self.early_stopping_k = early_stopping_k
        self.patience = patience
        self.seed = seed
        self.deterministic = deterministic
        self.threads = threads
        self.verbose = verbose

    # -- learning ---------------------------------------------------------------------

    def catalogue_scope(self) -> str | None:
        if self.top_items is None:
            return None
        return f"{self.name}: fitted on the {int(self.top_items):,} most popular training items only (top_items); every other item is never recommended"

    def fit(self, train: Interactions, context: FitContext | None = None) -> MultVAERecommender:
        self._check_training_params()
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if float(self.beta_max) < 0 or int(self.anneal_steps) < 0:
            raise ValueError(f"beta_max and anneal_steps must be >= 0, got {self.beta_max}, {self.anneal_steps}")
        if self.top_items is not None and int(self.top_items) < 1:
            raise ValueError(f"top_items must be >= 1 or None (the whole catalogue), got {self.top_items}")
        keep = np.ones(len(train), bool) if self.implicit_threshold is None else train.ratings >= self.implicit_threshold
        X = sp.csr_matrix((np.ones(int(keep.sum()), np.float32), (train.user_idx[keep], train.item_idx[keep])), shape=(train.n_users, train.n_items))
        if self.top_items is None or int(self.top_items) >= train.n_items:
            self.items_ = np.arange(train.n_items, dtype=np.int64)
        else:
            counts = np.bincount(X.indices, minlength=train.n_items)
            self.items_ = np.sort(np.argsort(-counts, kind="stable")[: int(self.top_items)]).astype(np.int64)
            X = X[:, self.items_].tocsr()
        self.X_ = X
        active = np.flatnonzero(np.diff(self.X_.indptr) > 0)
        if not len(active):
            raise ValueError("no training interactions (empty train, or no rating >= implicit_threshold)")
        tf, keras = self._seeded_tf()
        context = context or FitContext()
        seed, dim, n_items = int(self.seed), int(self.dim), len(self.items_)
        hidden = [int(h) for h in self.hidden]
        self._model = _network(keras, n_items, dim, hidden, seed)
        epochs = self._continue_from(context)
        encoder, decoder = self._model.get_layer("encoder"), self._model.get_layer("decoder")
        variables = self._model.trainable_variables
        kernels = [v for v in variables if "kernel" in v.path]
        optimizer = keras.optimizers.Adam(learning_rate=float(self.lr))
        keep = tf.constant(1.0 - float(self.dropout), tf.float32)
        l2 = tf.constant(float(self.l2), tf.float32)
        use_l2 = bool(float(self.l2))

        @tf.function(input_signature=[tf.TensorSpec([None, n_items], tf.float32), tf.TensorSpec([], tf.float32), tf.TensorSpec([2], tf.int64)])
        def step(x, beta, key):
            x_in = tf.math.l2_normalize(x, axis=1)
            if float(self.dropout):
                mask = tf.random.stateless_uniform(tf.shape(x_in), seed=key) < keep
                x_in = tf.where(mask, x_in / keep, 0.0)
            with tf.GradientTape() as tape:
                mu, logvar = encoder(x_in, training=True)
                eps = tf.random.stateless_normal(tf.shape(mu), seed=key + tf.constant([0, 1], tf.int64))
                z = mu + tf.exp(0.5 * logvar) * eps
                logits = decoder(z, training=True)
                nll = -tf.reduce_mean(tf.reduce_sum(tf.nn.log_softmax(logits, axis=1) * x, axis=1))
                kl = tf.reduce_mean(0.5 * tf.reduce_sum(tf.exp(logvar) + tf.square(mu) - 1.0 - logvar, axis=1))
                total = nll + beta * kl
                if use_l2:
                    total += l2 * tf.add_n([tf.reduce_sum(tf.square(k)) for k in kernels])
            optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
            return nll, kl

        rng = np.random.default_rng(seed)
        batch = int(self.batch_size)
        # a warm fit goes on along the earlier fit's KL schedule (one saved before the count was kept: annealed)
        start = 0 if not self.warm_started_ else _updates_of(context.warm_start.model, int(self.anneal_steps))
        updates = start

        def run_epoch(epoch: int):
            nonlocal updates
            order = active[rng.permutation(len(active))]
            t0 = time.perf_counter()
            sums = np.zeros(3)
            for start in range(0, len(order), batch):
                rows = order[start : start + batch]
                updates += 1
                beta = kl_weight(updates, float(self.beta_max), int(self.anneal_steps))
                # every update its own stateless random key: (seed, update) fixes masks and eps
                nll, kl = step(self.X_[rows].toarray(), np.float32(beta), np.array([seed, 2 * updates], np.int64))
                sums += np.array([float(nll), float(kl), beta]) * len(rows)
            nll, kl, beta = sums / len(order)
            return {"loss": float(nll + beta * kl), "nll": float(nll), "kl": float(kl), "beta": float(beta)}, time.perf_counter() - t0

        self._train_epochs(train, context, run_epoch, self._read_weights, len(active), epochs)
        self.updates_ = start + int(self.best_epoch_) * -(-len(active) // batch)  # the kept epoch's place on the schedule
        return self

    def _grown(self, warm: WarmStart) -> dict:
        """The layers whose rows (the input's, ``x -> hidden``) or columns (the output's) are the fitted
        items ``items_``, by item id: a kept item new tonight (or new to the ``top_items`` subset) keeps
        its cold draw; an item that left the subset is dropped."""
        old = warm.model
        position = np.full(old.n_items, -1, dtype=np.int64)
        position[old.items_] = np.arange(len(old.items_))
        earlier = warm.item_map[self.items_]
        kept = np.where(earlier >= 0, position[np.clip(earlier, 0, None)], -1)
        inputs = ["encoder_hidden_0"] if self.hidden else ["mu", "logvar"]
        return {**{name: Grow(kept) for name in inputs}, "logits": {0: Grow(kept, axis=1), 1: Grow(kept)}}

    def _read_weights(self) -> None:
        """The NumPy copies of the dense layers that ``score`` runs on."""
        model = self.keras_model
        self.encoder_weights_ = [w.astype(np.float32) for w in model.get_layer("encoder").get_weights()]
        self.decoder_weights_ = [w.astype(np.float32) for w in model.get_layer("decoder").get_weights()]

    # -- scoring (NumPy, no TensorFlow) -----------------------------------------------------
    def _last_hidden(self, users: np.ndarray) -> np.ndarray:
        """The decoder's last hidden activation at ``z = mu`` (the input of its output layer)."""
        return self._hidden_of(self.X_[users])

    def _hidden_of(self, x: sp.csr_matrix) -> np.ndarray:
        """``_last_hidden`` of binary rows over ``items_``."""
        x = x.astype(np.float32)
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1), dtype=np.float32)).ravel()
        h = sp.diags(np.where(norms > 0, 1.0 / np.maximum(norms, 1e-12), 0.0).astype(np.float32)) @ x
        enc = self.encoder_weights_
        n_hidden = (len(enc) - 4) // 2
        for layer in range(n_hidden):
            h = np.tanh(h @ enc[2 * layer] + enc[2 * layer + 1])
        mu = np.asarray(h @ enc[-4] + enc[-3], dtype=np.float32)  # the mu head (logvar follows it)
        dec = self.decoder_weights_
        h = mu
        for layer in range((len(dec) - 2) // 2):
            h = np.tanh(h @ dec[2 * layer] + dec[2 * layer + 1])
        return np.asarray(h, dtype=np.float32)

    def score(self, users: np.ndarray) -> np.ndarray:
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        return self._logits(self._last_hidden(users))

    def _score_history(self, X: sp.csr_matrix) -> np.ndarray:
        return self._logits(self._hidden_of(X if len(self.items_) == self.n_items else X[:, self.items_]))

    def _logits(self, hidden: np.ndarray) -> np.ndarray:
        """The output layer over ``items_``, spread to the catalogue (``-inf`` for items not fitted)."""
        return spread_items(np.ascontiguousarray(hidden @ self.decoder_weights_[-2] + self.decoder_weights_[-1], dtype=np.float32), self.items_, self.n_items)

    def _full_catalogue(self, rows: np.ndarray) -> np.ndarray:
        """Per-item rows over ``items_`` spread to the whole catalogue (zeros for items not fitted)."""
        if len(self.items_) == self.n_items:
            return np.ascontiguousarray(rows, dtype=np.float32)
        out = np.zeros((self.n_items, rows.shape[1]), np.float32)
        out[self.items_] = rows
        return out

    def dot_factors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``score`` = [last hidden, 1] . [output weights, bias] per item (items outside ``items_`` not valid)."""
        self._check_fitted()
        U = self._last_hidden(np.arange(self.n_users))
        U = np.hstack([U, np.ones((len(U), 1), np.float32)])
        V = self._full_catalogue(np.hstack([self.decoder_weights_[-2].T, self.decoder_weights_[-1][:, None]]))
        valid = np.zeros(self.n_items, bool)
        valid[self.items_] = True
        return U, V, valid

    def _item_vectors(self, space: str) -> np.ndarray:
        """(n_items, last hidden) float32: each item's weights in the decoder's output layer (zeros outside ``items_``)."""
        return self._full_catalogue(self.decoder_weights_[-2].T)

    # -- persistence -------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        x = self.X_.tocoo()
        arrays = {"x_row": x.row, "x_col": x.col, "items": self.items_, "updates": np.array(self.updates_, dtype=np.int64)}
        arrays.update({f"encoder_{k}": w for k, w in enumerate(self.encoder_weights_)})
        arrays.update({f"decoder_{k}": w for k, w in enumerate(self.decoder_weights_)})
        return arrays

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        row, col = arrays["x_row"], arrays["x_col"]
        n_users, n_items = self._seen.shape
        self.items_ = np.asarray(arrays["items"], dtype=np.int64) if "items" in arrays else np.arange(n_items, dtype=np.int64)
        self.X_ = sp.csr_matrix((np.ones(len(row), np.float32), (row, col)), shape=(n_users, len(self.items_)))
        self.updates_ = int(arrays["updates"]) if "updates" in arrays else None
        for part in ("encoder", "decoder"):
            n = sum(1 for k in arrays if k.startswith(f"{part}_"))
            setattr(self, f"{part}_weights_", [arrays[f"{part}_{k}"].astype(np.float32) for k in range(n)])
        self.history_ = []


def _updates_of(model: MultVAERecommender, anneal_steps: int) -> int:
    """Where an earlier fit left the KL schedule: its kept epoch's update count (saved), else the end of the annealing."""
    updates = getattr(model, "updates_", None)
    return int(anneal_steps) if updates is None else int(updates)


def _network(keras, n_items: int, dim: int, hidden: list[int], seed: int):
    """The Keras model ``x -> logits`` at ``z = mu``, holding the ``encoder`` and ``decoder`` submodels."""

    def dense(units, name, activation=None, offset=0):
        return keras.layers.Dense(units, activation=activation, name=name, kernel_initializer=keras.initializers.GlorotUniform(seed=seed + offset))

    x = keras.Input(shape=(n_items,), name="items")
    h = x
    for k, units in enumerate(hidden):
        h = dense(units, f"encoder_hidden_{k}", "tanh", k)(h)
    mu = dense(dim, "mu", offset=100)(h)
    logvar = dense(dim, "logvar", offset=101)(h)
    encoder = keras.Model(x, [mu, logvar], name="encoder")
    z = keras.Input(shape=(dim,), name="z")
    h = z
    for k, units in enumerate(reversed(hidden)):
        h = dense(units, f"decoder_hidden_{k}", "tanh", 200 + k)(h)
    decoder = keras.Model(z, dense(n_items, "logits", offset=300)(h), name="decoder")
    inputs = keras.Input(shape=(n_items,), name="normalised_items")
    return keras.Model(inputs, decoder(encoder(inputs)[0]), name="mult_vae")
