"""DSSMRecommender (rating regressor) on tiny synthetic ratings with demographics and genres."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recflow.evaluation.evaluate import evaluate_ratings
from recflow.models.context import FitContext
from recflow.prep.interactions import Interactions

dssm = pytest.importorskip("recflow.models.dssm")
DSSMRecommender = dssm.DSSMRecommender

N_USERS, N_ITEMS = 30, 20
FAST = dict(dim=4, hidden=(8,), batch_size=64, epochs=2, lr=0.01, jit_compile=False, seed=0)


def ratings(seed: int = 0) -> tuple[Interactions, Interactions]:
    """Women (users 0-14) rate items 0-9 high and 10-19 low, men the other way round."""
    rng = np.random.default_rng(seed)
    parts = {"train": ([], [], []), "valid": ([], [], [])}
    for user in range(N_USERS):
        items = rng.choice(N_ITEMS, 10, replace=False)
        likes = (items < 10) == (user < 15)
        r = np.where(likes, 5.0, 1.0) - rng.integers(0, 2, 10)
        r = np.clip(r, 1, 5)
        for name, sl in (("train", slice(0, 8)), ("valid", slice(8, 10))):
            parts[name][0].extend([user] * len(items[sl]))
            parts[name][1].extend(items[sl].tolist())
            parts[name][2].extend(r[sl].tolist())
    out = []
    for name in ("train", "valid"):
        u, i, r = parts[name]
        out.append(
            Interactions(
                np.array(u, np.int32),
                np.array(i, np.int32),
                np.array(r, np.float32),
                np.zeros(len(u), np.int64),
                np.arange(1, N_USERS + 1),
                np.arange(1, N_ITEMS + 1),
            )
        )
    return out[0], out[1]


def side_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    users = pd.DataFrame(
        {
            "user_id": np.arange(1, N_USERS + 1),
            "gender": pd.Series(["F"] * 15 + ["M"] * 15, dtype="str"),
            "age": np.tile([18, 25, 35], 10),
            "occupation": np.arange(N_USERS) % 4,
            "zip_code": pd.Series(["00000"] * N_USERS, dtype="str"),
        }
    )
    items = pd.DataFrame(
        {
            "item_id": np.arange(1, N_ITEMS + 2),  # one item outside the index
            "title": [f"m{j}" for j in range(N_ITEMS + 1)],
            "genres": [["Drama", "Romance"] if j < 10 else ["Action"] for j in range(N_ITEMS)] + [["(no genres listed)"]],
        }
    )
    return users, items


@pytest.fixture(scope="module")
def data():
    return ratings()


@pytest.fixture(scope="module")
def model(data):
    users, items = side_tables()
    return DSSMRecommender(**FAST).fit(data[0], FitContext(users=users, items=items))


def test_side_tables(data):
    users, items = side_tables()
    train = data[0]
    demo, names = dssm.demographic_table(users, train.user_index, N_USERS)
    assert names[:2] == ["gender=F", "gender=M"] and len(names) == 2 + 3 + 4
    assert demo.shape == (N_USERS, 9) and (demo.sum(axis=1) == 3).all()
    genres, vocab = dssm.genre_table(items, train.item_index, N_ITEMS)
    assert vocab == ["Action", "Drama", "Romance"]
    assert genres[0].tolist() == [0, 1, 1] and genres[15].tolist() == [1, 0, 0]


def test_shapes_range_and_rmse(model, data):
    train, valid = data
    assert model.predicts_ratings
    assert model.user_embeddings().shape == (N_USERS, 4) and model.item_embeddings().shape == (N_ITEMS, 4)
    pred = model.predict(valid.user_idx, valid.item_idx)
    assert pred.shape == (len(valid),) and np.isfinite(pred).all()
    assert pred.min() >= train.ratings.min() and pred.max() <= train.ratings.max()
    res = evaluate_ratings(model, valid)
    assert np.isfinite(res["rmse"]) and res["n_rated"] == len(valid)
    scores = model.score(np.array([0, 1]))
    assert scores.shape == (2, N_ITEMS)
    np.testing.assert_allclose(
        scores[1, valid.item_idx[valid.user_idx == 1]], model.predict(valid.user_idx[valid.user_idx == 1], valid.item_idx[valid.user_idx == 1]), rtol=1e-5
    )
    assert all(np.isfinite(h["loss"]) for h in model.history_)
    with pytest.raises(IndexError):
        model.predict(np.array([N_USERS]), np.array([0]))


def test_an_unknown_index_stands_for_the_mean_tower_output(model):
    """The contract's rule: -1 is unknown and gets the model's fallback (dssm used to raise)."""
    mean_user, mean_item = model.user_embeddings().mean(axis=0), model.item_embeddings().mean(axis=0)
    expected = model._rating(np.array([mean_user @ model.item_embeddings_[3], model.user_embeddings_[2] @ mean_item, mean_user @ mean_item], dtype=np.float32))
    np.testing.assert_allclose(model.predict([-1, 2, -1], [3, -1, -1]), expected, rtol=1e-6)
    np.testing.assert_array_equal(model.predict([-1, 2], [3, 4])[1:], model.predict([2], [4]))


def test_seen_items_excluded(model, data):
    recs, _ = model.recommend(np.arange(N_USERS), k=5)
    seen = data[0].seen.toarray().astype(bool)
    assert not seen[np.arange(N_USERS)[:, None], recs].any()


def test_early_stopping_learns_and_reports(data):
    train, valid = data
    users, items = side_tables()
    calls = []
    ctx = FitContext(valid=valid, users=users, items=items, on_epoch_end=lambda e, m: calls.append(e))
    m = DSSMRecommender(**{**FAST, "epochs": 25, "lr": 0.03, "patience": 3}).fit(train, ctx)
    rmses = [h["valid_rmse"] for h in m.history_]
    assert calls == [h["epoch"] for h in m.history_]
    assert m.best_epoch_ == int(np.argmin(rmses)) + 1
    assert evaluate_ratings(m, valid)["rmse"] == pytest.approx(min(rmses))
    # it beats predicting the train mean
    baseline = float(np.sqrt(np.mean((valid.ratings - train.ratings.mean()) ** 2)))
    assert min(rmses) < baseline


def test_without_side_tables_and_determinism(data):
    a = DSSMRecommender(**FAST).fit(data[0])
    b = DSSMRecommender(**FAST).fit(data[0], FitContext())
    assert a.user_categories_ == [] and a.genres_ == []
    np.testing.assert_array_equal(a.user_embeddings(), b.user_embeddings())
    np.testing.assert_array_equal(a.item_embeddings(), b.item_embeddings())


def test_save_load_round_trip(model, data, tmp_path):
    model.save(tmp_path / "m")
    loaded = DSSMRecommender.load(tmp_path / "m")
    valid = data[1]
    np.testing.assert_array_equal(model.predict(valid.user_idx, valid.item_idx), loaded.predict(valid.user_idx, valid.item_idx))
    a, _ = model.recommend(np.arange(N_USERS), k=5)
    b, _ = loaded.recommend(np.arange(N_USERS), k=5)
    np.testing.assert_array_equal(a, b)
    assert loaded.user_categories_ == model.user_categories_ and loaded.genres_ == model.genres_
    out = np.asarray(loaded.keras_model([valid.user_idx, valid.item_idx], training=False)).ravel()
    lo, hi = loaded.rating_min_, loaded.rating_max_
    np.testing.assert_allclose(lo + (hi - lo) * out, model.predict(valid.user_idx, valid.item_idx), atol=1e-4)
