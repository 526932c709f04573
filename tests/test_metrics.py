"""Top-K and rating metrics: hand-computed values, padding, and independent cross-checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import average_precision_score, ndcg_score, precision_score, recall_score

from recflow.evaluation.metrics import (
    bootstrap_ci,
    coverage_at_k,
    hit_matrix,
    hit_rate_at_k,
    mae,
    map_at_k,
    ndcg_at_k,
    paired_bootstrap_test,
    precision_at_k,
    recall_at_k,
    rmse,
)
from recflow.evaluation.specs import per_user_metrics, ranking_metrics


def rel_matrix(sets: list[set[int]], n_items: int) -> sp.csr_matrix:
    rows = [u for u, s in enumerate(sets) for _ in s]
    cols = [i for s in sets for i in sorted(s)]
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(sets), n_items))


# Two users, 10 items, K = 4.
#   user 0: recommended [3, 1, -1, 7], relevant {1, 7, 9}  -> hits [0, 1, 0, 1]
#   user 1: recommended [0, 2, 4, 5],  relevant {5}        -> hits [0, 0, 0, 1]
REC = np.array([[3, 1, -1, 7], [0, 2, 4, 5]])
REL = rel_matrix([{1, 7, 9}, {5}], 10)
NREL = np.array([3, 1])
L2, L3, L4, L5 = (math.log2(x) for x in (2, 3, 4, 5))


def test_hit_matrix_hand_example():
    hits = hit_matrix(REC, REL)
    assert hits.dtype == bool and hits.shape == REC.shape
    np.testing.assert_array_equal(hits, [[0, 1, 0, 1], [0, 0, 0, 1]])


def test_recall_precision_hit_hand_example():
    hits = hit_matrix(REC, REL)
    # @4: user 0 hit 2 of its 3 relevant; user 1 hit its 1 relevant
    np.testing.assert_allclose(recall_at_k(hits, NREL, 4), [2 / 3, 1 / 1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(precision_at_k(hits, 4), [2 / 4, 1 / 4], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(hit_rate_at_k(hits, 4), [1.0, 1.0])
    # @2: user 0 has hit at position 2 only; user 1 nothing
    np.testing.assert_allclose(recall_at_k(hits, NREL, 2), [1 / 3, 0.0], atol=1e-15)
    np.testing.assert_allclose(precision_at_k(hits, 2), [1 / 2, 0.0], atol=1e-15)
    np.testing.assert_array_equal(hit_rate_at_k(hits, 1), [0.0, 0.0])


def test_ndcg_hand_example():
    hits = hit_matrix(REC, REL)
    # user 0 @4: DCG = 1/log2(3) + 1/log2(5); IDCG over min(3, 4) = 3 positions = 1/log2(2) + 1/log2(3) + 1/log2(4)
    u0 = (1 / L3 + 1 / L5) / (1 / L2 + 1 / L3 + 1 / L4)
    # user 1 @4: DCG = 1/log2(5); IDCG over min(1, 4) = 1 position = 1
    u1 = (1 / L5) / 1.0
    np.testing.assert_allclose(ndcg_at_k(hits, NREL, 4), [u0, u1], rtol=1e-12)
    # user 0 @2: DCG = 1/log2(3); IDCG over min(3, 2) = 2 positions = 1 + 1/log2(3)
    np.testing.assert_allclose(ndcg_at_k(hits, NREL, 2), [(1 / L3) / (1 + 1 / L3), 0.0], rtol=1e-12)


def test_map_hand_example():
    hits = hit_matrix(REC, REL)
    # user 0 @4: hits at 2 and 4: (P@2 + P@4) / min(3, 4) = (1/2 + 2/4) / 3 = 1/3
    # user 1 @4: hit at 4: P@4 / min(1, 4) = (1/4) / 1
    np.testing.assert_allclose(map_at_k(hits, NREL, 4), [1 / 3, 1 / 4], rtol=1e-12)
    # user 0 @2: P@2 / min(3, 2) = (1/2) / 2 = 1/4
    np.testing.assert_allclose(map_at_k(hits, NREL, 2), [1 / 4, 0.0], rtol=1e-12)


def test_fewer_relevant_than_k_can_reach_one():
    # one relevant item ranked first: every normalised metric is perfect, precision is 1/k
    hits = hit_matrix(np.array([[4, 0, 1, 2, 3]]), rel_matrix([{4}], 5))
    assert recall_at_k(hits, [1], 5)[0] == 1.0
    assert ndcg_at_k(hits, [1], 5)[0] == 1.0
    assert map_at_k(hits, [1], 5)[0] == 1.0
    assert precision_at_k(hits, 5)[0] == 1 / 5
    # two relevant at positions 1 and 2 of 5: ideal, so ndcg = map = 1
    hits = hit_matrix(np.array([[4, 2, 1, 0, 3]]), rel_matrix([{4, 2}], 5))
    assert ndcg_at_k(hits, [2], 5)[0] == pytest.approx(1.0, abs=1e-15)
    assert map_at_k(hits, [2], 5)[0] == 1.0


def test_padding_is_never_a_hit():
    # -1 must not wrap onto the last item (or onto the previous user's row of keys)
    n = 6
    rec = np.array([[5, -1, -1], [-1, -1, -1], [0, -1, -1]])
    rel = rel_matrix([{5}, {5}, {5, 0}], n)
    hits = hit_matrix(rec, rel)
    np.testing.assert_array_equal(hits, [[1, 0, 0], [0, 0, 0], [1, 0, 0]])
    # padding counts as a miss in precision (RecBole: hits / k)
    np.testing.assert_allclose(precision_at_k(hits, 3), [1 / 3, 0, 1 / 3])
    assert coverage_at_k(rec, n, 3) == 2 / 6


def test_hit_matrix_ignores_explicit_zeros_and_handles_empty():
    rel = sp.csr_matrix((np.array([0.0, 1.0]), (np.array([0, 0]), np.array([1, 2]))), shape=(1, 4))
    np.testing.assert_array_equal(hit_matrix(np.array([[1, 2]]), rel), [[False, True]])
    empty = sp.csr_matrix((2, 4))
    assert not hit_matrix(np.array([[0, 1], [2, 3]]), empty).any()
    assert hit_matrix(np.zeros((0, 3), dtype=int), sp.csr_matrix((0, 4))).shape == (0, 3)


def test_hit_matrix_rejects_bad_input():
    rel = rel_matrix([{1}], 4)
    with pytest.raises(ValueError, match="repeats"):
        hit_matrix(np.array([[1, 1]]), rel)
    with pytest.raises(ValueError):
        hit_matrix(np.array([[4]]), rel)  # out of the item range
    with pytest.raises(ValueError):
        hit_matrix(np.array([[1], [2]]), rel)  # row count mismatch
    with pytest.raises(TypeError):
        hit_matrix(np.array([[1.0]]), rel)
    # repeated padding is fine
    hit_matrix(np.array([[1, -1, -1]]), rel)


def test_k_outside_hit_matrix_and_no_relevant():
    hits = np.zeros((2, 3), dtype=bool)
    with pytest.raises(ValueError):
        recall_at_k(hits, [1, 1], 4)
    with pytest.raises(ValueError):
        precision_at_k(hits, 0)
    # a user without relevant items has no recall/ndcg/map (NaN), and no warning is raised
    with np.errstate(all="raise"):
        r = recall_at_k(hits, [0, 2], 3)
        assert np.isnan(r[0]) and r[1] == 0
        assert np.isnan(ndcg_at_k(hits, [0, 2], 3)[0])
        assert np.isnan(map_at_k(hits, [0, 2], 3)[0])


def test_coverage_hand_example():
    # top 2: {3, 1} U {0, 2} = 4 distinct of 10; top 4 adds 7, 4, 5 (and ignores -1) = 7 of 10
    assert coverage_at_k(REC, 10, 2) == 4 / 10
    assert coverage_at_k(REC, 10, 4) == 7 / 10


def test_ranking_metrics_keys_means_and_excluded_users():
    # a third user without relevant items must be excluded from every mean (coverage included)
    rec = np.vstack([REC, [[8, 9, 6, 0]]])
    rel = rel_matrix([{1, 7, 9}, {5}, set()], 10)
    out = ranking_metrics(rec, rel, [2, 4], n_items=10)
    assert set(out) == {f"{m}_at_{k}" for m in ("recall", "precision", "ndcg", "map", "hit_rate", "coverage") for k in (2, 4)}
    assert out["recall_at_4"] == pytest.approx((2 / 3 + 1) / 2, abs=1e-15)
    assert out["precision_at_4"] == pytest.approx((2 / 4 + 1 / 4) / 2, abs=1e-15)
    assert out["hit_rate_at_4"] == 1.0
    assert out["hit_rate_at_2"] == 0.5
    assert out["map_at_4"] == pytest.approx((1 / 3 + 1 / 4) / 2, abs=1e-15)
    assert out["ndcg_at_2"] == pytest.approx(((1 / L3) / (1 + 1 / L3) + 0) / 2, abs=1e-15)
    assert out["coverage_at_4"] == 7 / 10  # items 8, 9, 6 of the excluded user do not count
    assert all(isinstance(v, float) for v in out.values())
    # nothing evaluable -> NaN everywhere, not an error
    none = ranking_metrics(rec, rel_matrix([set(), set(), set()], 10), [4], n_items=10)
    assert all(math.isnan(v) for v in none.values())
    with pytest.raises(ValueError):
        ranking_metrics(rec, rel, [5], n_items=10)  # k beyond the recommended columns


def test_per_user_values_are_what_the_means_average():
    rec = np.vstack([REC, [[8, 9, 6, 0]]])
    rel = rel_matrix([{1, 7, 9}, {5}, set()], 10)
    values = per_user_metrics(rec, rel, [4])
    assert values["recall_at_4"].tolist() == [2 / 3, 1.0]  # the user without relevant items has no row
    assert values["hit_rate_at_4"].tolist() == [1.0, 1.0]
    means = ranking_metrics(rec, rel, [4], n_items=10)
    assert all(means[name] == values[name].mean() for name in values)


# ----------------------------------------------------------------------------- uncertainty


def test_bootstrap_ci_of_a_constant_is_that_constant():
    low, high = bootstrap_ci(np.full(7, 0.25), n_boot=50, seed=1)
    assert (low, high) == (0.25, 0.25)


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    # 4 users at 1 and 6 at 0: the mean 0.4 lies inside, each column is resampled with the same users
    v = np.array([1.0] * 4 + [0.0] * 6)
    two = np.column_stack([v, 1 - v])
    low, high = bootstrap_ci(two, n_boot=2000, seed=3)
    assert low[0] < 0.4 < high[0] and low[1] < 0.6 < high[1]
    assert low[0] + high[1] == pytest.approx(1.0) and high[0] + low[1] == pytest.approx(1.0)  # mirror columns
    w = np.linspace(0, 1, 10) ** 2
    assert bootstrap_ci(w, n_boot=200, seed=3) == bootstrap_ci(w, n_boot=200, seed=3)
    assert bootstrap_ci(w, n_boot=200, seed=3) != bootstrap_ci(w, n_boot=200, seed=4)


def test_bootstrap_ci_width_matches_the_normal_approximation():
    # 400 Bernoulli(0.3) users: 95% half-width ~ 1.96 sqrt(p (1 - p) / n) = 0.0449
    v = (np.arange(400) % 10 < 3).astype(float)
    low, high = bootstrap_ci(v, n_boot=4000, seed=0)
    assert (high - low) / 2 == pytest.approx(1.96 * math.sqrt(0.3 * 0.7 / 400), rel=0.08)


def test_bootstrap_ci_rejects_nan_and_bad_levels():
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci(np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(np.array([0.1, 0.2]), level=1.0)


def test_paired_test_finds_a_consistent_gain_significant():
    # 50 users, the new model better by 0.1 on 40 of them and equal on 10
    old = np.linspace(0.0, 0.5, 50)
    new = old + np.where(np.arange(50) < 40, 0.1, 0.0)
    delta, p = paired_bootstrap_test(new, old, n_boot=2000, seed=0)
    assert delta == pytest.approx(0.08)
    assert p == 1 / 2001  # no centred resample reaches the observed gain


def test_paired_test_finds_a_tiny_noisy_gain_not_significant():
    # +0.3 and -0.3 alternate, one extra +0.01: the mean gain 0.0002 is noise
    old = np.full(50, 0.4)
    new = old + np.where(np.arange(50) % 2 == 0, 0.3, -0.3)
    new[0] += 0.01
    delta, p = paired_bootstrap_test(new, old, n_boot=2000, seed=0)
    assert delta == pytest.approx(0.0002)
    assert 0.3 < p < 0.7


def test_paired_test_direction_for_smaller_is_better():
    old = np.linspace(1.0, 2.0, 30)
    new = old - 0.2  # lower error for every user
    delta, p = paired_bootstrap_test(new, old, greater_is_better=False, n_boot=500, seed=0)
    assert delta == pytest.approx(-0.2) and p == 1 / 501
    assert paired_bootstrap_test(new, old, greater_is_better=True, n_boot=500, seed=0)[1] == 1.0


def test_paired_test_needs_the_same_users():
    with pytest.raises(ValueError, match="differ in length"):
        paired_bootstrap_test(np.zeros(3), np.zeros(4))


def test_ranking_metrics_does_not_mutate_relevant():
    rel = sp.csr_matrix((np.array([0.0, 1.0]), (np.array([0, 0]), np.array([1, 2]))), shape=(1, 4))
    ranking_metrics(np.array([[1, 2]]), rel, [2], n_items=4)
    assert rel.nnz == 2


# ----------------------------------------------------------------------------- cross-checks


def _random_case(seed: int, n_users=60, n_items=40, K=15, pad=True):
    rng = np.random.default_rng(seed)
    rec = np.array([rng.permutation(n_items)[:K] for _ in range(n_users)])
    if pad:  # pad the tail of some rows
        for u in range(0, n_users, 7):
            rec[u, K - rng.integers(1, K) :] = -1
    sets = [set(rng.choice(n_items, size=rng.integers(1, 25), replace=False).tolist()) for _ in range(n_users)]
    return rec, sets


def _reference(rec_row, rel_set, k):
    """Straight from the definitions, one user, plain Python."""
    top = [int(i) for i in rec_row[:k]]
    hits = [1 if (i >= 0 and i in rel_set) else 0 for i in top]
    n = len(rel_set)
    recall = sum(hits) / n
    precision = sum(hits) / k
    hit = 1.0 if any(hits) else 0.0
    dcg = sum(h / math.log2(j + 2) for j, h in enumerate(hits))
    idcg = sum(1 / math.log2(j + 2) for j in range(min(n, k)))
    ap = 0.0
    seen = 0
    for j, h in enumerate(hits):
        if h:
            seen += 1
            ap += seen / (j + 1)
    return recall, precision, hit, dcg / idcg, ap / min(n, k)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_bruteforce_reference(seed):
    rec, sets = _random_case(seed)
    n_items = 40
    rel = rel_matrix(sets, n_items)
    n_rel = np.array([len(s) for s in sets])
    hits = hit_matrix(rec, rel)
    for k in (1, 5, 10, 15):
        ref = np.array([_reference(rec[u], sets[u], k) for u in range(len(sets))])
        np.testing.assert_allclose(recall_at_k(hits, n_rel, k), ref[:, 0], rtol=0, atol=1e-9)
        np.testing.assert_allclose(precision_at_k(hits, k), ref[:, 1], rtol=0, atol=1e-9)
        np.testing.assert_allclose(hit_rate_at_k(hits, k), ref[:, 2], rtol=0, atol=1e-9)
        np.testing.assert_allclose(ndcg_at_k(hits, n_rel, k), ref[:, 3], rtol=0, atol=1e-9)
        np.testing.assert_allclose(map_at_k(hits, n_rel, k), ref[:, 4], rtol=0, atol=1e-9)
        agg = ranking_metrics(rec, rel, [k], n_items)
        for col, name in enumerate(("recall", "precision", "hit_rate", "ndcg", "map")):
            assert agg[f"{name}_at_{k}"] == pytest.approx(ref[:, col].mean(), abs=1e-9)
        distinct = {int(i) for row in rec for i in row[:k] if i >= 0}
        assert agg[f"coverage_at_{k}"] == pytest.approx(len(distinct) / n_items, abs=1e-12)


def _full_scores(rec_row, n_items):
    """A score vector whose ranking starts with rec_row (distinct scores, no ties)."""
    scores = -np.arange(n_items, dtype=float) - len(rec_row) - 1  # unrecommended: below all recommended
    for j, i in enumerate(rec_row):
        scores[i] = len(rec_row) - j
    return scores


@pytest.mark.parametrize("seed", [3, 4])
def test_against_sklearn(seed):
    n_items, K = 40, 15
    rec, sets = _random_case(seed, n_users=30, n_items=n_items, K=K, pad=False)
    rel = rel_matrix(sets, n_items)
    n_rel = np.array([len(s) for s in sets])
    hits = hit_matrix(rec, rel)
    for k in (1, 5, 10, 15):
        ndcg = ndcg_at_k(hits, n_rel, k)
        rec_k = recall_at_k(hits, n_rel, k)
        prec_k = precision_at_k(hits, k)
        for u, s in enumerate(sets):
            y_true = np.zeros(n_items)
            y_true[list(s)] = 1
            y_score = _full_scores(rec[u], n_items)
            # sklearn's IDCG ranks all items by true relevance: for binary labels, min(|rel|, k) ones
            assert ndcg[u] == pytest.approx(ndcg_score([y_true], [y_score], k=k), abs=1e-9)
            y_pred = np.zeros(n_items, dtype=int)
            y_pred[rec[u, :k]] = 1
            assert rec_k[u] == pytest.approx(recall_score(y_true, y_pred), abs=1e-9)
            assert prec_k[u] == pytest.approx(precision_score(y_true, y_pred, zero_division=0), abs=1e-9)


def test_map_at_full_ranking_equals_sklearn_average_precision():
    # with K = n_items every relevant item is ranked, min(|rel|, K) = |rel|, so MAP@K is plain AP
    rng = np.random.default_rng(5)
    n_items, n_users = 30, 25
    rec = np.array([rng.permutation(n_items) for _ in range(n_users)])
    sets = [set(rng.choice(n_items, size=rng.integers(1, 12), replace=False).tolist()) for _ in range(n_users)]
    rel = rel_matrix(sets, n_items)
    ap = map_at_k(hit_matrix(rec, rel), [len(s) for s in sets], n_items)
    for u, s in enumerate(sets):
        y_true = np.zeros(n_items)
        y_true[list(s)] = 1
        assert ap[u] == pytest.approx(average_precision_score(y_true, _full_scores(rec[u], n_items)), abs=1e-9)


def test_hit_matrix_scales_without_python_loop():
    # 20k users x 50: a per-user loop would take seconds; the vectorised lookup takes milliseconds
    rng = np.random.default_rng(0)
    n_users, n_items, K = 20_000, 3_000, 50
    rec = (rng.integers(0, n_items, (n_users, 1)) + 7 * np.arange(K)) % n_items  # distinct per row
    nnz = 600_000  # random (user, item) pairs; repeats just sum
    rel = sp.csr_matrix((np.ones(nnz), (rng.integers(0, n_users, nnz), rng.integers(0, n_items, nnz))), shape=(n_users, n_items))
    hits = hit_matrix(rec, rel)
    dense = rel.toarray() != 0
    np.testing.assert_array_equal(hits, np.take_along_axis(dense, rec, axis=1))


# ----------------------------------------------------------------------------- ratings


def test_rmse_mae_hand_values():
    y, p = [1, 2, 3, 4], [2, 2, 5, 3]
    # errors 1, 0, 2, 1 -> MSE = (1 + 0 + 4 + 1) / 4 = 1.5 ; MAE = (1 + 0 + 2 + 1) / 4 = 1.0
    assert rmse(y, p) == pytest.approx(math.sqrt(1.5), abs=1e-15)
    assert mae(y, p) == 1.0
    assert rmse([3.0], [3.0]) == 0.0
    assert math.isnan(rmse([], [])) and math.isnan(mae([], []))
    with pytest.raises(ValueError):
        rmse([1, 2], [1])
