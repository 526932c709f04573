"""The champion decision on hand-made per-user values (``recflow.experiments.serving.champion.champion_decision``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recflow.experiments.serving.champion import PAIRED_RESAMPLES, champion_decision


def per_user(values, users=None) -> pd.DataFrame:
    values = np.asarray(values, dtype=float)
    return pd.DataFrame({"user_id": np.arange(1, len(values) + 1) if users is None else users, "recall_at_10": values})


CHAMPION = per_user(np.linspace(0.0, 0.5, 200))


def test_a_clearly_better_model_is_significant():
    # better by 0.05 on 150 of 200 users, equal on the rest: delta 0.0375
    gain = np.where(np.arange(200) < 150, 0.05, 0.0)
    out = champion_decision(per_user(CHAMPION["recall_at_10"] + gain), CHAMPION, "recall_at_10")
    assert out["significant"] is True
    assert out["delta"] == pytest.approx(0.0375)
    assert out["p"] == 1 / (PAIRED_RESAMPLES + 1)
    assert out["n_users"] == 200


def test_a_tiny_noisy_gain_is_not_significant():
    # +0.2 / -0.2 alternating, plus 0.01 on one user: delta 0.00005, noise
    noise = np.where(np.arange(200) % 2 == 0, 0.2, -0.2)
    noise[0] += 0.01
    out = champion_decision(per_user(CHAMPION["recall_at_10"] + noise), CHAMPION, "recall_at_10")
    assert out["significant"] is False
    assert out["delta"] == pytest.approx(0.00005)
    assert 0.3 < out["p"] < 0.7


def test_a_worse_model_is_not_significant():
    out = champion_decision(per_user(CHAMPION["recall_at_10"] - 0.05), CHAMPION, "recall_at_10")
    assert out["significant"] is False and out["delta"] == pytest.approx(-0.05) and out["p"] == 1.0


def test_the_level_is_configurable():
    # a modest gain: significant at 0.05, not at a level below its p
    rng = np.random.default_rng(0)
    ours = per_user(CHAMPION["recall_at_10"] + rng.normal(0.01, 0.05, 200))
    p = champion_decision(ours, CHAMPION, "recall_at_10")["p"]
    assert champion_decision(ours, CHAMPION, "recall_at_10", level=p * 1.01)["significant"] is True
    assert champion_decision(ours, CHAMPION, "recall_at_10", level=p)["significant"] is False


def test_users_are_paired_by_id_not_by_position():
    # the same values in another user order: no difference at all
    shuffled = CHAMPION.sample(frac=1.0, random_state=1)
    out = champion_decision(shuffled, CHAMPION, "recall_at_10")
    assert out["delta"] == 0.0 and out["significant"] is False


def test_only_users_both_evaluated_are_paired():
    ours = per_user([0.9, 0.9, 0.9], users=[1, 2, 999])
    out = champion_decision(ours, per_user([0.1, 0.1]), "recall_at_10")
    assert (out["n_users"], out["n_ours"], out["n_theirs"]) == (2, 3, 2)
    assert out["delta"] == pytest.approx(0.8)


def test_a_metric_without_per_user_values_cannot_be_tested():
    out = champion_decision(CHAMPION, CHAMPION, "rmse")
    assert out == {"significant": False, "cannot": "this run's model has no per-user rmse (a paired test needs a per-user metric)"}
    disjoint = champion_decision(per_user([0.5], users=[7]), per_user([0.1], users=[8]), "recall_at_10")
    assert disjoint == {"significant": False, "cannot": "no user was evaluated on recall_at_10 by both"}
