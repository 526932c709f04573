"""UserCFRecommender (mean-centred user-kNN over SVD vectors in HNSW) on tiny hand-checkable data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recflow.models import load_model
from recflow.models.base import NotFittedError
from recflow.models.user_cf import INDEX_FILE, UserCFRecommender
from recflow.prep.interactions import Interactions


def interactions(users, items, ratings, n_users, n_items) -> Interactions:
    return Interactions(
        np.asarray(users, np.int32), np.asarray(items, np.int32), np.asarray(ratings, np.float32),
        np.zeros(len(users), np.int64), np.arange(n_users), np.arange(n_items),
    )  # fmt: skip


def from_rows(rows: dict[int, dict[int, float]], n_users: int, n_items: int) -> Interactions:
    pairs = [(u, i, r) for u, row in rows.items() for i, r in row.items()]
    u, i, r = zip(*pairs)
    return interactions(u, i, r, n_users, n_items)


# user -> {item: rating}. Item 4 is rated by user 3 alone, item 5 by nobody. User 4 rates
# everything 3: a centred row of zeros, so a zero vector and similarity 0 to everyone.
ROWS = {
    0: {0: 5, 1: 3, 2: 4},
    1: {0: 4, 1: 2, 3: 5},
    2: {1: 5, 2: 1, 3: 3},
    3: {0: 2, 2: 5, 3: 4, 4: 3},
    4: {0: 3, 1: 3},
}
N_USERS, N_ITEMS = 5, 6
TRAIN = from_rows(ROWS, N_USERS, N_ITEMS)
MEANS = np.array([np.mean(list(ROWS[u].values())) for u in range(N_USERS)])  # [4, 11/3, 3, 3.5, 3]
# every other user is a neighbour; n_components is capped at min(5, 6) - 1 = 4, which spans
# the centred matrix (rank 4) exactly
ALL = dict(n_neighbors=10, n_components=8, shrinkage=2.0, damping=0.0, clip=False, seed=0)


def rated(u: int, i: int) -> bool:
    return i in ROWS[u]


def random_train(seed: int = 0, n_users: int = 40, n_items: int = 25, n: int = 300) -> Interactions:
    rng = np.random.default_rng(seed)
    pairs = rng.choice(n_users * n_items, size=n, replace=False)
    return interactions(pairs // n_items, pairs % n_items, rng.integers(1, 6, n), n_users, n_items)


@pytest.fixture(scope="module")
def model() -> UserCFRecommender:
    return UserCFRecommender(**ALL).fit(TRAIN)


def test_every_other_user_is_a_neighbour(model):
    nbrs, w = model.neighbors(np.arange(N_USERS))
    assert nbrs.shape == (N_USERS, N_USERS - 1) and w.shape == (N_USERS, N_USERS - 1)
    for u in range(N_USERS):
        assert sorted(nbrs[u].tolist()) == [v for v in range(N_USERS) if v != u]


def test_weights_are_centred_cosine_times_significance(model):
    # with every SVD component kept, the user vectors' cosine is the cosine of the centred rows
    R = TRAIN.matrix.toarray().astype(np.float64)
    rated_mask = R > 0
    rc = np.where(rated_mask, R - MEANS[:, None], 0.0)
    norm = np.linalg.norm(rc, axis=1)
    norm[norm == 0] = 1.0  # user 4's zero row: cosine 0 with everyone
    cos = rc @ rc.T / np.outer(norm, norm)
    common = rated_mask.astype(int) @ rated_mask.astype(int).T
    nbrs, w = model.neighbors(np.arange(N_USERS))
    for u in range(N_USERS):
        c = common[u, nbrs[u]]
        np.testing.assert_allclose(w[u], cos[u, nbrs[u]] * c / (c + 2.0), atol=1e-5)
    # e.g. users 0 and 1: cos = 0.6547, 2 common items, shrinkage 2 -> w = 0.6547 * 2 / 4
    assert w[0][nbrs[0] == 1][0] == pytest.approx(np.sqrt(3 / 7) / 2, abs=1e-5)
    assert np.all(w[4] == 0)  # the zero-vector user has similarity 0 to everyone


def test_prediction_is_mean_plus_weighted_centred_neighbour_ratings(model):
    nbrs, w = model.neighbors(np.arange(N_USERS))
    users, items, expected = [], [], []
    for u in range(N_USERS):
        for i in range(N_ITEMS):
            num = den = 0.0
            for v, wv in zip(nbrs[u].tolist(), w[u].tolist()):
                if rated(v, i):
                    num += wv * (ROWS[v][i] - MEANS[v])
                    den += abs(wv)
            users.append(u)
            items.append(i)
            expected.append(MEANS[u] + (num / den if den > 0 else 0.0))
    np.testing.assert_allclose(model.predict(users, items), expected, atol=1e-5)
    # one worked value: user 0, item 4 -- only user 3 (rating 3, mean 3.5) rated it
    w03 = w[0][nbrs[0] == 3][0]
    assert model.predict([0], [4])[0] == pytest.approx(4.0 + np.sign(w03) * (3 - 3.5), abs=1e-6)


def test_damping_pulls_a_thinly_supported_deviation_towards_the_users_mean(model):
    # user 0, item 4: only user 3 (rating 3, mean 3.5) rated it, with weight w03:
    # r_hat = 4 + w03 * (3 - 3.5) / (damping + |w03|)
    damped = UserCFRecommender(**{**ALL, "damping": 1.0}).fit(TRAIN)
    nbrs, w = model.neighbors([0])
    w03 = float(w[0][nbrs[0] == 3][0])
    assert damped.predict([0], [4])[0] == pytest.approx(4.0 + w03 * -0.5 / (1.0 + abs(w03)), abs=1e-6)


def test_no_neighbour_rated_the_item_gives_the_users_own_mean(model):
    # item 4: only user 3 rated it (not their own neighbour); item 5: nobody did
    np.testing.assert_array_equal(model.predict([3, 0, 1, 2, 3], [4, 5, 5, 5, 5]), MEANS[[3, 0, 1, 2, 3]])
    # user 4's neighbours all have weight 0: every prediction is their mean, never an average with zeros
    np.testing.assert_array_equal(model.predict([4] * N_ITEMS, np.arange(N_ITEMS)), np.full(N_ITEMS, 3.0))


def test_unknown_user_gets_the_global_mean_and_unknown_item_the_users_mean(model):
    global_mean = np.mean([r for row in ROWS.values() for r in row.values()])
    pred = model.predict([-1, -1, 1, -1], [0, 5, -1, -1])
    np.testing.assert_allclose(pred, [global_mean, global_mean, MEANS[1], global_mean], rtol=1e-12)
    with pytest.raises(IndexError):
        model.predict([N_USERS], [0])
    with pytest.raises(IndexError):
        model.predict([0], [-2])
    with pytest.raises(ValueError):
        model.predict([0, 1], [0])


def test_prediction_does_not_depend_on_pair_order_or_item_blocks(model):
    rng = np.random.default_rng(0)
    users = rng.integers(-1, N_USERS, 60)
    items = rng.integers(-1, N_ITEMS, 60)
    np.testing.assert_array_equal(model.predict(users, items, block_bytes=1), model.predict(users, items))
    order = rng.permutation(60)
    np.testing.assert_array_equal(model.predict(users[order], items[order]), model.predict(users, items)[order])


def test_predictions_are_clipped_to_the_training_rating_range():
    # user 0 (mean 14/3) and user 1 are alike; user 1 rated item 3 one above their mean of 4,
    # so the unclipped prediction for (0, 3) is 14/3 + 1 = 5.67, above the top rating 5
    train = interactions([0, 0, 0, 1, 1, 1, 1, 2, 2, 2], [0, 1, 2, 0, 1, 2, 3, 0, 1, 2], [5, 5, 4, 5, 5, 1, 5, 1, 2, 5], 3, 4)
    raw = UserCFRecommender(**{**ALL, "clip": False}).fit(train)
    clipped = UserCFRecommender(**{**ALL, "clip": True}).fit(train)
    assert raw.predict([0], [3])[0] == pytest.approx(14 / 3 + 1, abs=1e-6)
    assert clipped.predict([0], [3])[0] == 5.0
    u, i = np.divmod(np.arange(12), 4)
    np.testing.assert_array_equal(clipped.predict(u, i), np.clip(raw.predict(u, i), 1.0, 5.0))


def test_rating_ranking_is_rating_adjusted_neighbour_support_plus_popularity():
    model = UserCFRecommender(**ALL, ranking="rating", rating_weight=0.5).fit(TRAIN)
    nbrs, w = model.neighbors(np.arange(N_USERS))
    counts = np.array([sum(rated(v, i) for v in ROWS) for i in range(N_ITEMS)])
    prior = 1e-3 * np.log1p(counts) / np.log1p(counts.max())
    expected = np.tile(prior, (N_USERS, 1))
    for u in range(N_USERS):
        for v, wv in zip(nbrs[u].tolist(), w[u].tolist()):
            for i, r in ROWS[v].items():
                expected[u, i] += wv * (1 + 0.5 * (r - MEANS[v]))
    s = model.score(np.arange(N_USERS))
    assert s.shape == (N_USERS, N_ITEMS) and s.dtype == np.float32
    np.testing.assert_allclose(s, expected, atol=1e-5)


ITEMS = {u: set(row) for u, row in ROWS.items()}
BINARY = dict(n_neighbors=10, n_components=8, rank_neighbors=10, rating_weight=0.0, seed=0)


def binary_cosine(u: int, v: int, shrink: float = 0.0) -> float:
    return len(ITEMS[u] & ITEMS[v]) / (np.sqrt(len(ITEMS[u]) * len(ITEMS[v])) + shrink)


def test_binary_ranking_sums_the_cosines_of_the_neighbours_who_have_the_item():
    # user 0 has {0, 1, 2}; item 3 is had by users 1 {0, 1, 3}, 2 {1, 2, 3}, 3 {0, 2, 3, 4}:
    # 2/sqrt(3*3) + 2/sqrt(3*3) + 2/sqrt(3*4); item 4 by user 3 alone; item 5 by nobody
    s = UserCFRecommender(**BINARY, rank_alpha=1.0).fit(TRAIN).score(np.array([0]))[0]
    assert s[3] == pytest.approx(2 / 3 + 2 / 3 + 2 / np.sqrt(12), abs=2e-3)  # + the popularity prior (<= 1e-3)
    assert s[4] == pytest.approx(2 / np.sqrt(12), abs=2e-3)
    assert s[5] == 0.0


def test_binary_ranking_raises_shrunk_cosines_to_rank_alpha():
    model = UserCFRecommender(**BINARY, rank_alpha=2.0, rank_shrink=1.0).fit(TRAIN)
    counts = np.array([sum(i in ITEMS[v] for v in ROWS) for i in range(N_ITEMS)])
    expected = np.tile(1e-3 * np.log1p(counts) / np.log1p(counts.max()), (N_USERS, 1))
    for u in ROWS:
        for v in set(ROWS) - {u}:
            for i in ITEMS[v]:
                expected[u, i] += binary_cosine(u, v, shrink=1.0) ** 2
    np.testing.assert_allclose(model.score(np.arange(N_USERS)), expected, atol=1e-5)


def test_binary_ranking_keeps_the_rank_neighbors_most_similar_users():
    # users 0 and 1 each share 2 of their 3 items with user 4 {0, 1}: cosine 2/sqrt(6), above
    # every other user's 2/3 or less, so with one neighbour only user 4's items score
    s = UserCFRecommender(**{**BINARY, "rank_neighbors": 1}, rank_alpha=1.0).fit(TRAIN).score(np.array([0, 1]))
    np.testing.assert_allclose(s[:, [0, 1]], 2 / np.sqrt(6), atol=1e-3)
    assert (s[:, 2:] <= 1e-3).all()


def test_popularity_penalty_divides_the_neighbour_support_by_the_items_count():
    # user 0's items 3 and 4 as in the test above; item 3 is had by 3 users, item 4 by 1
    plain = UserCFRecommender(**BINARY, rank_alpha=1.0).fit(TRAIN).score(np.array([0]))[0]
    s = UserCFRecommender(**BINARY, rank_alpha=1.0, popularity_penalty=0.5).fit(TRAIN).score(np.array([0]))[0]
    assert s[3] == pytest.approx((2 / 3 + 2 / 3 + 2 / np.sqrt(12)) / np.sqrt(1 + 3), abs=2e-3)
    assert s[4] == pytest.approx(2 / np.sqrt(12) / np.sqrt(1 + 1), abs=2e-3)
    assert plain[3] > plain[4] and s[3] > s[4]


def test_the_ranking_mode_leaves_rating_predictions_unchanged():
    users, items = np.repeat(np.arange(N_USERS), N_ITEMS), np.tile(np.arange(N_ITEMS), N_USERS)
    binary = UserCFRecommender(**ALL, ranking="binary").fit(TRAIN)
    rating = UserCFRecommender(**ALL, ranking="rating").fit(TRAIN)
    np.testing.assert_array_equal(binary.predict(users, items), rating.predict(users, items))


def test_recommend_shapes_and_excludes_seen_items():
    train = random_train()
    m = UserCFRecommender(n_components=8, n_neighbors=10).fit(train)
    items, scores = m.recommend(np.arange(40), k=25)
    assert items.shape == (40, 25) and scores.shape == (40, 25)
    seen = train.seen.toarray().astype(bool)
    for u in range(40):
        rec = items[u][items[u] >= 0]
        assert not seen[u, rec].any()
        assert len(rec) == (~seen[u]).sum()
    assert UserCFRecommender.predicts_ratings is True


def test_user_embeddings_are_unit_norm_or_zero():
    # users 0 and 1 rate everything alike (centred row 0), user 2 has no ratings at all
    base = random_train(seed=1)
    keep = base.user_idx >= 3
    u = np.concatenate([[0, 0, 0, 1, 1], base.user_idx[keep]])
    i = np.concatenate([[0, 1, 2, 3, 4], base.item_idx[keep]])
    r = np.concatenate([[4, 4, 4, 2, 2], base.ratings[keep]])
    m = UserCFRecommender(n_components=8, n_neighbors=5).fit(interactions(u, i, r, 40, 25))
    emb = m.user_embeddings()
    assert emb.shape == (40, 8) and emb.dtype == np.float32
    norms = np.linalg.norm(emb, axis=1)
    assert np.all(emb[:3] == 0)
    np.testing.assert_allclose(norms[3:], 1.0, atol=1e-5)


def test_two_fits_with_a_seed_are_identical():
    train = random_train(seed=2)
    a = UserCFRecommender(n_components=8, n_neighbors=6).fit(train)
    b = UserCFRecommender(n_components=8, n_neighbors=6).fit(train)
    np.testing.assert_array_equal(a.user_embeddings(), b.user_embeddings())
    for x, y in zip(a.neighbors(np.arange(40)), b.neighbors(np.arange(40))):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(a.recommend(np.arange(40), k=5), b.recommend(np.arange(40), k=5)):
        np.testing.assert_array_equal(x, y)


def test_a_refit_predicts_from_the_new_ratings_only():
    users, items = np.repeat(np.arange(40), 25), np.tile(np.arange(25), 40)
    refit = UserCFRecommender(seed=0).fit(random_train(seed=1))
    refit.predict(users, items)
    refit.fit(random_train(seed=2))
    fresh = UserCFRecommender(seed=0).fit(random_train(seed=2))
    np.testing.assert_array_equal(refit.predict(users, items), fresh.predict(users, items))


def test_save_load_round_trip_keeps_the_hnsw_index(tmp_path):
    train = random_train(seed=3)
    m = UserCFRecommender(n_components=8, n_neighbors=6, shrinkage=5.0, rating_weight=0.3).fit(train)
    m.save(tmp_path / "ucf")
    assert (tmp_path / "ucf" / INDEX_FILE).is_file()
    users = np.array([0, 5, -1, 39, 12, 12])
    items = np.array([3, -1, 7, 24, 0, 1])
    for loaded in (UserCFRecommender.load(tmp_path / "ucf"), load_model(tmp_path / "ucf")):
        assert type(loaded) is UserCFRecommender and loaded.get_params() == m.get_params()
        for x, y in zip(m.neighbors(np.arange(40)), loaded.neighbors(np.arange(40))):
            np.testing.assert_array_equal(x, y)
        # the loaded index answers queries exactly as the fitted one
        for x, y in zip(m.similar_users(m.user_embeddings(), k=7), loaded.similar_users(loaded.user_embeddings(), k=7)):
            np.testing.assert_array_equal(x, y)
        assert loaded.index_.get_current_count() == 40
        np.testing.assert_array_equal(loaded.predict(users, items), m.predict(users, items))
        for x, y in zip(m.recommend(np.arange(40), k=5), loaded.recommend(np.arange(40), k=5)):
            np.testing.assert_array_equal(x, y)


def test_unfitted_model_raises():
    m = UserCFRecommender()
    for call in (lambda: m.predict([0], [0]), lambda: m.score([0]), lambda: m.recommend([0]), lambda: m.neighbors([0])):
        with pytest.raises(NotFittedError):
            call()


@pytest.mark.parametrize(
    "params", [{"n_neighbors": 0}, {"n_components": 0}, {"shrinkage": -1.0}, {"rank_shrink": -1.0}, {"rank_neighbors": 0}, {"ranking": "both"}], ids=str
)
def test_invalid_hyperparameters_are_refused(params):
    with pytest.raises(ValueError):
        UserCFRecommender(**params).fit(TRAIN)


def test_fewer_than_two_users_is_refused():
    with pytest.raises(ValueError, match="at least 2 users"):
        UserCFRecommender().fit(interactions([0, 0], [0, 1], [4, 5], 1, 2))


@pytest.mark.parametrize("budget", [1, 7, 50, 1 << 22])
def test_common_counts_are_the_sizes_of_the_item_intersections_whatever_the_block_size(budget):
    from recflow.models.user_cf import _common_counts

    rng = np.random.default_rng(3)
    ind = sp.csr_matrix((rng.random((30, 12)) < rng.random((30, 1))).astype(np.float32))  # rows of very different lengths
    nbrs = rng.integers(0, 30, (30, 5))
    dense = ind.toarray().astype(bool)
    expected = np.array([[(dense[u] & dense[v]).sum() for v in row] for u, row in enumerate(nbrs)])
    np.testing.assert_array_equal(_common_counts(ind, nbrs, budget=budget), expected)
