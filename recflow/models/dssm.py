"""DSSM rating regressor (the reference notebook's two-tower rating model) in plain Keras 3.

User tower: ``[user ID embedding (dim) | one-hot gender, age, occupation] -> Dense(h, relu)... ->
Dense(dim)``. A dense layer over a one-hot block is exactly an embedding of that category, so
this is the notebook's "embeddings of user id, gender, age, occupation, concatenated, MLP", with
the category codes gathered in the graph from a frozen per-user table. Demographics come from
``context.users`` (columns among ``gender``, ``age``, ``occupation`` that it has; each value is
one category); without that table (or for users missing from it) the tower sees the ID alone.

Item tower: ``[item ID embedding (dim) | multi-hot genres] -> Dense(h, relu)... -> Dense(dim)``,
genres from ``context.items`` (a list of names per item; the vocabulary is the sorted set of
names, ``(no genres listed)`` and empty names dropped). The notebook kept one genre per movie;
the multi-hot keeps them all.

Output: ``sigmoid(w * <user, item> + b)`` (``w``, ``b`` learned scalars, as the notebook's
``Dense(1, sigmoid)`` on the dot product), trained with MSE against the rating min-max-normalised
with the train minimum and maximum; ``predict = min + sigmoid(...) * (max - min)``, so a
prediction always lies in the train rating range. Trained on every train rating (the notebook
used a 10% sample) with a seeded shuffle, lazy Adam (``recflow.models.keras_training.make_lazy_adam``)
and ``l2`` times the mean squared norm of the batch's ID embeddings. With ``context.valid`` each
epoch ends with the validation RMSE (``recflow.evaluation.evaluate.evaluate_ratings``); training stops after
``patience`` epochs without improvement and the best epoch's weights are restored.
``history_``: per epoch ``epoch``, ``loss`` (train MSE on the normalised scale), ``valid_rmse``
(NaN without valid), ``examples_per_second``, ``seconds``.

Warm start (``warm_starts``, ``recflow.models.keras_warm``): the network is built as a cold fit
builds it, then takes the earlier fit's weights: ID embedding rows by raw id (new users and items:
the cold seeded draw), each tower's first dense layer by its input columns (a demographic category
or genre new tonight keeps its cold rows), the hidden layers and the output affine as they were.
The rating scale is tonight's train minimum and maximum. ``warm_epochs`` epochs (at least 2),
fresh Adam moments, early stopping on the validation RMSE as in a cold fit. No history fold-in:
the user tower reads a learnt per-user ID embedding (and demographics), not the user's items.

As a ranker, ``score`` is the predicted rating of every item (a squashed dot product, so no
``dot_factors``). ``predict`` gives an unknown (-1) user or item the mean tower output. ``user_embeddings()`` /
``item_embeddings()`` are the tower outputs (not normalised). Determinism, threads and
persistence work as in ``recflow.models.two_tower`` (``model.keras`` + ``params.json`` /
``arrays.npz``; ``load`` needs no TensorFlow for ``predict``/``score``/``recommend``).
"""

from __future__ import annotations

import time
from typing import ClassVar

import numpy as np
import pandas as pd

from recflow.models.context import FitContext
from recflow.models.keras_training import (
    KerasRecommender,
    make_lazy_adam,
    shuffled_batches,
    tower_outputs,
)
from recflow.models.keras_warm import Grow, concat_map, names_map, same
from recflow.models.search_space import Choice, Dimension, FloatRange
from recflow.models.towers import tower
from recflow.models.warm import WarmStart
from recflow.prep.interactions import Interactions

DEMOGRAPHICS = ("gender", "age", "occupation")
NO_GENRES = "(no genres listed)"


def demographic_table(users: pd.DataFrame | None, index_of, n: int) -> tuple[np.ndarray, list[str]]:
    """(n, c) float32 one-hot of the demographic columns per user index, and the category names
    (``"column=value"``); zero rows for users the table lacks."""
    if users is None or len(users) == 0:
        return np.zeros((n, 0), np.float32), []
    cols = [c for c in DEMOGRAPHICS if c in users.columns]
    idx = np.asarray(index_of(users["user_id"].to_numpy()), dtype=np.int64)
    keep = idx >= 0
    blocks, names = [], []
    for c in cols:
        values = users[c].astype("str")
        codes, uniques = pd.factorize(values, sort=True)
        block = np.zeros((n, len(uniques)), np.float32)
        ok = keep & (codes >= 0)
        block[idx[ok], codes[ok]] = 1.0
        blocks.append(block)
        names += [f"{c}={u}" for u in uniques]
    table = np.concatenate(blocks, axis=1) if blocks else np.zeros((n, 0), np.float32)
    return table, names


def genre_table(items: pd.DataFrame | None, index_of, n: int) -> tuple[np.ndarray, list[str]]:
    """(n, g) float32 multi-hot genres per item index, and the genre names (sorted)."""
    if items is None or len(items) == 0 or "genres" not in items.columns:
        return np.zeros((n, 0), np.float32), []
    idx = np.asarray(index_of(items["item_id"].to_numpy()), dtype=np.int64)
    exploded = items["genres"].reset_index(drop=True).explode().dropna()
    exploded = exploded.astype("str")
    exploded = exploded[(exploded != "") & (exploded != NO_GENRES)]
    vocab = sorted(set(exploded.tolist()))
    table = np.zeros((n, len(vocab)), np.float32)
    if vocab:
        rows = exploded.index.to_numpy(np.int64)
        col = np.searchsorted(np.array(vocab, dtype=object), exploded.to_numpy(dtype=object))
        target = idx[rows]
        ok = target >= 0
        table[target[ok], col[ok]] = 1.0
    return table, vocab


class DSSMRecommender(KerasRecommender):
    """User and item towers whose dot product, through a sigmoid, predicts the rating; see the module doc."""

    name = "dssm"
    predicts_ratings = True
    item_spaces = ("items",)
    user_space = True
    warm_starts = True

    search_space: ClassVar[dict[str, Dimension]] = {
        "dim": Choice((16, 32, 64)),
        "lr": FloatRange(3e-4, 1e-2, log=True),
        "l2": Choice((0.0, 1e-5, 1e-4, 1e-3)),
        "batch_size": Choice((512, 1024, 2048)),
    }

    def __init__(
        self,
        dim: int = 32,
        hidden: tuple[int, ...] | list[int] = (64,),
        epochs: int = 10,
        batch_size: int = 1024,
        lr: float = 1e-3,
        l2: float = 0.0,
        patience: int = 2,
        seed: int = 0,
        deterministic: bool = True,
        jit_compile: bool = True,
        threads: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.dim = dim
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.l2 = l2
        self.patience = patience
        self.seed = seed
        self.deterministic = deterministic
        self.jit_compile = jit_compile
        self.threads = threads
        self.verbose = verbose

    # -- learning ---------------------------------------------------------------------
    def fit(self, train: Interactions, context: FitContext | None = None) -> DSSMRecommender:
        self._check_training_params()
        if len(train) == 0:
            raise ValueError("train is empty")
        tf, keras = self._seeded_tf()
        context = context or FitContext()
        seed = int(self.seed)
        n_users, n_items, dim = train.n_users, train.n_items, int(self.dim)

        user_table, self.user_categories_ = demographic_table(context.users, train.user_index, n_users)
        item_table, self.genres_ = genre_table(context.items, train.item_index, n_items)
        r = train.ratings.astype(np.float64)
        self.rating_min_, self.rating_max_ = float(r.min()), float(r.max())
        span = self.rating_max_ - self.rating_min_ or 1.0
        y = ((r - self.rating_min_) / span).astype(np.float32)

        hidden = [int(h) for h in self.hidden]
        user_tower = tower(keras, "user", n_users, dim, hidden, user_table, seed, unit=False)
        item_tower = tower(keras, "item", n_items, dim, hidden, item_table, seed + 1000, unit=False)
        u_in = keras.Input(shape=(), dtype="int32", name="user_idx")
        i_in = keras.Input(shape=(), dtype="int32", name="item_idx")
        dot = keras.layers.Dot(axes=1, name="dot")([user_tower(u_in), item_tower(i_in)])
        out = keras.layers.Dense(
            1,
            activation="sigmoid",
            name="rating",
            kernel_initializer=keras.initializers.Ones(),
            bias_initializer=keras.initializers.Zeros(),
        )(dot)
        self._model = keras.Model([u_in, i_in], out, name="dssm")
        epochs = self._continue_from(context)
        model = self._model
        variables = model.trainable_variables
        apply_gradients = make_lazy_adam(tf, variables, float(self.lr))
        user_emb = user_tower.get_layer("user_id_embedding").embeddings
        item_emb = item_tower.get_layer("item_id_embedding").embeddings
        l2 = tf.constant(float(self.l2), tf.float32)
        use_l2 = bool(float(self.l2))
        spec = tf.TensorSpec([None], tf.int32)

        @tf.function(input_signature=[spec, spec, tf.TensorSpec([None], tf.float32)], reduce_retracing=True, jit_compile=bool(self.jit_compile))
        def step(u, i, target):
            with tf.GradientTape() as tape:
                pred = tf.reshape(model([u, i], training=True), [-1])
                loss = tf.reduce_mean(tf.square(pred - target))
                total = loss
                if use_l2:
                    total += l2 * (
                        tf.reduce_mean(tf.reduce_sum(tf.square(tf.gather(user_emb, u)), axis=1))
                        + tf.reduce_mean(tf.reduce_sum(tf.square(tf.gather(item_emb, i)), axis=1))
                    )
            apply_gradients(tape.gradient(total, variables))
            return loss

        rng = np.random.default_rng(seed)
        arrays = (train.user_idx.astype(np.int32), train.item_idx.astype(np.int32), y)

        def run_epoch(epoch: int):
            ds = shuffled_batches(tf, arrays, int(self.batch_size), rng)
            t0 = time.perf_counter()
            total, n_batches = 0.0, 0
            for batch in ds:
                total += float(step(*batch))
                n_batches += 1
            seconds = time.perf_counter() - t0
            return {"loss": total / max(n_batches, 1)}, seconds

        self._train_epochs(train, context, run_epoch, self._set_embeddings, len(train), epochs)
        return self

    def _grown(self, warm: WarmStart) -> dict:
        """The ID embeddings by the id maps; each tower's first dense layer by its input columns,
        [ID embedding | demographic categories / genres by name] (a category new tonight: its cold rows)."""
        old, dim = warm.model, int(self.dim)
        first = "dense_0" if self.hidden else "out"
        users = names_map(old.user_categories_, self.user_categories_)
        items = names_map(old.genres_, self.genres_)
        return {
            "user_id_embedding": Grow(warm.user_map),
            "item_id_embedding": Grow(warm.item_map),
            f"user_{first}": Grow(concat_map((same(dim), dim), (users, len(old.user_categories_)))),
            f"item_{first}": Grow(concat_map((same(dim), dim), (items, len(old.genres_)))),
        }

    def _set_embeddings(self) -> None:
        model = self.keras_model
        self.user_embeddings_ = tower_outputs(model.get_layer("user_tower"), self._seen.shape[0])
        self.item_embeddings_ = tower_outputs(model.get_layer("item_tower"), self._seen.shape[1])
        kernel, bias = model.get_layer("rating").get_weights()
        self.dot_weight_, self.dot_bias_ = float(np.ravel(kernel)[0]), float(np.ravel(bias)[0])

    # -- prediction ---------------------------------------------------------------------------
    def _rating(self, dots: np.ndarray) -> np.ndarray:
        z = self.dot_weight_ * dots.astype(np.float64) + self.dot_bias_
        sig = 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic function, without overflow warnings
        return self.rating_min_ + (self.rating_max_ - self.rating_min_) * sig

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted ratings of (user, item) index pairs, in [train min, train max].

        An unknown (-1) user or item stands for the average one: the mean of its tower's outputs.
        """
        ue = self.user_embeddings_[np.maximum(users, 0)]
        ie = self.item_embeddings_[np.maximum(items, 0)]
        if (users < 0).any():
            ue[users < 0] = self.user_embeddings_.mean(axis=0)
        if (items < 0).any():
            ie[items < 0] = self.item_embeddings_.mean(axis=0)
        return self._rating(np.einsum("ij,ij->i", ue, ie))

    def score(self, users: np.ndarray) -> np.ndarray:
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        return self._rating(self.user_embeddings_[users] @ self.item_embeddings_.T).astype(np.float32)

    def _user_vectors(self) -> np.ndarray:
        """(n_users, dim) float32 user tower outputs."""
        return self.user_embeddings_.copy()

    def _item_vectors(self, space: str) -> np.ndarray:
        """(n_items, dim) float32 item tower outputs."""
        return self.item_embeddings_.copy()

    # -- persistence -------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        return {
            "user_embeddings": self.user_embeddings_,
            "item_embeddings": self.item_embeddings_,
            "dot_affine": np.array([self.dot_weight_, self.dot_bias_], dtype=np.float64),
            "rating_range": np.array([self.rating_min_, self.rating_max_], dtype=np.float64),
            "user_categories": np.array(self.user_categories_, dtype=np.str_),
            "genres": np.array(self.genres_, dtype=np.str_),
        }

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_embeddings_ = arrays["user_embeddings"].astype(np.float32)
        self.item_embeddings_ = arrays["item_embeddings"].astype(np.float32)
        self.dot_weight_, self.dot_bias_ = (float(x) for x in arrays["dot_affine"])
        self.rating_min_, self.rating_max_ = (float(x) for x in arrays["rating_range"])
        self.user_categories_ = [str(x) for x in arrays["user_categories"]]
        self.genres_ = [str(x) for x in arrays["genres"]]
        self.history_ = []
