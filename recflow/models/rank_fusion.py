"""Reciprocal-rank fusion of other fitted models (Cormack, Clarke & Buettcher, SIGIR 2009).

An ensemble that learns nothing of its own: ``fit`` takes its members already fitted, from
``context.members`` (the pipeline loads them from their own cached ``train`` folders, so an
ensemble never refits a member), and ``score`` sums, per item, each member's weighted reciprocal
rank:

    score(u, i) = sum_m  w_m / (k + rank_m(u, i))        rank_m = 1 for member m's best item

Ranks rather than scores, because the members' scores live on unrelated scales (EASE's
regression outputs, user_cf's neighbour votes, two_tower's cosines): no calibration is needed and
one member cannot drown the others. Each member ranks only the items the user has not seen, so an
unseen item's rank does not depend on how a member scores the user's history (seen items get 0;
recommend masks them anyway), and only its ``depth`` best count: at 59k items a full sort per
member and user batch would cost more than the members' scoring, a partial one is linear, and the
fused top 10 never reaches that deep (ML-1M validation, seed 2020: depth 100, 200, 500 and the
full ranking give the same Recall@10 and NDCG@10 to four decimals). An item a member scores
``-inf`` ("never recommend") gets nothing from it, and ``-inf`` from the ensemble only when every
member says so. A small ``k`` (10) favours the members' top items; Cormack et al.'s 60 flattens
the curve and measured smaller gains on ML-1M's validation part.

The saved folder holds each member's own saved folder (``members/<name>``), so a fitted ensemble
loads, serves and is logged to MLflow on its own, like any other model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from recflow.models.base import Recommender
from recflow.models.context import FitContext
from recflow.prep.interactions import Interactions

MEMBERS_DIR = "members"


class RankFusionRecommender(Recommender):
    """Weighted reciprocal-rank fusion of the rankings of other fitted models (``members``, by name).

    ``weights``: one per member, default equal; ``k``: the rank offset (``k`` >= 0); ``depth``: how
    many of each member's best items count (None: all of them).
    """

    name = "rank_fusion"

    def __init__(self, members: tuple[str, ...], weights: tuple[float, ...] | None = None, k: float = 10.0, depth: int | None = 100) -> None:
        self.members = tuple(members)
        self.weights = None if weights is None else tuple(float(w) for w in weights)
        self.k = k
        self.depth = depth
        self._check_params()

    def _check_params(self) -> None:
        """Refused when the config is loaded (``build_model`` constructs the model), not after its members trained."""
        if not self.members:
            raise ValueError("rank_fusion needs at least one member")
        if len(set(self.members)) != len(self.members):
            raise ValueError(f"rank_fusion lists a member twice: {list(self.members)}")
        if self.name in self.members:
            raise ValueError("rank_fusion cannot be its own member")
        if self.weights is not None:
            if len(self.weights) != len(self.members):
                raise ValueError(f"rank_fusion has {len(self.weights)} weights for {len(self.members)} members")
            if any(not np.isfinite(w) or w <= 0 for w in self.weights):
                raise ValueError(f"rank_fusion weights must be positive, got {list(self.weights)}")
        if not np.isfinite(self.k) or self.k < 0:
            raise ValueError(f"rank_fusion k must be >= 0, got {self.k}")
        if self.depth is not None and self.depth < 1:
            raise ValueError(f"rank_fusion depth must be >= 1 (or null: every item), got {self.depth}")

    def member_names(self) -> tuple[str, ...]:
        return self.members

    def fit(self, train: Interactions, context: FitContext | None = None) -> RankFusionRecommender:
        given = (context.members if context is not None else None) or {}
        missing = [name for name in self.members if name not in given]
        if missing:
            raise ValueError(f"rank_fusion needs its members fitted in context.members; missing: {missing}")
        for name in self.members:
            seen = given[name]._seen
            if seen is None or seen.shape != train.seen.shape or (seen != train.seen).nnz:
                raise ValueError(f"rank_fusion member {name!r} was not fitted on this training data")
        self.members_ = {name: given[name] for name in self.members}
        self._remember_seen(train)
        return self

    def member_weights(self) -> np.ndarray:
        return np.ones(len(self.members)) if self.weights is None else np.asarray(self.weights, dtype=np.float64)

    def score(self, users: np.ndarray) -> np.ndarray:
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        n_items = self.n_items
        depth = n_items if self.depth is None else min(int(self.depth), n_items)
        seen = self._seen[users].toarray() > 0
        rows = np.arange(len(users))[:, None]
        fused = np.zeros((len(users), n_items), dtype=np.float64)
        reached = np.zeros((len(users), n_items), dtype=bool)
        for (name, member), weight in zip(self.members_.items(), self.member_weights(), strict=True):
            scores = np.asarray(member.score(users), dtype=np.float32)
            if not scores.flags.writeable:
                scores = scores.copy()
            if np.isnan(scores).any():
                raise ValueError(f"rank_fusion member {name!r} scored NaN")
            reached |= scores > -np.inf
            scores[seen] = -np.inf  # only the items the user has not seen are ranked
            top = _top(scores, depth)  # (users, depth) item indices, best first
            ranked = np.take_along_axis(scores, top, axis=1) > -np.inf
            fused[rows, top] += np.where(ranked, weight / (self.k + np.arange(1, depth + 1)), 0.0)
        return np.where(reached, fused, -np.inf).astype(np.float32)

    # -- persistence: the members' own folders inside this one ------------------------------
    def save(self, path: str | Path) -> None:
        super().save(path)
        folder = Path(path) / MEMBERS_DIR
        shutil.rmtree(folder, ignore_errors=True)
        for name, member in self.members_.items():
            member.save(folder / name)

    @classmethod
    def load(cls, path: str | Path) -> RankFusionRecommender:
        from recflow.models import load_model  # the registry imports this module

        model = super().load(path)
        model.members_ = {name: load_model(Path(path) / MEMBERS_DIR / name) for name in model.members}
        return model

    def _state(self) -> dict[str, np.ndarray]:
        return {}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        pass

    def get_params(self) -> dict:
        params = super().get_params()
        return {**params, "members": list(self.members), "weights": None if self.weights is None else list(self.weights)}


def _top(scores: np.ndarray, depth: int) -> np.ndarray:
    """Each row's ``depth`` best columns, best first, ties to the lower index (also at the cut).

    Linear per row for ``depth`` < columns: the depth-th best value by ``np.partition``, the columns
    above it, then the lowest-indexed columns equal to it to fill the row; only those are sorted.
    """
    n_rows, n = scores.shape
    if depth >= n:
        return np.argsort(-scores, axis=1, kind="stable")
    cut = -np.partition(-scores, depth - 1, axis=1)[:, depth - 1 : depth]
    above = scores > cut
    tied = scores == cut
    keep = above | (tied & (np.cumsum(tied, axis=1) <= depth - above.sum(axis=1, keepdims=True)))
    part = np.nonzero(keep)[1].reshape(n_rows, depth)  # ascending column index in each row
    order = np.lexsort((part, -np.take_along_axis(scores, part, axis=1)), axis=1)
    return np.take_along_axis(part, order, axis=1)
