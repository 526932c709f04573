"""TwoTowerRecommender on a tiny two-cluster data set (TensorFlow is imported by these tests only)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from recflow.evaluation.evaluate import evaluate_ranking
from recflow.models.base import NotFittedError
from recflow.models.context import FitContext
from recflow.prep import sample_files as F
from recflow.prep.interactions import Interactions

tt = pytest.importorskip("recflow.models.two_tower")
TwoTowerRecommender = tt.TwoTowerRecommender

N_USERS, N_ITEMS = 40, 24
FAST = dict(dim=8, hidden=(16,), batch_size=64, epochs=2, lr=0.01, jit_compile=False, seed=0)


def two_clusters(seed: int = 0) -> tuple[Interactions, Interactions]:
    """Users 0-19 interact with items 0-11, users 20-39 with items 12-23: 7 train + 2 valid each."""
    rng = np.random.default_rng(seed)
    rows = {"train": ([], []), "valid": ([], [])}
    for user in range(N_USERS):
        base = 0 if user < 20 else 12
        items = base + rng.choice(12, 9, replace=False)
        rows["train"][0].extend([user] * 7)
        rows["train"][1].extend(items[:7].tolist())
        rows["valid"][0].extend([user] * 2)
        rows["valid"][1].extend(items[7:].tolist())
    out = []
    for part in ("train", "valid"):
        u, i = (np.array(x, np.int32) for x in rows[part])
        out.append(
            Interactions(u, i, np.full(len(u), 4.0, np.float32), np.zeros(len(u), np.int64), np.arange(100, 100 + N_USERS), np.arange(1000, 1000 + N_ITEMS))
        )
    return out[0], out[1]


def raw_features() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Feature tables on raw scales (the notebook's NaN-loss trigger): years ~1995, counts ~2000,
    a nullable year with a missing value, a string column, and an unknown id."""
    rng = np.random.default_rng(1)
    users = pd.DataFrame(
        {
            "user_id": np.r_[np.arange(100, 100 + N_USERS), 999],
            "rating_count": rng.integers(1500, 2500, N_USERS + 1),
            "mean_rating": rng.uniform(1, 5, N_USERS + 1),
            "activity_level": pd.Series(["super"] * (N_USERS + 1), dtype="str"),
        }
    )
    years = pd.array(rng.integers(1930, 2000, N_ITEMS), dtype="Int16")
    years[3] = pd.NA
    items = pd.DataFrame(
        {
            "item_id": np.arange(1000, 1000 + N_ITEMS),
            "year": years,
            "rating_count": rng.integers(0, 3000, N_ITEMS),
            "has_train_ratings": np.ones(N_ITEMS, bool),
            "constant": np.full(N_ITEMS, 7.0),
            "popularity": pd.Series(["popular"] * N_ITEMS, dtype="str"),
        }
    )
    return users, items


@pytest.fixture(scope="module")
def data():
    return two_clusters()


@pytest.fixture(scope="module")
def context(data):
    users, items = raw_features()
    return FitContext(user_features=users, item_features=items)


@pytest.fixture(scope="module")
def model(data, context):
    return TwoTowerRecommender(**FAST).fit(data[0], context)


def test_feature_table_standardised_and_string_columns_dropped(data):
    users, items = raw_features()
    train = data[0]
    z, cols, mean, std = tt.numeric_feature_table(items, "item_id", train.item_index, N_ITEMS, clip=5.0)
    assert cols == ["year", "rating_count", "has_train_ratings", "constant"]
    assert z.shape == (N_ITEMS, 4) and z.dtype == np.float32
    assert np.isfinite(z).all() and np.abs(z).max() <= 5.0
    assert z[3, 0] == 0.0  # missing year -> the mean
    assert np.all(z[:, 3] == 0.0) and std[3] == 1.0  # a constant column: std 0 counts as 1
    np.testing.assert_allclose(z[:, 1].mean(), 0.0, atol=1e-5)
    zu, ucols, _, _ = tt.numeric_feature_table(users, "user_id", train.user_index, N_USERS, clip=5.0)
    assert ucols == ["rating_count", "mean_rating"] and zu.shape == (N_USERS, 2)  # id 999 ignored


def test_shapes_unit_vectors_and_history(model, data):
    train = data[0]
    assert model.user_embeddings().shape == (N_USERS, 8)
    assert model.item_embeddings().shape == (N_ITEMS, 8)
    np.testing.assert_allclose(np.linalg.norm(model.item_embeddings(), axis=1), 1.0, atol=1e-5)
    scores = model.score(np.array([0, 5, 39]))
    assert scores.shape == (3, N_ITEMS) and scores.dtype == np.float32
    assert [h["epoch"] for h in model.history_] == [1, 2]
    for h in model.history_:
        assert set(h) >= {"epoch", "loss", "valid_recall_at_10", "examples_per_second"}
        assert np.isfinite(h["loss"]) and h["examples_per_second"] > 0
    assert model.n_examples_ == len(train)


def test_raw_scale_features_keep_the_loss_finite(data, context):
    # a large learning rate on unscaled-looking inputs: the standardisation keeps it finite
    for loss in ("softmax", "bpr"):
        m = TwoTowerRecommender(**{**FAST, "lr": 0.1, "loss": loss}).fit(data[0], context)
        assert all(np.isfinite(h["loss"]) for h in m.history_)
        assert np.isfinite(m.item_embeddings()).all()


def test_seen_items_excluded(model, data):
    train = data[0]
    users = np.arange(N_USERS)
    recs, scores = model.recommend(users, k=10)
    seen = train.seen.toarray().astype(bool)
    assert not seen[users[:, None], recs].any()
    assert (recs >= 0).all() and np.isfinite(scores).all()


def test_not_fitted_and_bad_params(data):
    with pytest.raises(NotFittedError):
        TwoTowerRecommender().score(np.array([0]))
    with pytest.raises(ValueError):
        TwoTowerRecommender(loss="hinge").fit(data[0])


def test_early_stopping_restores_the_best_epoch_and_reports(data, context):
    train, valid = data
    calls = []
    ctx = FitContext(
        valid=valid,
        user_features=context.user_features,
        item_features=context.item_features,
        on_epoch_end=lambda epoch, metrics: calls.append((epoch, metrics)),
    )
    # (the raw features here are noise: without them the clusters are learnt within ~10 epochs)
    m = TwoTowerRecommender(**{**FAST, "epochs": 20, "patience": 4, "use_features": False}).fit(train, ctx)
    recalls = [h["valid_recall_at_10"] for h in m.history_]
    assert all(0.0 <= r <= 1.0 for r in recalls)
    assert m.best_epoch_ == int(np.argmax(recalls)) + 1
    assert [c[0] for c in calls] == [h["epoch"] for h in m.history_]
    assert set(calls[0][1]) >= {"loss", "valid_recall_at_10", "examples_per_second"}
    # the kept embeddings are those of the best epoch
    again = evaluate_ranking(m, train, valid, ks=[10])["recall_at_10"]
    assert again == pytest.approx(max(recalls))
    # and they are the restored towers' outputs
    user_tower = m.keras_model.get_layer("user_tower")
    np.testing.assert_allclose(tt.tower_outputs(user_tower, N_USERS), m.user_embeddings(), atol=1e-6)
    # the clusters are learnable: a cluster's users are recommended mostly their cluster's items
    recs, _ = m.recommend(np.arange(N_USERS), k=3)
    same = (recs < 12) == (np.arange(N_USERS) < 20)[:, None]
    assert same.mean() > 0.8


def test_seeded_fits_agree(data, context):
    # fit() seeds Keras (weights) and NumPy (shuffle, negatives) and turns on TF op determinism;
    # on CPU two fits with one seed then give bitwise identical embeddings
    for loss in ("softmax", "bpr"):
        a = TwoTowerRecommender(**{**FAST, "loss": loss}).fit(data[0], context)
        b = TwoTowerRecommender(**{**FAST, "loss": loss}).fit(data[0], context)
        np.testing.assert_array_equal(a.item_embeddings(), b.item_embeddings())
        np.testing.assert_array_equal(a.user_embeddings(), b.user_embeddings())
    c = TwoTowerRecommender(**{**FAST, "seed": 1}).fit(data[0], context)
    assert not np.allclose(a.item_embeddings(), c.item_embeddings())


def test_shared_negatives_covering_the_batch_is_the_whole_batch_softmax(data, context):
    # with M >= batch size every row sees every other positive: the same loss as the B x B logits
    whole = TwoTowerRecommender(**{**FAST, "shared_negatives": None}).fit(data[0], context)
    covering = TwoTowerRecommender(**{**FAST, "shared_negatives": FAST["batch_size"]}).fit(data[0], context)
    fewer = TwoTowerRecommender(**{**FAST, "shared_negatives": 8}).fit(data[0], context)
    np.testing.assert_allclose([h["loss"] for h in covering.history_], [h["loss"] for h in whole.history_], rtol=1e-5)
    np.testing.assert_allclose(covering.item_embeddings(), whole.item_embeddings(), atol=1e-5)
    assert fewer.history_[0]["loss"] < whole.history_[0]["loss"]  # 8 negatives: an easier softmax


def test_jit_compiled_step_and_no_features(data):
    m = TwoTowerRecommender(**{**FAST, "jit_compile": True, "use_features": False}).fit(data[0], FitContext())
    assert m.user_feature_columns_ == [] and np.isfinite(m.history_[-1]["loss"])


def test_bpr_takes_matching_triplets(data, tmp_path):
    train = data[0]
    triplets = pd.DataFrame(
        {
            "user_idx": train.user_idx[:50],
            "pos_idx": train.item_idx[:50],
            "neg_idx": (train.item_idx[:50] + 12) % N_ITEMS,
        }
    )
    F.write_samples(tmp_path, train=train, triplets=triplets)
    m = TwoTowerRecommender(**{**FAST, "loss": "bpr"}).fit(train, FitContext(samples=tmp_path))
    assert m.n_examples_ == 50
    # without samples: one on-the-fly negative per positive
    m2 = TwoTowerRecommender(**{**FAST, "loss": "bpr"}).fit(train, FitContext(samples=tmp_path / "absent"))
    assert m2.n_examples_ == len(train)


def test_unseen_negatives_are_unseen():
    rng = np.random.default_rng(0)
    n_items = 10
    users = np.repeat(np.arange(3), 200)
    seen = {0: [0, 1, 2], 1: list(range(9)), 2: []}  # user 1 has one free item
    keys = np.sort(np.array([u * n_items + i for u, items in seen.items() for i in items], np.int64))
    neg = tt.unseen_negatives(users, keys, n_items, rng)
    for u in range(3):
        assert not np.isin(neg[users == u], seen[u]).any()
    assert (neg[users == 1] == 9).all()
    assert len(np.unique(neg[users == 2])) == n_items


def test_save_load_round_trip(model, tmp_path):
    path = tmp_path / "tt"
    model.save(path)
    assert (path / "model.keras").is_file() and (path / "arrays.npz").is_file()
    loaded = TwoTowerRecommender.load(path)
    users = np.arange(N_USERS)
    a, sa = model.recommend(users, k=5)
    b, sb = loaded.recommend(users, k=5)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(sa, sb)
    assert loaded.get_params() == model.get_params()
    assert loaded.item_feature_columns_ == model.item_feature_columns_
    # the Keras model loads lazily and reproduces the saved embeddings
    item_tower = loaded.keras_model.get_layer("item_tower")
    np.testing.assert_allclose(tt.tower_outputs(item_tower, N_ITEMS), model.item_embeddings(), atol=1e-6)


def test_load_for_retrieval_needs_no_tensorflow(model, tmp_path):
    path = tmp_path / "tt"
    model.save(path)
    expected, _ = model.recommend(np.arange(N_USERS), k=5)
    np.save(tmp_path / "expected.npy", expected)
    code = textwrap.dedent(f"""
        import sys, numpy as np
        from recflow.models.two_tower import TwoTowerRecommender
        m = TwoTowerRecommender.load({str(path)!r})
        recs, _ = m.recommend(np.arange({N_USERS}), k=5)
        assert (recs == np.load({str(tmp_path / "expected.npy")!r})).all()
        assert "tensorflow" not in sys.modules and "keras" not in sys.modules, "TF was imported"
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_popularity_weight_adds_beta_times_temperature_times_log_q_to_the_cosine(data, context):
    plain = TwoTowerRecommender(**{**FAST, "epochs": 1, "temperature": 0.1}).fit(data[0], context)
    tilted = TwoTowerRecommender(**{**FAST, "epochs": 1, "temperature": 0.1, "popularity_weight": 0.5}).fit(data[0], context)
    np.testing.assert_array_equal(tilted.user_embeddings(), plain.user_embeddings())  # the weight changes scoring only
    counts = np.bincount(data[0].item_idx, minlength=N_ITEMS)
    log_q = np.log(np.maximum(counts, 1) / counts.sum())
    users = np.arange(N_USERS)
    cosine = plain.user_embeddings() @ plain.item_embeddings().T
    np.testing.assert_allclose(plain.score(users), cosine, atol=1e-6)
    np.testing.assert_allclose(tilted.score(users), cosine + 0.5 * 0.1 * log_q, atol=1e-6)
    U, V, valid = tilted.dot_factors()  # serving scores by the same product: [user, 1] . [item, term]
    assert U.shape == (N_USERS, FAST["dim"] + 1) and valid.all()
    np.testing.assert_allclose(U @ V.T, tilted.score(users), atol=1e-6)
    assert plain.dot_factors()[0].shape == (N_USERS, FAST["dim"])


def test_history_table_holds_each_users_newest_items_padded():
    # user 0: items 5 (t=3), 2 (t=1), 7 (t=9), 4 (t=9, later in the arrays); user 2: one item; user 1: none
    users = np.array([0, 0, 2, 0, 0])
    items = np.array([5, 2, 6, 7, 4])
    times = np.array([3, 1, 0, 9, 9])
    table = tt.history_table(users, items, times, n_users=3, length=3)
    assert table.dtype == np.float32
    # item + 1, newest first (a tie: the later row first), 0 pads; user 0's oldest item (2) falls out
    np.testing.assert_array_equal(table, [[5, 8, 6], [0, 0, 0], [7, 0, 0]])


def test_history_is_built_from_train_positives_only(data):
    train, valid = data
    m = TwoTowerRecommender(**{**FAST, "history": 10, "use_features": False}).fit(train, FitContext(valid=valid))
    table = m.keras_model.get_layer("user_tower").get_layer("user_history").get_weights()[0]
    assert table.shape == (N_USERS, 10)
    for u in range(N_USERS):
        row = table[u][table[u] > 0].astype(int) - 1
        assert sorted(row) == sorted(train.item_idx[train.user_idx == u])  # 7 train items, 3 pads, no valid item
    assert np.isfinite(m.history_[-1]["loss"])


def test_history_zero_builds_the_model_without_history(data, context):
    off = TwoTowerRecommender(**{**FAST, "history": 0}).fit(data[0], context)
    default = TwoTowerRecommender(**FAST).fit(data[0], context)
    names = [layer.name for layer in off.keras_model.get_layer("user_tower").layers]
    assert not [n for n in names if "history" in n]
    np.testing.assert_array_equal(off.user_embeddings(), default.user_embeddings())
    with pytest.raises(ValueError, match="history"):
        TwoTowerRecommender(**{**FAST, "history": -1}).fit(data[0], context)


def test_history_model_saves_and_reloads(data, context, tmp_path):
    m = TwoTowerRecommender(**{**FAST, "history": 5}).fit(data[0], context)
    m.save(tmp_path / "tt")
    loaded = TwoTowerRecommender.load(tmp_path / "tt")
    user_tower = loaded.keras_model.get_layer("user_tower")  # the history mean is saved in model.keras
    np.testing.assert_allclose(tt.tower_outputs(user_tower, N_USERS), m.user_embeddings(), atol=1e-6)


def test_all_negatives_is_the_full_catalogue_softmax(data, context):
    # one batch holds every example and a vanishing lr leaves the towers as initialised, so the
    # epoch's loss is the mean cross-entropy of each positive against all 24 items' scores
    train = data[0]
    m = TwoTowerRecommender(**{**FAST, "negatives": "all", "epochs": 1, "batch_size": 512, "lr": 1e-12, "temperature": 0.1}).fit(train, context)
    logits = m.user_embeddings()[train.user_idx] @ m.item_embeddings().T / 0.1
    top = logits.max(axis=1)
    expected = np.mean(top + np.log(np.exp(logits - top[:, None]).sum(axis=1)) - logits[np.arange(len(train)), train.item_idx])
    np.testing.assert_allclose(m.history_[0]["loss"], expected, rtol=1e-5)
    with pytest.raises(ValueError, match="negatives"):
        TwoTowerRecommender(**{**FAST, "negatives": "some"}).fit(train, context)


def test_all_negatives_training_lowers_the_full_softmax_loss(data):
    m = TwoTowerRecommender(**{**FAST, "negatives": "all", "epochs": 5, "use_features": False}).fit(data[0])
    losses = [h["loss"] for h in m.history_]
    assert losses[-1] < losses[0]


def test_without_user_ids_users_with_the_same_history_are_the_same_vector():
    # users 0 and 1 rated items 0, 1, 2 at the same times, user 2 items 3, 4: no ID embedding, so
    # the user tower is a function of the history alone
    u = np.array([0, 0, 0, 1, 1, 1, 2, 2], np.int32)
    i = np.array([0, 1, 2, 0, 1, 2, 3, 4], np.int32)
    t = np.array([1, 2, 3, 1, 2, 3, 1, 2], np.int64)
    train = Interactions(u, i, np.full(8, 4.0, np.float32), t, np.arange(3), np.arange(5))
    m = TwoTowerRecommender(**{**FAST, "history": 4, "user_id": False, "use_features": False}).fit(train)
    assert "user_id_embedding" not in [layer.name for layer in m.keras_model.get_layer("user_tower").layers]
    vectors = m.user_embeddings()
    np.testing.assert_array_equal(vectors[0], vectors[1])
    assert not np.allclose(vectors[0], vectors[2])


def test_without_user_ids_the_user_tower_needs_an_input(data):
    with pytest.raises(ValueError, match="user_id=False"):
        TwoTowerRecommender(**{**FAST, "user_id": False, "history": 0, "use_features": False}).fit(data[0])
