"""MultVAERecommender: the KL annealing schedule, learning on two clusters, the checks of its settings."""

from __future__ import annotations

import numpy as np
import pytest

from recflow.prep.interactions import Interactions

mv = pytest.importorskip("recflow.models.mult_vae")
MultVAERecommender, kl_weight = mv.MultVAERecommender, mv.kl_weight


def test_kl_weight_rises_linearly_to_its_cap():
    assert [kl_weight(s, 0.2, 10) for s in (1, 2, 2, 5)] == [0.1, 0.2, 0.2, 0.2]
    assert kl_weight(1, 0.5, 100) == 0.01 and kl_weight(50, 0.5, 100) == 0.5
    assert kl_weight(1, 0.3, 0) == 0.3  # no annealing: the cap from the first update


def two_clusters() -> Interactions:
    """Users 0-19 hold 6 of items 0-9, users 20-39 6 of items 10-19."""
    rng = np.random.default_rng(0)
    users, items = [], []
    for u in range(40):
        base = 0 if u < 20 else 10
        users += [u] * 6
        items += (base + rng.choice(10, 6, replace=False)).tolist()
    n = len(users)
    return Interactions(
        np.array(users, np.int32), np.array(items, np.int32), np.ones(n, np.float32),
        np.zeros(n, np.int64), np.arange(40), np.arange(20),
    )  # fmt: skip


def test_loss_decreases_and_each_user_is_recommended_its_own_cluster():
    train = two_clusters()
    m = MultVAERecommender(dim=4, hidden=[16], batch_size=8, epochs=30, lr=0.01, beta_max=0.2, anneal_steps=50, threads=1).fit(train)
    losses = [h["loss"] for h in m.history_]
    assert losses[-1] < 0.9 * losses[0]
    assert [h["beta"] for h in m.history_][-1] == 0.2  # annealed up to the cap
    top, _ = m.recommend(np.arange(40), k=3)
    assert (top[:20] < 10).all() and (top[20:] >= 10).all()


@pytest.mark.parametrize("bad", [dict(dropout=1.0), dict(dropout=-0.1), dict(beta_max=-1.0), dict(anneal_steps=-1), dict(epochs=0)])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        MultVAERecommender(**bad).fit(two_clusters())


def popularity_ladder() -> Interactions:
    """12 users: items 0 and 1 held by all, item 2 by users 0-5, item 3 by user 0, item 4 by user 1."""
    pairs = [(u, i) for u in range(12) for i in (0, 1)] + [(u, 2) for u in range(6)] + [(0, 3), (1, 4)]
    users, items = (np.array(c, np.int32) for c in zip(*pairs))
    n = len(users)
    return Interactions(users, items, np.ones(n, np.float32), np.zeros(n, np.int64), np.arange(12), np.arange(5))


def test_top_items_fits_the_most_popular_items_and_never_recommends_the_rest(tmp_path):
    m = MultVAERecommender(dim=2, hidden=[4], batch_size=4, epochs=2, top_items=3, threads=1).fit(popularity_ladder())
    assert m.items_.tolist() == [0, 1, 2]
    scores = m.score(np.arange(12))
    assert np.isneginf(scores[:, 3:]).all() and np.isfinite(scores[:, :3]).all()
    U, V, valid = m.dot_factors()
    assert valid.tolist() == [True, True, True, False, False]
    np.testing.assert_allclose((U @ V.T)[:, :3], scores[:, :3], rtol=1e-5, atol=1e-6)
    m.save(tmp_path / "vae")
    loaded = MultVAERecommender.load(tmp_path / "vae")
    assert loaded.items_.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(loaded.score(np.arange(12)), scores)
