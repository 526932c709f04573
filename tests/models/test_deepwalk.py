"""DeepWalkRecommender on a tiny two-cluster data set (the shared scoring is tested in test_item2vec)."""

from __future__ import annotations

import numpy as np
import pytest

from recflow.models.context import FitContext
from recflow.models.deepwalk import DeepWalkRecommender
from recflow.models.embeddings import ItemVectorRecommender
from recflow.prep import sample_files as F
from recflow.prep import sampling as S
from recflow.prep.interactions import Interactions

N_ITEMS = 22  # cluster A: 0-9, cluster B: 10-19, 20: never liked, 21: liked alone (isolated node)


def two_clusters(seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    u, i, r = [], [], []
    for user in range(60):
        own, other = (0, 10) if user < 30 else (10, 0)
        liked = own + rng.choice(10, 6, replace=False)
        disliked = other + rng.choice(10, 2, replace=False)
        u += [user] * 8
        i += liked.tolist() + disliked.tolist()
        r += [5] * 6 + [2] * 2
    u += [60, 61, 61] + list(range(0, 60, 6))
    i += [21, 0, 1] + [20] * 10
    r += [5, 2, 2] + [1] * 10
    n = len(u)
    return Interactions(
        np.array(u, np.int32),
        np.array(i, np.int32),
        np.array(r, np.float32),
        rng.integers(0, 1000, n).astype(np.int64),
        np.arange(62),
        np.arange(N_ITEMS),
    )


PARAMS = dict(dim=8, walks_per_item=10, walk_length=10, window=3, epochs=5, negative=3, sample=0.0, seed=0)


@pytest.fixture(scope="module")
def train() -> Interactions:
    return two_clusters()


@pytest.fixture(scope="module", params=["in_out", "cosine"])
def model(train, request) -> DeepWalkRecommender:
    return DeepWalkRecommender(**PARAMS, scoring=request.param).fit(train)


def cluster(item: np.ndarray) -> np.ndarray:
    return np.where(item < 10, 0, np.where(item < 20, 1, -1))


def test_shares_the_item_vector_base(model):
    assert isinstance(model, ItemVectorRecommender)
    assert DeepWalkRecommender.score is ItemVectorRecommender.score
    assert DeepWalkRecommender.similar_items is ItemVectorRecommender.similar_items


def test_shapes_and_isolated_items(model):
    emb = model.item_embeddings()
    assert emb.shape == (N_ITEMS, 8) and emb.dtype == np.float32
    # 20 is never liked (no walk), 21 has no neighbour (its walks are the item alone: no context)
    assert model.has_vector_.tolist() == [True] * 20 + [False, False]
    assert np.all(emb[20:] == 0)
    scores = model.score(np.arange(62))
    assert scores.shape == (62, N_ITEMS) and np.all(np.isneginf(scores[:, 20:]))


def test_recommend_excludes_seen_and_follows_clusters(model, train):
    users = np.arange(60)
    rec, _ = model.recommend(users, k=N_ITEMS)
    seen = train.seen.toarray().astype(bool)
    for row, u in zip(rec, users):
        got = row[row >= 0]
        assert not seen[u, got].any() and not np.isin(got, [20, 21]).any()
    same = cluster(rec[:, :2]) == np.where(users < 30, 0, 1)[:, None]
    assert same.mean() > 0.9
    items, _ = model.similar_items(12, k=4)
    assert 12 not in items and np.all(cluster(items) == 1)


def test_seeded_fit_is_deterministic(train, model):
    again = DeepWalkRecommender(**model.get_params()).fit(train)
    np.testing.assert_array_equal(again.item_embeddings(), model.item_embeddings())
    other = DeepWalkRecommender(**{**PARAMS, "seed": 3}).fit(train)
    assert not np.array_equal(other.item_embeddings(), model.item_embeddings())


def test_save_load_round_trip(model, tmp_path):
    model.save(tmp_path / "m")
    back = DeepWalkRecommender.load(tmp_path / "m")
    assert back.get_params() == model.get_params()
    np.testing.assert_array_equal(back.item_embeddings(), model.item_embeddings())
    users = np.arange(62)
    for a, b in zip(back.recommend(users, k=6), model.recommend(users, k=6)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(back.similar_items(np.arange(N_ITEMS), k=6), model.similar_items(np.arange(N_ITEMS), k=6)):
        np.testing.assert_array_equal(a, b)


def test_uses_precomputed_walks_when_they_match(train, tmp_path):
    params = DeepWalkRecommender(**PARAMS)._walk_params()
    assert params == {"min_rating": 4.0, "walks_per_item": 10, "walk_length": 10, "window_cooccurrence": 5, "max_neighbors": None}
    walks = S.random_walks(train, seed=0, **params)
    only_b = walks[(walks[:, 0] >= 10) & (walks[:, 0] < 20)]  # a deliberately different corpus
    F.write_samples(tmp_path, train=train, walks=only_b, params={"walks": params})
    m = DeepWalkRecommender(**PARAMS).fit(train, FitContext(samples=tmp_path))
    assert m.has_vector_.tolist() == [False] * 10 + [True] * 10 + [False] * 2
    with pytest.warns(UserWarning, match="other settings"):
        m = DeepWalkRecommender(**{**PARAMS, "walk_length": 8}).fit(train, FitContext(samples=tmp_path))
    assert m.has_vector_[:20].all()
    with pytest.warns(UserWarning, match="other train data"):
        other = two_clusters(seed=1)
        m = DeepWalkRecommender(**PARAMS).fit(other, FitContext(samples=tmp_path))


def test_graph_options_are_used(train):
    m = DeepWalkRecommender(**{**PARAMS, "window_cooccurrence": 1, "max_neighbors": 2}).fit(train)
    assert m.has_vector_[:20].all()
    m = DeepWalkRecommender(**{**PARAMS, "window_cooccurrence": None}).fit(train)  # all co-liked pairs
    assert m.has_vector_.tolist() == [True] * 20 + [False, False]
    walks = S.random_walks(train, walks_per_item=2, walk_length=10, min_rating=4.0, seed=0, window_cooccurrence=1, max_neighbors=2)
    g = S.cooccurrence_graph(train, min_rating=4.0, window=1, max_neighbors=2).toarray()
    for w in walks:
        s = w[w >= 0]
        assert all(g[a, b] > 0 for a, b in zip(s[:-1], s[1:]))
