"""What a model may use besides the training interactions.

``fit(train, context)`` keeps the estimator contract (hyperparameters in ``__init__``, data in
``fit``) while letting feature-based models reach the side tables. Everything here is derived
from the training split or from item/user metadata, never from test interactions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from recflow.prep.interactions import Interactions

if TYPE_CHECKING:  # annotations only: a model loaded to answer a query imports no pandas
    import pandas as pd

    from recflow.models.base import Recommender
    from recflow.models.warm import WarmStart


@dataclass
class FitContext:
    #: validation interactions (same indices as train): early stopping, per-epoch metrics
    valid: Interactions | None = None
    #: feature tables of the features stage (raw ``user_id`` / ``item_id`` columns), train-only
    user_features: pd.DataFrame | None = None
    item_features: pd.DataFrame | None = None
    #: catalogue: item_id, title, year, genres (list of str)
    items: pd.DataFrame | None = None
    #: demographics where the release has them: user_id, gender, age, occupation, zip_code
    users: pd.DataFrame | None = None
    #: free-text tags (user_id, item_id, tag, timestamp) and the TMDB join (item_id, overview, ...)
    tags: pd.DataFrame | None = None
    tmdb: pd.DataFrame | None = None
    #: the sampling stage's folder: triplets.parquet, sequences.parquet, walks.parquet
    samples: Path | None = None
    #: called after each epoch with (epoch, {metric: value}); the train task logs these with ``step``
    on_epoch_end: Callable[[int, dict], None] | None = None
    #: an ensemble's members (``member_names()``), fitted on the same train, by name
    members: dict[str, Recommender] | None = None
    #: an earlier fit of this model on a prefix of the data, for a model that ``warm_starts``
    warm_start: WarmStart | None = None
