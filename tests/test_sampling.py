"""recflow.prep.sampling on tiny hand-made Interactions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recflow.prep import sample_files as F
from recflow.prep import sampling as S
from recflow.prep.interactions import Interactions


def make(users, items, ratings, timestamps=None, n_users=None, n_items=None) -> Interactions:
    users = np.asarray(users, dtype=np.int32)
    items = np.asarray(items, dtype=np.int32)
    ratings = np.asarray(ratings, dtype=np.float32)
    ts = np.arange(len(users), dtype=np.int64) if timestamps is None else np.asarray(timestamps, dtype=np.int64)
    n_users = int(users.max()) + 1 if n_users is None else n_users
    n_items = int(items.max()) + 1 if n_items is None else n_items
    return Interactions(users, items, ratings, ts, np.arange(n_users) + 100, np.arange(n_items) + 1000)


def random_train(seed=0, n_users=60, n_items=40, density=0.3) -> Interactions:
    rng = np.random.default_rng(seed)
    m = rng.random((n_users, n_items)) < density
    m[np.arange(n_users), rng.integers(0, n_items, n_users)] = True  # every user has a row
    m[5] = True  # one user saw everything
    m[6, :] = False
    m[6, :3] = True  # one user saw almost nothing
    u, i = np.nonzero(m)
    r = rng.integers(1, 6, len(u)).astype(np.float32)
    return make(u, i, r, rng.integers(0, 50, len(u)), n_users=n_users + 1, n_items=n_items)  # last user: no rows


def seen_sets(train):
    s = [set() for _ in range(train.n_users)]
    for u, i in zip(train.user_idx, train.item_idx):
        s[u].add(int(i))
    return s


def item_means(train):
    sums = np.bincount(train.item_idx, weights=train.ratings, minlength=train.n_items)
    cnt = np.bincount(train.item_idx, minlength=train.n_items)
    return sums / np.maximum(cnt, 1), cnt


# ----------------------------------------------------------------------------- negatives


def test_negatives_kinds_and_exact_counts():
    train = random_train()
    neg = S.sample_negatives(train, n_random=4, n_popular=3, n_disliked=2, popular_pool=10, seed=1)
    assert list(neg.columns) == ["user_idx", "item_idx", "kind"]
    assert neg["user_idx"].dtype == np.int32 and neg["item_idx"].dtype == np.int32
    assert list(neg["kind"].cat.categories) == ["random", "popular", "disliked"]
    seen = seen_sets(train)
    means, _ = item_means(train)
    pool = set(S.popular_high_rated(train, popular_pool=10).tolist())
    rating = {(int(u), int(i)): float(r) for u, i, r in zip(train.user_idx, train.item_idx, train.ratings)}
    for u in range(train.n_users):
        rows = neg[neg["user_idx"] == u]
        by = {k: rows.loc[rows["kind"] == k, "item_idx"].tolist() for k in S.NEGATIVE_KINDS}
        for k, items in by.items():
            assert len(items) == len(set(items)), (u, k)
        unseen = train.n_items - len(seen[u])
        disliked = [i for i in seen[u] if rating[(u, i)] < means[i]]
        if not seen[u]:  # no train rows: no negatives at all
            assert rows.empty
            continue
        assert len(by["random"]) == min(4, unseen)
        assert len(by["popular"]) == min(3, len(pool - seen[u]))
        assert len(by["disliked"]) == min(2, len(disliked))
        assert not set(by["random"]) & seen[u]
        assert not set(by["popular"]) & seen[u]
        assert set(by["popular"]) <= pool
        assert set(by["disliked"]) <= set(disliked)
    # the user who saw everything has no random/popular negatives; the near-empty user has plenty
    assert not ((neg["user_idx"] == 5) & (neg["kind"] != "disliked")).any()
    assert ((neg["user_idx"] == 6) & (neg["kind"] == "random")).sum() == 4


def test_negatives_seeded_deterministic_and_row_order_free():
    train = random_train()
    kw = dict(n_random=3, n_popular=2, n_disliked=2, popular_pool=8)
    a = S.sample_negatives(train, seed=7, **kw)
    b = S.sample_negatives(train, seed=7, **kw)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(S.sample_negatives(train, seed=8, **kw))
    perm = np.random.default_rng(0).permutation(len(train))
    shuffled = Interactions(train.user_idx[perm], train.item_idx[perm], train.ratings[perm], train.timestamps[perm], train.user_ids, train.item_ids)
    pd.testing.assert_frame_equal(a, S.sample_negatives(shuffled, seed=7, **kw))


def test_random_negatives_are_uniform_over_unseen_items():
    n = 4000  # identical users who saw items 1 and 3 of 6: each unseen item has chance 2/4
    users = np.repeat(np.arange(n), 2)
    items = np.tile([1, 3], n)
    train = make(users, items, np.full(2 * n, 4.0), n_items=6)
    neg = S.sample_negatives(train, n_random=2, n_popular=0, n_disliked=0, seed=0)
    counts = np.bincount(neg["item_idx"], minlength=6)
    assert counts[1] == counts[3] == 0
    assert np.all(np.abs(counts[[0, 2, 4, 5]] - n / 2) < 0.06 * n)
    assert (neg.groupby("user_idx")["item_idx"].nunique() == 2).all()


def test_popular_pool_rule():
    # item counts: 0:4, 1:3, 2:2, 3:1; means: 0:2.0, 1:5.0, 2:4.0, 3:5.0; global mean 3.5
    users = [0, 1, 2, 3, 0, 1, 2, 0, 1, 0]
    items = [0, 0, 0, 0, 1, 1, 1, 2, 2, 3]
    ratings = [2, 2, 2, 2, 5, 5, 5, 4, 4, 5]
    train = make(users, items, ratings, n_users=5)
    np.testing.assert_array_equal(S.popular_high_rated(train, popular_pool=10), [1, 2, 3])
    np.testing.assert_array_equal(S.popular_high_rated(train, popular_pool=2), [1, 2])
    np.testing.assert_array_equal(S.popular_high_rated(train, popular_pool=10, min_item_mean=4.5), [1, 3])
    neg = S.sample_negatives(train, n_random=0, n_popular=5, n_disliked=0, popular_pool=10, seed=0)
    got = neg.groupby("user_idx")["item_idx"].apply(sorted).to_dict()
    assert got == {1: [3], 2: [2, 3], 3: [1, 2, 3]}  # user 0 saw the whole pool, user 4 has no rows


def test_disliked_are_seen_and_below_item_mean():
    train = make([0, 1, 0, 1, 0, 1], [0, 0, 1, 1, 2, 2], [1, 5, 4, 4, 2, 3])
    neg = S.sample_negatives(train, n_random=0, n_popular=0, n_disliked=5, seed=0)
    # item means 3, 4, 2.5: user 0 is below on items 0 and 2, user 1 on nothing (ties are not below)
    assert neg["kind"].eq("disliked").all()
    assert neg[["user_idx", "item_idx"]].values.tolist() == [[0, 0], [0, 2]]


def test_negative_counts_must_be_non_negative():
    with pytest.raises(ValueError):
        S.sample_negatives(random_train(), n_random=-1, n_popular=0, n_disliked=0, seed=0)


# ----------------------------------------------------------------------------- triplets


def test_bpr_triplets_rule_and_counts():
    train = random_train(seed=3)
    neg = S.sample_negatives(train, n_random=2, n_popular=2, n_disliked=2, popular_pool=10, seed=0)
    trip = S.bpr_triplets(train, neg, negatives_per_positive=3, seed=0)
    assert list(trip.columns) == ["user_idx", "pos_idx", "neg_idx"]
    assert all(trip[c].dtype == np.int32 for c in trip.columns)
    rating = {(int(u), int(i)): float(r) for u, i, r in zip(train.user_idx, train.item_idx, train.ratings)}
    user_mean = pd.Series(train.ratings).groupby(train.user_idx).mean().to_dict()
    negs = neg.groupby("user_idx")["item_idx"].apply(set).to_dict()
    expected_pos = {(u, i) for (u, i), r in rating.items() if r > user_mean[u] and u in negs}
    got = trip.groupby(["user_idx", "pos_idx"])["neg_idx"].apply(list).to_dict()
    assert set(got) <= expected_pos
    for (u, p), ns in got.items():
        assert len(ns) == len(set(ns))  # distinct negatives per positive
        assert set(ns) <= negs[u]
        assert p not in ns
        assert len(ns) in (min(3, len(negs[u])), min(3, len(negs[u])) - 1)  # -1: the positive itself was drawn
    for u, p in expected_pos - set(got):  # only dropped when its one negative was itself
        assert negs[u] == {p}
    # sorted by (user, positive)
    key = trip["user_idx"].to_numpy(np.int64) * train.n_items + trip["pos_idx"].to_numpy()
    assert np.all(np.diff(key) >= 0)


def test_bpr_triplets_float_threshold_and_determinism():
    train = make([0, 0, 0, 1, 1], [0, 1, 2, 0, 3], [5, 4, 3, 4, 5], n_items=6)
    neg = pd.DataFrame({"user_idx": [0, 0, 1], "item_idx": [4, 5, 4]})
    trip = S.bpr_triplets(train, neg, positive_threshold=4.0, negatives_per_positive=5, seed=0)
    got = sorted(map(tuple, trip.values.tolist()))
    assert got == [(0, 0, 4), (0, 0, 5), (0, 1, 4), (0, 1, 5), (1, 0, 4), (1, 3, 4)]
    # user mean rule: user 0 mean 4 -> only item 0; user 1 mean 4.5 -> only item 3
    trip = S.bpr_triplets(train, neg, negatives_per_positive=1, seed=0)
    assert sorted(map(tuple, trip[["user_idx", "pos_idx"]].values.tolist())) == [(0, 0), (1, 3)]
    big = random_train(seed=5)
    neg = S.sample_negatives(big, n_random=3, n_popular=3, n_disliked=3, popular_pool=10, seed=0)
    a = S.bpr_triplets(big, neg, negatives_per_positive=2, seed=4)
    pd.testing.assert_frame_equal(a, S.bpr_triplets(big, neg, negatives_per_positive=2, seed=4))
    assert not a.equals(S.bpr_triplets(big, neg, negatives_per_positive=2, seed=5))
    with pytest.raises(ValueError):
        S.bpr_triplets(big, neg, positive_threshold="median", negatives_per_positive=2, seed=0)


def test_bpr_triplets_drop_self_pairs():
    # item 0 is above user 0's mean (4 > 3) and below its own mean (4 < 4.5): a positive and a disliked negative
    train = make([0, 0, 1], [0, 1, 0], [4, 2, 5])
    neg = pd.DataFrame({"user_idx": [0], "item_idx": [0]})
    assert S.bpr_triplets(train, neg, negatives_per_positive=1, seed=0).empty


# ----------------------------------------------------------------------------- sequences


def test_liked_sequences_time_order_ties_by_item():
    train = make(
        [0, 0, 0, 0, 0, 1, 1, 2],
        [5, 3, 4, 1, 2, 0, 1, 2],
        [5, 4, 3, 4, 5, 2, 4, 1],
        [30, 10, 5, 20, 10, 1, 2, 3],
        n_users=4,
        n_items=6,
    )
    seqs = S.liked_sequences(train, min_rating=4.0)
    assert len(seqs) == 4
    assert [s.tolist() for s in seqs] == [[2, 3, 1, 5], [1], [], []]
    assert all(s.dtype == np.int32 for s in seqs)


# ----------------------------------------------------------------------------- graph and walks


def liked_train():
    # liked (>= 4): u0 {0,1,2}, u1 {1,2}, u2 {3,4}, u3 {5} (only it); item 6 only disliked
    return make(
        [0, 0, 0, 1, 1, 1, 2, 2, 3, 3],
        [0, 1, 2, 1, 2, 6, 3, 4, 5, 6],
        [5, 4, 4, 5, 4, 2, 4, 5, 5, 1],
        [1, 2, 3, 1, 2, 3, 1, 2, 1, 2],
        n_items=7,
    )


def test_cooccurrence_graph_is_xtx_without_diagonal():
    train = liked_train()
    g = S.cooccurrence_graph(train, min_rating=4.0)
    x = np.zeros((train.n_users, train.n_items))
    liked = train.ratings >= 4
    x[train.user_idx[liked], train.item_idx[liked]] = 1
    expected = x.T @ x
    np.fill_diagonal(expected, 0)
    np.testing.assert_array_equal(g.toarray(), expected)
    assert g.dtype == np.float32
    # in blocks of one row the result is the same
    np.testing.assert_array_equal(S.cooccurrence_graph(train, min_rating=4.0, block_entries=1).toarray(), expected)


def test_cooccurrence_graph_window_and_cap():
    # one user's liked sequence in time order: 0 1 2 3
    train = make([0, 0, 0, 0, 1, 1], [3, 1, 0, 2, 0, 3], [5, 5, 5, 5, 5, 5], [4, 2, 1, 3, 1, 2])
    g = S.cooccurrence_graph(train, min_rating=4.0, window=1).toarray()
    expected = np.zeros((4, 4))
    for a, b, w in ((0, 1, 1), (1, 2, 1), (2, 3, 1), (0, 3, 1)):  # user 1 contributes 0-3
        expected[a, b] = expected[b, a] = w
    np.testing.assert_array_equal(g, expected)
    full = S.cooccurrence_graph(train, min_rating=4.0).toarray()  # 0-3 co-liked twice
    capped = S.cooccurrence_graph(train, min_rating=4.0, max_neighbors=1).toarray()
    assert (capped > 0).sum(axis=1).tolist() == [1, 1, 1, 1]
    assert capped[0, 3] == 2 and capped[3, 0] == 2  # heaviest neighbour kept
    assert capped[1, 0] == 1 and capped[2, 0] == 1  # ties: lowest item index
    assert np.all((capped == 0) | (capped == full))


def test_random_walks_follow_edges():
    train = liked_train()
    g = S.cooccurrence_graph(train, min_rating=4.0)
    walks = S.random_walks(train, walks_per_item=7, walk_length=6, min_rating=4.0, seed=0)
    liked_items = [0, 1, 2, 3, 4, 5]
    assert walks.shape == (7 * len(liked_items), 6) and walks.dtype == np.int32
    assert sorted(np.bincount(walks[:, 0], minlength=7).tolist()) == [0] + [7] * 6
    dense = g.toarray()
    for w in walks:
        steps = w[w >= 0]
        assert np.all(w[len(steps) :] == -1)  # padding only at the end
        for a, b in zip(steps[:-1], steps[1:]):
            assert dense[a, b] > 0
    lone = walks[walks[:, 0] == 5]  # item 5 has no neighbours: the walk is the item alone
    assert np.all(lone[:, 1:] == -1)
    assert np.all(walks[walks[:, 0] != 5] >= 0)
    np.testing.assert_array_equal(walks, S.random_walks(train, walks_per_item=7, walk_length=6, min_rating=4.0, seed=0))
    assert not np.array_equal(walks, S.random_walks(train, walks_per_item=7, walk_length=6, min_rating=4.0, seed=1))


def test_random_walk_steps_follow_edge_weights():
    # star: item 0 linked to 1 (weight 3) and 2 (weight 1)
    g = sp.csr_matrix(np.array([[0, 3, 1], [3, 0, 0], [1, 0, 0]], dtype=np.float32))
    train = make([0, 0, 0], [0, 1, 2], [5, 5, 5])
    walks = S.random_walks(train, walks_per_item=4000, walk_length=2, min_rating=4.0, seed=0, graph=g)
    nxt = walks[walks[:, 0] == 0, 1]
    assert abs((nxt == 1).mean() - 0.75) < 0.03
    assert np.all(walks[walks[:, 0] != 0, 1] == 0)


# ----------------------------------------------------------------------------- persistence


def test_write_and_read_samples_round_trip(tmp_path):
    train = random_train()
    neg = S.sample_negatives(train, n_random=2, n_popular=2, n_disliked=2, popular_pool=10, seed=0)
    trip = S.bpr_triplets(train, neg, negatives_per_positive=2, seed=0)
    seqs = S.liked_sequences(train, min_rating=4.0)
    walks = S.random_walks(train, walks_per_item=2, walk_length=5, min_rating=4.0, seed=0)
    paths = F.write_samples(
        tmp_path,
        train=train,
        negatives=neg,
        triplets=trip,
        sequences=seqs,
        walks=walks,
        params={"sequences": {"min_rating": 4.0}, "walks": {"min_rating": 4.0, "walks_per_item": 2}},
    )
    assert {p.name for p in paths.values()} == set(F.SAMPLE_FILES.values())
    pd.testing.assert_frame_equal(F.read_negatives(tmp_path), neg)
    pd.testing.assert_frame_equal(F.read_triplets(tmp_path / "triplets.parquet"), trip)
    back = F.read_sequences(tmp_path)
    assert len(back) == len(seqs) and all(np.array_equal(a, b) and a.dtype == np.int32 for a, b in zip(back, seqs))
    np.testing.assert_array_equal(F.read_walks(tmp_path), walks)
    meta = F.read_meta(paths["walks"])
    assert meta["train_fingerprint"] == F.train_fingerprint(train)
    assert meta["params"] == {"min_rating": 4.0, "walks_per_item": 2} and meta["walk_length"] == 5


def test_load_matching_checks_fingerprint_and_params(tmp_path):
    train = random_train()
    seqs = S.liked_sequences(train, min_rating=4.0)
    F.write_samples(tmp_path, train=train, sequences=seqs, params={"sequences": {"min_rating": 4.0}})
    assert F.load_matching(None, "sequences", train, {}) is None
    assert F.load_matching(tmp_path, "walks", train, {}) is None  # absent
    got = F.load_matching(tmp_path, "sequences", train, {"min_rating": 4.0, "unrecorded": 1})
    assert all(np.array_equal(a, b) for a, b in zip(got, seqs))
    with pytest.warns(UserWarning, match="other settings"):
        assert F.load_matching(tmp_path, "sequences", train, {"min_rating": 3.0}) is None
    with pytest.warns(UserWarning, match="other train data"):
        assert F.load_matching(tmp_path, "sequences", random_train(seed=9), {"min_rating": 4.0}) is None


def test_make_samples_makes_only_what_is_asked_with_the_params_it_used():
    from recflow.experiments.config import SamplingConfig

    train = random_train()
    negatives = SamplingConfig(n_random=2, n_popular=1, n_disliked=1, seed=3)
    made, params, seconds = S.make_samples(train, negatives=negatives, sequences={"min_rating": 4.0})
    assert sorted(made) == sorted(params) == ["negatives", "sequences", "triplets"]
    assert sorted(seconds) == ["negatives_and_triplets", "sequences"]
    assert params["negatives"] == params["triplets"] == negatives.model_dump(mode="json")
    expected = S.sample_negatives(train, n_random=2, n_popular=1, n_disliked=1, popular_pool=negatives.popular_pool, seed=3)
    pd.testing.assert_frame_equal(made["negatives"], expected)
    assert S.make_samples(train) == ({}, {}, {})
