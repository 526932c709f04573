"""Run a fitted model against one part of a split: top-K ranking metrics and rating errors.

Pure library code (no Prefect, no MLflow): a task calls these and logs the returned dicts.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recflow.interactions import Interactions
from recflow.metrics import mae, ranking_metrics, rmse
from recflow.models.base import Recommender
from recflow.split import NothingToEvaluate


def relevance_matrix(test: Interactions, relevance_threshold: float | None = None) -> sp.csr_matrix:
    """users x items boolean CSR of the relevant test interactions (rating >= threshold when set)."""
    keep = np.ones(len(test), dtype=bool) if relevance_threshold is None else test.ratings >= relevance_threshold
    return sp.csr_matrix(
        (np.ones(int(keep.sum()), dtype=bool), (test.user_idx[keep], test.item_idx[keep])),
        shape=(test.n_users, test.n_items),
    )


def evaluable_users(
    train: Interactions, test: Interactions, relevance_threshold: float | None = None
) -> tuple[np.ndarray, int]:
    """(users with >= 1 relevant test item and >= 1 train interaction, number of cold test users).

    A cold test user has relevant test items but no train history; a model has nothing to
    rank for them, so they are excluded and counted.
    """
    _check_same_index(train, test)
    n_rel = np.diff(relevance_matrix(test, relevance_threshold).indptr)
    n_train = np.bincount(train.user_idx, minlength=train.n_users)
    has_rel = n_rel > 0
    users = np.flatnonzero(has_rel & (n_train > 0))
    n_cold = int((has_rel & (n_train == 0)).sum())
    return users, n_cold


def check_evaluable(train: Interactions, test: Interactions, relevance_threshold: float | None = None) -> None:
    """Raise ``NothingToEvaluate`` when no user is evaluable (see ``evaluable_users``): every ranking
    metric would be NaN. The split stage already refuses a split without warm test rows; this
    catches a relevance threshold that no warm test rating reaches."""
    users, n_cold = evaluable_users(train, test, relevance_threshold)
    if len(users):
        return
    n_test_users = len(np.unique(test.user_idx))
    counts = f"{test.n_users} users, {len(test)} test rows of {n_test_users} users"
    if relevance_threshold is not None:
        why = (f"no test user with training ratings has a test rating >= {relevance_threshold:g} "
               f"(evaluation.relevance_threshold); {n_cold} cold test users (no training ratings) do not count")
    else:
        why = f"the {n_cold} test users are all cold (no training ratings)"
    raise NothingToEvaluate(f"nothing to evaluate: {counts}; {why}.")


def evaluate_ranking(
    model: Recommender,
    train: Interactions,
    test: Interactions,
    *,
    ks: list[int],
    exclude: sp.spmatrix | sp.sparray | None = None,
    relevance_threshold: float | None = None,
    batch_users: int = 2048,
) -> dict:
    """Full-ranking top-K metrics of a model fitted on ``train``, judged on ``test``.

    Each evaluable user (see ``evaluable_users``) gets ``model.recommend(..., max(ks))`` over
    every item of the split's index, with the user's train items masked and ``exclude`` (e.g.
    the validation part's ``seen``) masked too; the relevant items are the user's test items
    with rating >= ``relevance_threshold`` (all of them when None). Returns
    ``ranking_metrics`` (``recall_at_{k}`` ...) plus ``n_eval_users`` and ``n_cold_test_users``.
    """
    if not ks:
        raise ValueError("ks must name at least one cutoff")
    _check_same_index(train, test)
    if model.n_users != train.n_users or model.n_items != train.n_items:
        raise ValueError(
            f"model was fitted on a {model.n_users} x {model.n_items} index, "
            f"the split has {train.n_users} x {train.n_items}"
        )
    users, n_cold = evaluable_users(train, test, relevance_threshold)
    relevant = relevance_matrix(test, relevance_threshold)[users]
    recommended, _ = model.recommend(users, max(ks), exclude_seen=True, exclude=exclude, batch_size=batch_users)
    metrics = ranking_metrics(recommended, relevant, ks, test.n_items)
    metrics["n_eval_users"] = int(len(users))
    metrics["n_cold_test_users"] = n_cold
    return metrics


def evaluate_ratings(
    model: Recommender,
    test: Interactions,
    *,
    clip: tuple[float, float] | None = None,
    batch_size: int = 1 << 20,
) -> dict:
    """RMSE and MAE of ``model.predict`` on every test rating (clipped to ``clip`` when given)."""
    if not model.predicts_ratings:
        raise TypeError(f"{type(model).__name__} does not predict ratings")
    pred = np.empty(len(test), dtype=np.float64)
    for start in range(0, len(test), batch_size):
        sl = slice(start, start + batch_size)
        pred[sl] = model.predict(test.user_idx[sl], test.item_idx[sl])
    if clip is not None:
        lo, hi = clip
        pred = np.clip(pred, lo, hi)
    return {"rmse": rmse(test.ratings, pred), "mae": mae(test.ratings, pred), "n_rated": int(len(test))}


def _check_same_index(a: Interactions, b: Interactions) -> None:
    same = (a.user_ids is b.user_ids or np.array_equal(a.user_ids, b.user_ids)) and (
        a.item_ids is b.item_ids or np.array_equal(a.item_ids, b.item_ids)
    )
    if not same:
        raise ValueError("train and test must come from one split (the same user and item index)")
