"""DeepWalk: skip-gram item vectors from random walks on the item co-like graph (Perozzi et al. 2014)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from recflow.models.context import FitContext
from recflow.models.embeddings import ItemVectorRecommender
from recflow.models.search_space import Choice, Dimension, IntRange
from recflow.prep.interactions import Interactions
from recflow.prep.sampling import random_walks


class DeepWalkRecommender(ItemVectorRecommender):
    """gensim Word2Vec (skip-gram, negative sampling) on ``recflow.prep.sampling.random_walks``.

    Graph (``recflow.prep.sampling.cooccurrence_graph``): items liked (rating >= ``min_rating``) by a
    common user are linked, weighted by the number of such users. ``window_cooccurrence=w`` (the
    default, 5) counts a pair only when the two items are at most ``w`` apart in the user's
    time-ordered liked sequence (the reference notebook used 1); ``None`` links every co-liked
    pair (``X^T X``), an almost complete graph on ML-1M whose walks mostly hop between the most
    popular items (Recall@10 about 0.08 against 0.17 with ``w = 5``). ``max_neighbors`` keeps each
    item's heaviest edges only (for large catalogues).

    Walks: ``walks_per_item`` walks of ``walk_length`` items start from every liked item, seeded by
    ``seed``; an item without neighbours yields a lone-item walk, which trains nothing, so the
    item has no vector. Precomputed walks are taken from ``context.samples/walks.parquet`` when
    they were made from this train part with the same ``min_rating``, ``walks_per_item``,
    ``walk_length``, ``window_cooccurrence`` and ``max_neighbors`` (as far as the file records
    them; ``recflow.prep.sample_files.load_matching``). Word2Vec's ``min_count`` is 1; ``sample=0`` (no
    down-sampling of frequent nodes) is the default because down-sampling the hubs cost about
    0.01 Recall@10 on ML-1M. Scoring (``in_out`` by default), ``similar_items``, determinism and
    persistence: ``recflow.models.embeddings``. A warm fit trains the walks through an item with a
    new row tonight plus ``warm_replay`` others per such walk (there: the graph's changed part).
    """

    name = "deepwalk"
    sample_output = "walks"

    search_space: ClassVar[dict[str, Dimension]] = {
        "walks_per_item": IntRange(5, 20),
        "walk_length": IntRange(10, 40),
        "window": IntRange(2, 10),
        "epochs": IntRange(2, 10),
        "window_cooccurrence": IntRange(1, 10),
        "min_rating": Choice((0.0, 3.0, 4.0)),
        "scoring": Choice(("in_out", "cosine")),
    }

    def __init__(
        self,
        dim: int = 64,
        walks_per_item: int = 10,
        walk_length: int = 20,
        window: int = 5,
        epochs: int = 5,
        negative: int = 5,
        min_rating: float = 4.0,
        seed: int = 0,
        workers: int = 1,
        sample: float = 0.0,
        window_cooccurrence: int | None = 5,
        max_neighbors: int | None = None,
        compute_loss: bool = False,
        scoring: str = "in_out",
        warm_replay: float | None = 1.0,
    ) -> None:
        self.dim = dim
        self.walks_per_item = walks_per_item
        self.walk_length = walk_length
        self.window = window
        self.epochs = epochs
        self.negative = negative
        self.min_rating = min_rating
        self.seed = seed
        self.workers = workers
        self.sample = sample
        self.window_cooccurrence = window_cooccurrence
        self.max_neighbors = max_neighbors
        self.compute_loss = compute_loss
        self.scoring = scoring
        self.warm_replay = warm_replay

    #: Word2Vec's min_count: every node a walk visits gets a vector
    min_count = 1

    def fit(self, train: Interactions, context: FitContext | None = None) -> DeepWalkRecommender:
        return super().fit(train, context)

    def sampling_needs(self) -> dict[str, dict]:
        return {"walks": {**self._walk_params(), "seed": self.seed}}

    def _walk_params(self) -> dict:
        return {
            "min_rating": self.min_rating,
            "walks_per_item": self.walks_per_item,
            "walk_length": self.walk_length,
            "window_cooccurrence": self.window_cooccurrence,
            "max_neighbors": self.max_neighbors,
        }

    def _sentences(self, train: Interactions, context: FitContext | None) -> np.ndarray:
        walks = self._precomputed(train, context, self._walk_params())
        if walks is not None:
            return walks
        return random_walks(train, seed=self.seed, **self._walk_params())
