"""Most-popular baseline: every user gets the items with the most training interactions."""

from __future__ import annotations

import numpy as np

from recflow.models.base import Recommender
from recflow.models.context import FitContext
from recflow.prep.interactions import Interactions


class PopularRecommender(Recommender):
    """Ranks items by their true number of training interactions; ties go to the lower index.

    Unlike RecBole's ``Pop`` (which counts batches containing an item, see
    ``shared/notes/anchors.md``) every interaction counts once. Ratings are not weighted.
    """

    name = "popular"
    #: trivially: every user, known or not, gets the same counts
    folds_in_history = True

    def __init__(self) -> None:
        pass

    def fit(self, train: Interactions, context: FitContext | None = None) -> PopularRecommender:
        self.item_counts_ = np.bincount(train.item_idx, minlength=train.n_items).astype(np.int64)
        self._remember_seen(train)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        self._check_fitted()
        users = np.asarray(users).reshape(-1)
        # float32 holds counts exactly up to 2**24, far above any MovieLens item's count
        return np.tile(self.item_counts_.astype(np.float32), (len(users), 1))

    def _score_history(self, X) -> np.ndarray:
        return np.tile(self.item_counts_.astype(np.float32), (X.shape[0], 1))

    def _state(self) -> dict[str, np.ndarray]:
        return {"item_counts": self.item_counts_}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.item_counts_ = arrays["item_counts"].astype(np.int64)
