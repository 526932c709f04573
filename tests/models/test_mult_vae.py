"""MultVAERecommender: the KL annealing schedule, learning on two clusters, the checks of its settings."""

from __future__ import annotations

import numpy as np
import pytest

from recflow.interactions import Interactions

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
