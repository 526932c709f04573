"""Run a fitted model against one part of a split: top-K ranking metrics and rating errors.

Pure library code (no Prefect, no MLflow): a task calls these and logs the returned dicts.

Every metric states its population (``POPULATION``), as counts beside the metric values:

* ranking: ``n_test_users`` (users with a test row) = ``n_eval_users`` (averaged: >= 1 relevant
  test item and >= 1 train row) + ``n_cold_test_users`` (relevant test items, no train row: a
  model has nothing to rank from) + ``n_test_users_no_relevant`` (no test item reaches the
  relevance threshold: recall is undefined for them);
* rating error: ``n_rated`` test ratings, ``n_rated_cold_users`` of them from users without a
  train row, over ratings ``rated_min`` .. ``rated_max`` (a split that keeps ratings >= 3 scores
  RMSE on 3-5 only).

Every per-user ranking metric also gets a bootstrap confidence interval over the evaluated users
(``with_confidence_intervals``: ``<metric>_ci_low`` / ``<metric>_ci_high``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recflow.evaluation.metrics import bootstrap_ci, mae, rmse
from recflow.evaluation.specs import measured, per_user_metrics, ranking_metrics
from recflow.prep.interactions import Interactions
from recflow.utils.numeric import distinct

if TYPE_CHECKING:  # a type only: importing the models package here would close a cycle (the Keras models validate with this module)
    from recflow.models.base import Recommender


class NothingToEvaluate(ValueError):
    """A split (or a relevance threshold) that leaves no test user a model can be judged on."""


#: the counts that say whom a metric covers (module doc); not metrics themselves
POPULATION = ("n_eval_users", "n_test_users", "n_cold_test_users", "n_test_users_no_relevant", "n_rated", "n_rated_cold_users", "rated_min", "rated_max")
#: below this many evaluated users the summaries warn that model differences are within noise
FEW_USERS = 100
CI_SUFFIXES = ("_ci_low", "_ci_high")


def is_ci_key(name: str) -> bool:
    return name.endswith(CI_SUFFIXES)


def is_metric_key(name: str) -> bool:
    """A metric value of its own (``recall_at_10``, ``rmse``), not a population count or an interval bound."""
    return name not in POPULATION and not name.startswith("n_") and not is_ci_key(name)


def half_width(metrics: dict, name: str) -> float | None:
    """Half the width of ``name``'s confidence interval (what the tables show as ``±``), or None."""
    low, high = metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high")
    return None if low is None or high is None else (float(high) - float(low)) / 2


def population_lines(metrics_by_model: dict[str, dict]) -> list[str]:
    """What every summary says about whom the metrics cover (one run: the same for every model),
    and a warning when so few users are evaluated that differences between models are noise."""
    ranked = next((m for m in metrics_by_model.values() if "n_eval_users" in m), None)
    rated = next((m for m in metrics_by_model.values() if "n_rated" in m), None)
    lines = []
    if ranked is not None:
        n = int(ranked["n_eval_users"])
        parts = [
            f"{int(ranked[k])} {what}"
            for k, what in (("n_test_users_no_relevant", "without a relevant test item"), ("n_cold_test_users", "cold (no training ratings)"))
            if k in ranked
        ]
        of = f" of {int(ranked['n_test_users'])} test users" if "n_test_users" in ranked else ""
        lines.append(f"ranking metrics: mean over {n} users{of}" + (f"; not ranked: {', '.join(parts)}" if parts else ""))
    if rated is not None:
        cold = f", {int(rated['n_rated_cold_users'])} from cold users" if "n_rated_cold_users" in rated else ""
        scale = f", ratings {rated['rated_min']:g} to {rated['rated_max']:g}" if "rated_min" in rated else ""
        lines.append(f"RMSE / MAE: {int(rated['n_rated'])} test ratings{cold}{scale}")
    if ranked is not None and int(ranked["n_eval_users"]) < FEW_USERS:
        lines.append(
            f"warning: only {int(ranked['n_eval_users'])} users evaluated (< {FEW_USERS}): differences between "
            "models are within noise; compare the confidence intervals"
        )
    return lines


def relevance_matrix(test: Interactions, relevance_threshold: float | None = None) -> sp.csr_matrix:
    """users x items boolean CSR of the relevant test interactions (rating >= threshold when set)."""
    keep = np.ones(len(test), dtype=bool) if relevance_threshold is None else test.ratings >= relevance_threshold
    return sp.csr_matrix(
        (np.ones(int(keep.sum()), dtype=bool), (test.user_idx[keep], test.item_idx[keep])),
        shape=(test.n_users, test.n_items),
    )


def evaluable_users(train: Interactions, test: Interactions, relevance_threshold: float | None = None) -> tuple[np.ndarray, int]:
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


def test_population(train: Interactions, test: Interactions, relevance_threshold: float | None = None) -> dict[str, int]:
    """Who the ranking metrics cover: ``n_test_users`` = ``n_eval_users`` + ``n_cold_test_users``
    + ``n_test_users_no_relevant`` (module doc)."""
    users, n_cold = evaluable_users(train, test, relevance_threshold)
    n_test = int((np.bincount(test.user_idx, minlength=test.n_users) > 0).sum())
    return {"n_eval_users": len(users), "n_test_users": n_test, "n_cold_test_users": n_cold, "n_test_users_no_relevant": n_test - len(users) - n_cold}


def check_evaluable(train: Interactions, test: Interactions, relevance_threshold: float | None = None) -> None:
    """Raise ``NothingToEvaluate`` when no user is evaluable (see ``evaluable_users``): every ranking
    metric would be NaN. The split stage already refuses a split without warm test rows; this
    catches a relevance threshold that no warm test rating reaches."""
    users, n_cold = evaluable_users(train, test, relevance_threshold)
    if len(users):
        return
    n_test_users = len(distinct(test.user_idx))
    counts = f"{test.n_users} users, {len(test)} test rows of {n_test_users} users"
    if relevance_threshold is not None:
        why = (
            f"no test user with training ratings has a test rating >= {relevance_threshold:g} "
            f"(evaluation.relevance_threshold); {n_cold} cold test users (no training ratings) do not count"
        )
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
    ``ranking_metrics`` (``recall_at_{k}`` ...) plus the population counts (``test_population``).
    """
    return evaluate_ranking_per_user(model, train, test, ks=ks, exclude=exclude, relevance_threshold=relevance_threshold, batch_users=batch_users)[0]


def evaluate_ranking_per_user(
    model: Recommender,
    train: Interactions,
    test: Interactions,
    *,
    ks: list[int],
    exclude: sp.spmatrix | sp.sparray | None = None,
    relevance_threshold: float | None = None,
    batch_users: int = 2048,
    cold_start: bool = False,
) -> tuple[dict, pd.DataFrame]:
    """``evaluate_ranking``'s metrics and, per evaluated user, the values they average: a frame
    with ``user_id`` and one column per per-user metric (``recall_at_10`` ...), users in index order.
    ``cold_start``: add ``cold_start_metrics`` (a time-forward split's newcomers)."""
    if not ks:
        raise ValueError("ks must name at least one cutoff")
    _check_same_index(train, test)
    if model.n_users != train.n_users or model.n_items != train.n_items:
        raise ValueError(f"model was fitted on a {model.n_users} x {model.n_items} index, the split has {train.n_users} x {train.n_items}")
    users, _ = evaluable_users(train, test, relevance_threshold)
    relevant = relevance_matrix(test, relevance_threshold)[users]
    recommended, _ = model.recommend(users, max(ks), exclude_seen=True, exclude=exclude, batch_size=batch_users)
    metrics = ranking_metrics(recommended, relevant, ks, test.n_items)
    metrics.update(test_population(train, test, relevance_threshold))
    per_user = pd.DataFrame({"user_id": test.user_ids[users], **per_user_metrics(recommended, relevant, ks)})
    if cold_start:
        metrics.update(cold_start_metrics(model, train, test, ks, exclude, relevance_threshold, batch_users))
    return metrics, per_user


def cold_start_metrics(
    model: Recommender, train: Interactions, test: Interactions, ks: list[int], exclude=None, relevance_threshold: float | None = None, batch_users: int = 2048
) -> dict:
    """What a model does with users and items it never saw in training (a time-forward split's newcomers).

    The main metrics (``evaluate_ranking``) average over warm users only. Beside them:

    * ``n_cold_items``: items with a relevant test row and no train row; ``n_cold_item_test_rows``
      their relevant test rows;
    * ``cold_users_<metric>_at_<k>`` (``recall``, ``ndcg``, ``hit_rate``): the model's full
      ranking for the cold test users, who stay in the split's index with an empty history, so
      each model gives what its fallback gives (popularity for ``popular``, item biases for
      ``mf``, nothing useful, often a tie of zeros ranked by index, for a model that ranks only from history).
      Computable wherever there is a cold test user; NaN-free: absent when there is none;
    * ``cold_items_recall_at_<k>``: over the warm users with a relevant cold item, the share of
      those cold items in their top k (a collaborative model cannot rank an item it has no data
      on above others, so this is near 0 for most), and ``cold_items_share_at_<k>``, the share of
      all warm users' top-k slots that went to cold items.
    """
    _check_same_index(train, test)
    relevant = relevance_matrix(test, relevance_threshold)
    n_train_user = np.bincount(train.user_idx, minlength=train.n_users)
    n_train_item = np.bincount(train.item_idx, minlength=train.n_items)
    has_rel = np.diff(relevant.indptr) > 0
    cold_item = n_train_item == 0
    rel_cold = relevant[:, cold_item]
    out: dict = {"n_cold_items": int((np.asarray(rel_cold.sum(axis=0)).ravel() > 0).sum()), "n_cold_item_test_rows": int(rel_cold.nnz)}
    k_max = max(ks)
    cold_users = np.flatnonzero(has_rel & (n_train_user == 0))
    if len(cold_users):
        recommended, _ = model.recommend(cold_users, k_max, exclude_seen=True, exclude=exclude, batch_size=batch_users)
        values = per_user_metrics(recommended, relevant[cold_users], ks)
        for k in ks:
            for name in ("recall", "ndcg", "hit_rate"):
                out[f"cold_users_{name}_at_{k}"] = float(values[f"{name}_at_{k}"].mean())
    warm_users = np.flatnonzero(has_rel & (n_train_user > 0))
    if out["n_cold_items"] and len(warm_users):
        recommended, _ = model.recommend(warm_users, k_max, exclude_seen=True, exclude=exclude, batch_size=batch_users)
        hit_cold = np.where(recommended >= 0, cold_item[np.clip(recommended, 0, None)], False)
        rel_cold_rows = sp.csr_matrix(relevant[warm_users].multiply(sp.csr_matrix(cold_item.astype(np.float32)[None, :])))
        rel_cold_rows.eliminate_zeros()
        with_cold = np.diff(rel_cold_rows.indptr) > 0
        for k in ks:
            out[f"cold_items_share_at_{k}"] = float(hit_cold[:, :k].mean())
            if with_cold.any():
                vals = per_user_metrics(recommended[with_cold], rel_cold_rows[with_cold], [k])
                out[f"cold_items_recall_at_{k}"] = float(vals[f"recall_at_{k}"].mean())
    return out


def with_confidence_intervals(metrics: dict, per_user: pd.DataFrame, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """``metrics`` plus ``<metric>_ci_low`` / ``<metric>_ci_high`` for every per-user column of
    ``per_user``: a percentile bootstrap over its users (``recflow.evaluation.metrics.bootstrap_ci``; one set
    of seeded resamples for all metrics). No users: no intervals."""
    columns = [c for c in per_user.columns if (found := measured(c)) is not None and found.spec.per_user is not None]
    out = dict(metrics)
    if not columns or len(per_user) == 0:
        return out
    low, high = bootstrap_ci(per_user[columns].to_numpy(np.float64), n_boot=n_boot, level=level, seed=seed)
    for name, lo, hi in zip(columns, low, high):
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = float(lo), float(hi)
    return out


def evaluate_ratings(
    model: Recommender,
    test: Interactions,
    *,
    clip: tuple[float, float] | None = None,
    batch_size: int = 1 << 20,
    train: Interactions | None = None,
) -> dict:
    """RMSE and MAE of ``model.predict`` on every test rating (clipped to ``clip`` when given),
    with their population: ``n_rated``, the range ``rated_min`` .. ``rated_max`` of the test
    ratings, and (given ``train``) ``n_rated_cold_users``, the rows of users without a train row."""
    if not model.predicts_ratings:
        raise TypeError(f"{type(model).__name__} does not predict ratings")
    pred = np.empty(len(test), dtype=np.float64)
    for start in range(0, len(test), batch_size):
        sl = slice(start, start + batch_size)
        pred[sl] = model.predict(test.user_idx[sl], test.item_idx[sl])
    if clip is not None:
        lo, hi = clip
        pred = np.clip(pred, lo, hi)
    out = {"rmse": rmse(test.ratings, pred), "mae": mae(test.ratings, pred), "n_rated": int(len(test))}
    if len(test):
        out["rated_min"], out["rated_max"] = float(test.ratings.min()), float(test.ratings.max())
    if train is not None:
        _check_same_index(train, test)
        n_train = np.bincount(train.user_idx, minlength=train.n_users)
        out["n_rated_cold_users"] = int((n_train[test.user_idx] == 0).sum())
    return out


def _check_same_index(a: Interactions, b: Interactions) -> None:
    same = (a.user_ids is b.user_ids or np.array_equal(a.user_ids, b.user_ids)) and (a.item_ids is b.item_ids or np.array_equal(a.item_ids, b.item_ids))
    if not same:
        raise ValueError("train and test must come from one split (the same user and item index)")
