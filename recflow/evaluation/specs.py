"""Metrics as specs: one registry says what each metric is, and everything else asks it.

A ``MetricSpec`` carries the name, the per-user function (where the metric is a mean of per-user
values, so it has a bootstrap CI), whether it needs a cut-off ``k``, its direction, its labels and
the population it averages. Evaluation computes the registry's per-user ranking metrics, the run
table orders and labels its columns by it, tuning and the champion take their direction from it,
and a config's ``champion_metric`` is validated against it.

A metric's *key* is what MLflow and the stage files store: ``name`` or ``name_at_<k>`` (MLflow allows
no ``@``). ``metric_key`` writes one and ``measured`` reads one back: the only two places that know
the key's shape, so no other module parses a metric name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp

from recflow.evaluation import metrics as m

PerUser = Callable[[np.ndarray, np.ndarray, int], np.ndarray]  # (hits users x K, n_relevant per user, k) -> one value per user
Kind = Literal["ranking", "catalogue", "rating", "index", "cost"]

RANKING_POPULATION = "test users with at least one relevant test item"


@dataclass(frozen=True)
class MetricSpec:
    name: str
    label: str  # a column heading: "Recall"
    short: str  # a compact heading: "R" (the run table: "R@10")
    greater_is_better: bool
    needs_k: bool
    kind: Kind
    population: str  # whom its value averages
    per_user: PerUser | None = None  # a mean of per-user values: it has a bootstrap CI

    @property
    def direction(self) -> Literal["maximize", "minimize"]:
        return "maximize" if self.greater_is_better else "minimize"

    def key(self, k: int | None = None) -> str:
        return metric_key(self.name, k)


def _recall(hits, n_rel, k):
    return m.recall_at_k(hits, n_rel, k)


def _precision(hits, n_rel, k):
    return m.precision_at_k(hits, k)


def _ndcg(hits, n_rel, k):
    return m.ndcg_at_k(hits, n_rel, k)


def _map(hits, n_rel, k):
    return m.map_at_k(hits, n_rel, k)


def _hit_rate(hits, n_rel, k):
    return m.hit_rate_at_k(hits, k)


SPECS: tuple[MetricSpec, ...] = (
    # ranking (the order of per-user columns and of the logged metrics)
    MetricSpec("recall", "Recall", "R", True, True, "ranking", RANKING_POPULATION, _recall),
    MetricSpec("precision", "Precision", "P", True, True, "ranking", RANKING_POPULATION, _precision),
    MetricSpec("ndcg", "NDCG", "N", True, True, "ranking", RANKING_POPULATION, _ndcg),
    MetricSpec("map", "MAP", "MAP", True, True, "ranking", RANKING_POPULATION, _map),
    MetricSpec("hit_rate", "Hit rate", "HR", True, True, "ranking", RANKING_POPULATION, _hit_rate),
    MetricSpec("coverage", "Coverage", "Cov", True, True, "catalogue", "the items of the catalogue, over the evaluated users' top-k lists"),
    # rating prediction
    MetricSpec("rmse", "RMSE", "RMSE", False, False, "rating", "rated test pairs"),
    MetricSpec("mae", "MAE", "MAE", False, False, "rating", "rated test pairs"),
    # an index's own quality (logged under the index's prefix, never beside the model's metrics)
    MetricSpec("ann_recall", "ANN recall", "ANN R", True, True, "index", "held-out query vectors, against exact search"),
    MetricSpec("genre_overlap", "Genre overlap", "GO", True, True, "index", "sampled query items' nearest neighbours"),
    MetricSpec("genre_jaccard", "Genre Jaccard", "GJ", True, True, "index", "sampled query items' nearest neighbours"),
    # cost
    MetricSpec("fit_seconds", "Fit seconds", "fit s", False, False, "cost", "one fit"),
    MetricSpec("loss", "Loss", "loss", False, False, "cost", "the training examples"),
)
BY_NAME: dict[str, MetricSpec] = {s.name: s for s in SPECS}
PER_USER: tuple[MetricSpec, ...] = tuple(s for s in SPECS if s.per_user is not None)
COVERAGE = BY_NAME["coverage"]


@dataclass(frozen=True)
class Measured:
    """A key resolved: the spec and its cut-off."""

    spec: MetricSpec
    k: int | None

    @property
    def key(self) -> str:
        return metric_key(self.spec.name, self.k)

    @property
    def label(self) -> str:
        return f"{self.spec.label}@{self.k}" if self.k is not None else self.spec.label

    @property
    def short(self) -> str:
        return f"{self.spec.short}@{self.k}" if self.k is not None else self.spec.short


def metric_key(name: str, k: int | None = None) -> str:
    """The stored key of ``name`` at ``k``: ``recall_at_10``, ``rmse``."""
    spec = BY_NAME.get(name)
    if spec is not None and spec.needs_k != (k is not None):
        raise ValueError(f"metric {name!r} {'needs' if spec.needs_k else 'takes no'} cut-off k")
    return name if k is None else f"{name}_at_{k}"


def measured(key: str) -> Measured | None:
    """The spec and cut-off of a stored key, or None for a key no spec describes (a per-epoch log, a count)."""
    if key in BY_NAME and not BY_NAME[key].needs_k:
        return Measured(BY_NAME[key], None)
    name, sep, k = key.rpartition("_at_")
    spec = BY_NAME.get(name)
    if sep and spec is not None and spec.needs_k and k.isdigit() and int(k) > 0:
        return Measured(spec, int(k))
    return None


def greater_is_better(key: str) -> bool | None:
    """The direction of a stored key; None where no spec says."""
    found = measured(key)
    return None if found is None else found.spec.greater_is_better


def cutoffs(keys: Iterable[str], kind: Kind = "ranking") -> list[int]:
    """The cut-offs that keys of ``kind`` were measured at, ascending."""
    return sorted({found.k for key in keys if (found := measured(key)) is not None and found.spec.kind == kind and found.k is not None})


def validate_champion_metric(key: str, ks: list[int]) -> Measured:
    """``key`` as a metric a run measures and can rank models by, or a ValueError saying what would."""
    found = measured(key)
    choices = [s.key(k) for s in SPECS if s.kind in ("ranking", "catalogue") for k in ks] + [s.name for s in SPECS if s.kind == "rating"]
    if found is None or found.spec.kind not in ("ranking", "catalogue", "rating"):
        raise ValueError(f"{key!r} is not a metric an evaluation measures; pick one of {choices}")
    if found.k is not None and found.k not in ks:
        raise ValueError(
            f"{key!r} needs k={found.k} in evaluation.ks {ks}: no run would have it, so no champion would ever be registered; "
            f"add {found.k} to evaluation.ks or pick one of {[found.spec.key(k) for k in ks]}"
        )
    return found


# ----------------------------------------------------------------------------- evaluation from the registry


def per_user_metrics(
    recommended: np.ndarray,
    relevant: sp.spmatrix | sp.sparray,
    ks: list[int],
) -> dict[str, np.ndarray]:
    """One value per row of ``recommended`` for every per-user metric and k (``recall_at_{k}`` ...).

    Rows are the users (rows) of ``relevant`` that have at least one relevant item, in their
    order; the others have no value and no row. ``ranking_metrics`` is the mean of these
    arrays, so a per-user file and the logged means always agree.
    """
    rec = np.asarray(recommended)
    ks = m.check_ks(ks, rec)
    relevant = sp.csr_matrix(relevant, copy=True)
    relevant.sum_duplicates()
    relevant.eliminate_zeros()
    n_rel = np.diff(relevant.indptr)
    keep = n_rel > 0
    rec, relevant, n_rel = rec[keep], relevant[keep], n_rel[keep]
    hits = m.hit_matrix(rec, relevant) if len(rec) else np.zeros(rec.shape, dtype=bool)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        for spec in PER_USER:
            out[spec.key(k)] = spec.per_user(hits, n_rel, k)
    return out


def ranking_metrics(
    recommended: np.ndarray,
    relevant: sp.spmatrix | sp.sparray,
    ks: list[int],
    n_items: int,
) -> dict[str, float]:
    """Mean top-K metrics for every k in ``ks``, from one hit matrix.

    Keys: ``recall_at_{k}``, ``precision_at_{k}``, ``ndcg_at_{k}``, ``map_at_{k}``,
    ``hit_rate_at_{k}``, ``coverage_at_{k}``. Means are over the users (rows) with at least one
    relevant item; the others are dropped from every metric, coverage included. With no such
    user every value is NaN.
    """
    rec = np.asarray(recommended)
    ks = m.check_ks(ks, rec)
    relevant = sp.csr_matrix(relevant, copy=True)
    relevant.sum_duplicates()
    relevant.eliminate_zeros()
    keep = np.diff(relevant.indptr) > 0
    out: dict[str, float] = {}
    if not keep.any():
        for k in ks:
            for spec in (*PER_USER, COVERAGE):
                out[spec.key(k)] = float("nan")
        return out
    values = per_user_metrics(rec, relevant, ks)
    for k in ks:
        for spec in PER_USER:
            out[spec.key(k)] = float(values[spec.key(k)].mean())
        out[COVERAGE.key(k)] = m.coverage_at_k(rec[keep], n_items, k)
    return out
