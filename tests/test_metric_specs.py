"""The metric registry (``recflow.evaluation.specs``) is the one place that knows what a metric is."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recflow.evaluation.specs import BY_NAME, PER_USER, cutoffs, greater_is_better, measured, metric_key, per_user_metrics, validate_champion_metric
from recflow.experiments.config import ConfigError, load_config


def test_a_key_round_trips_through_the_registry():
    assert metric_key("recall", 10) == "recall_at_10"
    assert measured("recall_at_10").spec is BY_NAME["recall"] and measured("recall_at_10").k == 10
    assert measured("rmse").spec is BY_NAME["rmse"] and measured("rmse").k is None
    assert measured("recall_at_10").short == "R@10" and measured("ndcg_at_20").label == "NDCG@20"


def test_keys_no_spec_describes_resolve_to_none():
    for key in ("valid_recall_at_10", "recall_at_x", "recall_at_0", "n_eval_users", "recall", "rmse_at_10", "recall_at_10_ci_low"):
        assert measured(key) is None, key


def test_a_cut_off_is_required_exactly_where_the_spec_needs_one():
    with pytest.raises(ValueError, match="needs cut-off k"):
        metric_key("recall")
    with pytest.raises(ValueError, match="takes no cut-off k"):
        metric_key("rmse", 10)


def test_directions_come_from_the_specs():
    assert greater_is_better("ndcg_at_5") is True
    assert greater_is_better("rmse") is False and greater_is_better("fit_seconds") is False
    assert greater_is_better("something_else") is None


def test_cutoffs_reads_the_ranking_keys_only():
    assert cutoffs(["recall_at_20", "ndcg_at_10", "ann_recall_at_50", "rmse", "valid_recall_at_7"]) == [10, 20]


def test_per_user_metrics_runs_every_per_user_spec_in_registry_order():
    recommended = np.array([[0, 1], [2, 3]])
    relevant = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 0, 1]]))
    out = per_user_metrics(recommended, relevant, [2])
    assert list(out) == [s.key(2) for s in PER_USER] == ["recall_at_2", "precision_at_2", "ndcg_at_2", "map_at_2", "hit_rate_at_2"]
    assert out["recall_at_2"].tolist() == [1.0, 1.0] and out["precision_at_2"].tolist() == [0.5, 0.5]


def test_a_champion_metric_must_be_one_an_evaluation_measures():
    assert validate_champion_metric("rmse", [10]).spec.name == "rmse"
    with pytest.raises(ValueError, match="'ann_recall_at_10' is not a metric an evaluation measures"):
        validate_champion_metric("ann_recall_at_10", [10])
    with pytest.raises(ConfigError, match="'recal_at_10' is not a metric"):
        load_config(None, ["serving.champion_metric=recal_at_10"])


def test_the_champions_direction_is_the_metrics_own():
    assert load_config(None, ["evaluation.ks=[5]", "serving.champion_metric=rmse"]).serving.greater_is_better is False
    assert load_config(None, ["serving.champion_metric=recall_at_10"]).serving.greater_is_better is True
    with pytest.raises(ConfigError, match="greater_is_better: True contradicts 'rmse', for which lower is better"):
        load_config(None, ["serving.champion_metric=rmse", "serving.greater_is_better=true"])
