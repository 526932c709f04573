"""The parts the tower models (two_tower, dssm, hybrid) share: feature tables, the Keras tower, the in-batch softmax.

Kept out of any one model's module so a model imports what it builds with, not another model:
``numeric_feature_table`` turns a feature table into a standardised (n, d) array aligned with
the dense index (raw scales never reach a network: the reference notebook fed a year near 1995
and counts in the thousands raw, and its loss went NaN); ``tower`` is the ID embedding plus
frozen features plus MLP that both two_tower and dssm use per side; ``in_batch_softmax`` is the
sampled softmax loss that two_tower and hybrid train with. TensorFlow is never imported here:
``keras`` (or ``tf``) is passed in by the model that already imported it.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

# ----------------------------------------------------------------------------- features


def numeric_feature_table(table: pd.DataFrame | None, id_column: str, index_of, n: int, clip: float) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """(n, d) float32 standardised features aligned with the dense index, the column names, mean, std.

    ``index_of`` maps raw ids to dense indices (-1 unknown; rows for unknown ids are ignored).
    Numeric columns are int, float, bool and nullable integer dtypes (the id column excluded);
    string columns are dropped. Each column is standardised with the mean and std of the table
    rows that map onto the index (a std of 0 counts as 1), clipped to +-``clip``, and NaN (a
    nullable ``year``, an index without a feature row) becomes 0, the mean.
    """
    if table is None or len(table) == 0:
        return np.zeros((n, 0), np.float32), [], np.zeros(0), np.ones(0)
    cols = [c for c in table.columns if c != id_column and (pd.api.types.is_numeric_dtype(table[c]) or pd.api.types.is_bool_dtype(table[c]))]
    idx = np.asarray(index_of(table[id_column].to_numpy()), dtype=np.int64)
    keep = idx >= 0
    raw = np.full((n, len(cols)), np.nan)
    if cols and keep.any():
        values = np.column_stack([table[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in cols])
        raw[idx[keep]] = values[keep]
    with np.errstate(invalid="ignore"):
        present = raw[idx[keep]] if keep.any() else np.zeros((0, len(cols)))
        finite = np.where(np.isfinite(present), present, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: mean 0, std 1
            mean = np.nanmean(finite, axis=0) if len(finite) else np.zeros(len(cols))
            std = np.nanstd(finite, axis=0) if len(finite) else np.ones(len(cols))
    mean = np.where(np.isfinite(mean), mean, 0.0)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    z = (raw - mean) / std
    z = np.clip(z, -clip, clip)
    z = np.where(np.isfinite(z), z, 0.0).astype(np.float32)
    return z, cols, mean, std


# ----------------------------------------------------------------------------- towers


def history_table(users: np.ndarray, items: np.ndarray, timestamps: np.ndarray, n_users: int, length: int) -> np.ndarray:
    """(n_users, length) float32: each user's ``length`` most recent items as ``item + 1``, 0 padding.

    Row ``u`` holds the items of the ``(users, items, timestamps)`` interactions of user ``u``,
    the most recent first (ties: the later interaction in the arrays first); a user with fewer
    fills the rest with 0, one with none is all 0. Float32 so it can be a frozen ``Embedding``
    (whose lookup casts it back to int32; exact below 2^24 items); the shift by one frees 0 as
    the padding, which ``tower`` masks out.
    """
    users = np.asarray(users, np.int64)
    table = np.zeros((n_users, int(length)), np.float32)
    if not len(users) or int(length) < 1:
        return table
    order = np.lexsort((np.arange(len(users)), np.asarray(timestamps), users))[::-1]  # by user, newest first
    u = users[order]
    starts = np.r_[0, np.flatnonzero(u[1:] != u[:-1]) + 1]
    rank = np.arange(len(u)) - np.repeat(starts, np.diff(np.r_[starts, len(u)]))
    keep = rank < int(length)
    table[u[keep], rank[keep]] = np.asarray(items, np.int64)[order][keep] + 1
    return table


def tower(
    keras,
    name: str,
    n: int,
    dim: int,
    hidden,
    features: np.ndarray,
    seed: int,
    unit: bool = True,
    history: np.ndarray | None = None,
    n_history_items: int = 0,
    id_embedding: bool = True,
):
    """Functional tower: int index (batch,) -> (batch, dim) vector, a unit vector when ``unit``.

    ``[Embedding(n, dim) | features[index] | history mean] -> Dense(h, relu)... -> Dense(dim)``;
    ``features`` (an (n, d) table, d may be 0) is a frozen embedding layer, so it is saved with
    the model and gathered in the graph. ``history`` (an (n, L) table of ``history_table``,
    frozen likewise) adds the mean of a separate ``Embedding(n_history_items + 1, dim)`` over the
    row's non-zero entries (YouTube-DNN's watch history; all zero: a zero vector).
    ``id_embedding=False`` leaves the ID embedding out: the tower sees only features and history,
    so a user is what they interacted with (an item-item model, like EASE) and shares every
    parameter with similar users; it needs features or a history to have an input at all.
    """
    if not id_embedding and not features.shape[1] and (history is None or not history.shape[1]):
        raise ValueError(f"the {name} tower without an ID embedding needs features or a history")
    inp = keras.Input(shape=(), dtype="int32", name=f"{name}_idx")
    parts = []
    if id_embedding:
        parts.append(
            keras.layers.Embedding(
                n,
                dim,
                name=f"{name}_id_embedding",
                embeddings_initializer=keras.initializers.RandomNormal(stddev=0.1, seed=seed),
            )(inp)
        )
    feat_layer = None
    if features.shape[1]:
        # zeros, then set: an unseeded initialiser would draw its seed from Python's global generator
        feat_layer = keras.layers.Embedding(n, features.shape[1], trainable=False, name=f"{name}_features", embeddings_initializer="zeros")
        parts.append(feat_layer(inp))
    hist_layer = None
    if history is not None and history.shape[1]:
        ops = keras.ops
        hist_layer = keras.layers.Embedding(n, history.shape[1], trainable=False, name=f"{name}_history", embeddings_initializer="zeros")
        hist = hist_layer(inp)  # (batch, L) of item + 1, 0 padding
        hist_emb = keras.layers.Embedding(
            int(n_history_items) + 1,
            dim,
            name=f"{name}_history_embedding",
            embeddings_initializer=keras.initializers.RandomNormal(stddev=0.1, seed=seed + 201),
        )(hist)
        mask = ops.cast(ops.greater(hist, 0.5), "float32")
        parts.append(ops.sum(hist_emb * ops.expand_dims(mask, -1), axis=1) / ops.maximum(ops.sum(mask, axis=1, keepdims=True), 1.0))
    x = keras.layers.Concatenate(name=f"{name}_concat")(parts) if len(parts) > 1 else parts[0]
    for j, h in enumerate(hidden):
        x = keras.layers.Dense(
            int(h),
            activation="relu",
            name=f"{name}_dense_{j}",
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 1 + j),
        )(x)
    x = keras.layers.Dense(dim, name=f"{name}_out", kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 101))(x)
    out = keras.layers.UnitNormalization(name=f"{name}_unit")(x) if unit else x
    model = keras.Model(inp, out, name=f"{name}_tower")
    if feat_layer is not None:
        feat_layer.set_weights([features])
    if hist_layer is not None:
        hist_layer.set_weights([history.astype(np.float32)])
    return model


# ----------------------------------------------------------------------------- losses


def log_item_share(counts: np.ndarray) -> np.ndarray:
    """``log q_i``: each item's share of the training positives (an item without any counts as one);
    the log-Q correction of training and the popularity term of scoring both use it."""
    counts = np.asarray(counts, np.float64)
    return np.log(np.maximum(counts, 1.0) / max(counts.sum(), 1.0))


def in_batch_softmax(tf, users, items, item_idx, inv_t, log_q=None, shared: int | None = None):
    """Mean cross-entropy of each row's positive item against the batch's other positives (a graph op).

    The sampled softmax of two_tower and hybrid (Yi et al. 2019; the two_tower module doc has the
    design): row ``b`` scores ``users[b]`` against the batch's positive item vectors ``items`` at
    ``<user, item> * inv_t``, its own positive is the label. ``log_q`` (a (n_items,) tensor of
    ``log q_i``, or None: no correction) subtracts each item's log share of the examples from its
    logit, so popular items are not punished for appearing as negatives more often. A slot holding
    the row's own item other than the label (a duplicate within the batch) is masked out.
    ``shared=M``: every row's negatives are the batch's first M positives only (a uniform sample:
    batches are shuffled), plus its own positive, so the B x B logits become B x (M + 1); here the
    label's own slot among the M is masked too, as its positive is already the first column.
    """
    if shared is not None:
        negatives = item_idx[:shared]
        pos = tf.reduce_sum(users * items, axis=1) * inv_t
        neg = tf.matmul(users, items[:shared], transpose_b=True) * inv_t
        if log_q is not None:
            pos = pos - tf.gather(log_q, item_idx)
            neg = neg - tf.gather(log_q, negatives)[None, :]
        # a slot holding the row's own item (itself, or a duplicate) is not a negative
        neg = tf.where(tf.equal(item_idx[:, None], negatives[None, :]), tf.constant(-1e9, neg.dtype), neg)
        return tf.reduce_mean(tf.reduce_logsumexp(tf.concat([pos[:, None], neg], axis=1), axis=1) - pos)
    logits = tf.matmul(users, items, transpose_b=True) * inv_t
    if log_q is not None:
        logits = logits - tf.gather(log_q, item_idx)[None, :]
    b = tf.shape(item_idx)[0]
    dup = tf.logical_and(tf.equal(item_idx[:, None], item_idx[None, :]), tf.logical_not(tf.eye(b, dtype=tf.bool)))
    logits = tf.where(dup, tf.constant(-1e9, logits.dtype), logits)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.range(b), logits=logits))
