"""item2vec: skip-gram item vectors from each user's time-ordered liked items (Barkan & Koenigstein 2016)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from recflow.models.context import FitContext
from recflow.models.embeddings import ItemVectorRecommender
from recflow.models.search_space import Choice, Dimension, IntRange
from recflow.prep.interactions import Interactions
from recflow.prep.sampling import liked_sequences


class Item2VecRecommender(ItemVectorRecommender):
    """gensim Word2Vec (skip-gram, negative sampling) on ``liked_sequences(train, min_rating)``.

    A warm fit trains the sentences of the users with a new row tonight plus ``warm_replay`` others per
    such sentence (``recflow.models.embeddings``).

    One sentence per user: the items they rated ``>= min_rating``, in time order (ties by item
    index), tokens ``str(item_idx)``; a one-item sentence trains nothing and is skipped. Precomputed
    sentences are taken from ``context.samples/sequences.parquet`` when that file was made from
    this train part with the same ``min_rating`` (``recflow.prep.sample_files.load_matching``).

    Defaults are tuned on ML-1M (RecBole protocol): ``scoring="in_out"`` (input-input cosine gets
    Recall@10 0.01-0.03 with window 5; it needs a window of ~50, i.e. the whole liked set as
    context, and 10x the fit time to reach the in-out score) and ``sample=0`` (down-sampling
    frequent items, gensim's 1e-3, cost about 0.01 Recall@10). Scoring, ``similar_items``,
    determinism and persistence: ``recflow.models.embeddings``.
    """

    name = "item2vec"
    sample_output = "sequences"

    search_space: ClassVar[dict[str, Dimension]] = {
        "window": IntRange(2, 20, log=True),
        "negative": IntRange(2, 15),
        "epochs": IntRange(5, 30),
        "sample": Choice((0.0, 1e-4, 1e-3)),
        "min_rating": Choice((0.0, 3.0, 4.0)),
        "scoring": Choice(("in_out", "cosine")),
    }

    def __init__(
        self,
        dim: int = 64,
        window: int = 5,
        min_count: int = 1,
        epochs: int = 10,
        negative: int = 5,
        sample: float = 0.0,
        min_rating: float = 4.0,
        seed: int = 0,
        workers: int = 1,
        compute_loss: bool = False,
        scoring: str = "in_out",
        warm_replay: float | None = 1.0,
    ) -> None:
        self.dim = dim
        self.window = window
        self.min_count = min_count
        self.epochs = epochs
        self.negative = negative
        self.sample = sample
        self.min_rating = min_rating
        self.seed = seed
        self.workers = workers
        self.compute_loss = compute_loss
        self.scoring = scoring
        self.warm_replay = warm_replay

    def fit(self, train: Interactions, context: FitContext | None = None) -> Item2VecRecommender:
        return super().fit(train, context)

    def sampling_needs(self) -> dict[str, dict]:
        return {"sequences": {"min_rating": self.min_rating}}

    def _changed_sentences(self, sentences: list[np.ndarray], train: Interactions, warm) -> np.ndarray:
        """A sentence is a user's liked items: it changed when the user has a new row tonight."""
        if len(sentences) != train.n_users:  # not one per user (a precomputed file of another layout): by item
            return super()._changed_sentences(sentences, train, warm)
        return warm.changed_users(train)

    def _sentences(self, train: Interactions, context: FitContext | None) -> list[np.ndarray]:
        seqs = self._precomputed(train, context, {"min_rating": self.min_rating})
        return seqs if seqs is not None else liked_sequences(train, min_rating=self.min_rating)
