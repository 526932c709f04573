"""The hybrid model's Keras network: user tower, content branch, CF branch and fusion head.

Built in one place so the saved ``model.keras`` and the training step agree on layer names
(``user_tower``, ``content_branch``, ``cf_branch``, ``fusion_head``, read back by the model's
``_set_vectors``). The layout and why (unit outputs, the cold-item mask) are in
``recflow.models.hybrid``'s docstring. ``keras`` is passed in: TensorFlow is imported by the
model only when it trains.
"""

from __future__ import annotations

import numpy as np


def _mlp(keras, x, hidden, dim: int, name: str, seed: int):
    for j, h in enumerate(hidden):
        x = keras.layers.Dense(int(h), activation="relu", name=f"{name}_dense_{j}", kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 1 + j))(x)
    x = keras.layers.Dense(dim, name=f"{name}_out", kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 101))(x)
    return keras.layers.UnitNormalization(name=f"{name}_unit")(x)


def build_network(keras, n_users: int, n_items: int, dim: int, hidden, fusion_hidden, content: np.ndarray, has_cf: np.ndarray, seed: int):
    """(whole model, user tower, content branch, cf branch, fusion head); see the module doc."""

    def init(s):
        return keras.initializers.RandomNormal(stddev=0.1, seed=s)

    # every initialiser is seeded or constant (the frozen tables are set below): an unseeded one
    # would draw its seed from Python's process-global generator
    u_in = keras.Input(shape=(), dtype="int32", name="user_idx")
    u = keras.layers.Embedding(n_users, dim, name="user_id_embedding", embeddings_initializer=init(seed))(u_in)
    user_tower = keras.Model(u_in, keras.layers.UnitNormalization(name="user_unit")(u), name="user_tower")

    c_in = keras.Input(shape=(), dtype="int32", name="content_item_idx")
    table = keras.layers.Embedding(n_items, content.shape[1], trainable=False, name="content_features", embeddings_initializer="zeros")
    c = _mlp(keras, table(c_in), hidden, dim, "content", seed + 1000)
    content_branch = keras.Model(c_in, c, name="content_branch")

    f_in = keras.Input(shape=(), dtype="int32", name="cf_item_idx")
    f = keras.layers.Embedding(n_items, dim, name="item_id_embedding", embeddings_initializer=init(seed + 2000))(f_in)
    cf_branch = keras.Model(f_in, keras.layers.UnitNormalization(name="cf_unit")(f), name="cf_branch")

    hc = keras.Input(shape=(dim,), name="fusion_content")
    hf = keras.Input(shape=(dim,), name="fusion_cf")
    h = _mlp(keras, keras.layers.Concatenate(name="fusion_concat")([hc, hf]), fusion_hidden, dim, "fusion", seed + 3000)
    fusion = keras.Model([hc, hf], h, name="fusion_head")

    # the whole network, as saved: cold items (no train interactions) enter the head with cf = 0
    uu = keras.Input(shape=(), dtype="int32", name="user_idx")
    ii = keras.Input(shape=(), dtype="int32", name="item_idx")
    keep_table = keras.layers.Embedding(n_items, 1, trainable=False, name="has_cf", embeddings_initializer="zeros")
    cv, fv = content_branch(ii), cf_branch(ii)
    fv_eff = keras.layers.Multiply(name="cf_cold_mask")([fv, keep_table(ii)])
    model = keras.Model([uu, ii], [user_tower(uu), cv, fv, fusion([cv, fv_eff])], name="hybrid")
    table.set_weights([content.astype(np.float32)])
    keep_table.set_weights([has_cf.astype(np.float32).reshape(-1, 1)])
    return model, user_tower, content_branch, cf_branch, fusion
