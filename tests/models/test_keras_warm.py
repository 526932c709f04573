"""Warm starts of the Keras models (``recflow.models.keras_warm``): the maps, carrying a network over, declining.

The per-model checks (a warm fit as good as a cold one, every old row at its new index) are in
``test_contract.py``; here the shared mechanics on a hand-made network.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recflow.models.context import FitContext
from recflow.models.keras_warm import CannotCarry, Grow, carry_weights, concat_map, names_map, same, weighted_layers
from recflow.models.warm import WarmStart
from recflow.prep.interactions import index_split


def test_names_map_gives_each_new_column_its_earlier_position():
    assert names_map(["a", "b", "c"], ["c", "new", "a"]).tolist() == [2, -1, 0]
    assert names_map([], ["x"]).tolist() == [-1]


def test_concat_map_offsets_each_block_by_the_earlier_widths():
    # [ID embedding (2) | features: earlier ("a", "b"), tonight ("b", "new", "a")]
    rows = concat_map((same(2), 2), (names_map(["a", "b"], ["b", "new", "a"]), 2))
    assert rows.tolist() == [0, 1, 3, -1, 2]


@pytest.fixture(scope="module")
def keras():
    from recflow.models.keras_training import import_tf

    return import_tf(1)[1]


def _network(keras, n: int, features: np.ndarray, seed: int = 0):
    """ID embedding (n x 2) | frozen features -> Dense(3): the shape of a tower's input."""
    idx = keras.Input(shape=(), dtype="int32")
    emb = keras.layers.Embedding(n, 2, name="id_embedding", embeddings_initializer=keras.initializers.RandomNormal(seed=seed))(idx)
    table = keras.layers.Embedding(n, features.shape[1], trainable=False, name="features", embeddings_initializer="zeros")
    x = keras.layers.Concatenate()([emb, table(idx)])
    model = keras.Model(idx, keras.layers.Dense(3, name="dense", kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 1))(x))
    table.set_weights([features])
    return model


def test_carried_rows_move_by_the_map_new_rows_keep_the_cold_draw_and_frozen_tables_stay_tonights(keras):
    old = _network(keras, 3, np.ones((3, 2), np.float32), seed=5)
    new = _network(keras, 4, np.full((4, 3), 7.0, np.float32), seed=0)
    cold_emb, cold_kernel = new.get_layer("id_embedding").get_weights()[0], new.get_layer("dense").get_weights()[0]
    old_emb, (old_kernel, old_bias) = old.get_layer("id_embedding").get_weights()[0], old.get_layer("dense").get_weights()
    ids = np.array([-1, 2, 0, 1])  # tonight's index 0 is new; the known ids moved
    columns = concat_map((same(2), 2), (names_map(["f", "g"], ["g", "h", "f"]), 2))
    set_layers = carry_weights(new, old, {"id_embedding": Grow(ids), "dense": Grow(columns)})
    assert sorted(set_layers) == ["dense", "id_embedding"]
    emb = new.get_layer("id_embedding").get_weights()[0]
    np.testing.assert_array_equal(emb[0], cold_emb[0])
    np.testing.assert_array_equal(emb[1:], old_emb[[2, 0, 1]])
    kernel, bias = new.get_layer("dense").get_weights()
    np.testing.assert_array_equal(kernel[[0, 1, 2, 4]], old_kernel[[0, 1, 3, 2]])
    np.testing.assert_array_equal(kernel[3], cold_kernel[3])  # column "h" is new tonight
    np.testing.assert_array_equal(bias, old_bias)
    np.testing.assert_array_equal(new.get_layer("features").get_weights()[0], np.full((4, 3), 7.0, np.float32))


def test_a_weight_that_changed_shape_without_a_map_sets_nothing(keras):
    old = _network(keras, 3, np.ones((3, 2), np.float32), seed=5)
    new = _network(keras, 4, np.ones((4, 3), np.float32), seed=0)
    before = [w.copy() for w in new.get_weights()]
    with pytest.raises(CannotCarry, match="'dense'"):
        carry_weights(new, old, {"id_embedding": Grow(np.array([-1, 2, 0, 1]))})  # the dense rows grew, unnamed
    for got, was in zip(new.get_weights(), before):
        np.testing.assert_array_equal(got, was)
    with pytest.raises(ValueError, match="no layers named"):
        carry_weights(new, old, {"no_such_layer": Grow(np.zeros(1, np.int64))})


def test_weighted_layers_reach_into_nested_models(keras):
    inner = _network(keras, 3, np.ones((3, 1), np.float32))
    outer_in = keras.Input(shape=(), dtype="int32")
    outer = keras.Model(outer_in, keras.layers.Dense(1, name="head")(inner(outer_in)))
    assert sorted(weighted_layers(outer)) == ["dense", "features", "head", "id_embedding"]


def _nights():
    """Night 1: users 1-8 on items 1-6; night 2 adds user 0 and item 0 (every known index moves)."""
    rng = np.random.default_rng(3)
    rows = [(u, int(i), float(rng.integers(1, 6))) for u in range(1, 9) for i in rng.choice(np.arange(1, 7), 4, replace=False)]
    rows += [(0, 0, 5.0), (0, 3, 4.0), (2, 0, 3.0)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating"]).assign(timestamp=np.arange(len(rows)), split="train")
    early = frame[(frame["user_id"] > 0) & (frame["item_id"] > 0)]
    return index_split(early)["train"], index_split(frame)["train"]


def test_a_hybrid_whose_content_columns_cannot_be_matched_fits_cold_and_says_why():
    from recflow.models.hybrid import HybridRecommender

    params = dict(dim=4, hidden=[4], text_components=0, batch_size=8, epochs=3, threads=1, genre_overlap_queries=None)
    old, new = _nights()
    earlier = HybridRecommender(**params).fit(old)  # no items table: one constant content column
    del earlier.content_columns_  # as a fit saved before the names were kept
    items = pd.DataFrame({"item_id": np.arange(7), "genres": [["A"], ["B"], ["A", "B"], ["A"], ["B"], ["A"], ["B"]]})
    fit = HybridRecommender(**params).fit(new, FitContext(items=items, warm_start=WarmStart.between(earlier, old.user_ids, old.item_ids, new)))
    assert not fit.warm_started_ and "content_dense_0" in fit.warm_declined_
    assert len(fit.history_) == 3  # a cold fit's epochs


def test_a_warm_mult_vae_goes_on_along_the_kl_schedule_where_the_earlier_fit_stopped():
    from recflow.models.mult_vae import MultVAERecommender

    params = dict(dim=4, hidden=[8], batch_size=4, epochs=2, anneal_steps=1000, beta_max=1.0, threads=1)
    old, new = _nights()
    earlier = MultVAERecommender(**params).fit(old)
    assert earlier.updates_ == 2 * 2  # 8 users, batches of 4, 2 epochs
    fit = MultVAERecommender(**params).fit(new, FitContext(warm_start=WarmStart.between(earlier, old.user_ids, old.item_ids, new)))
    assert fit.warm_started_ and fit.updates_ == 4 + 2 * 3  # 9 users tonight: 3 batches an epoch
    assert fit.history_[0]["beta"] == pytest.approx((4 * 5 + 4 * 6 + 1 * 7) / 9 / 1000)
