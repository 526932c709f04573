"""Recommenders built on item vectors learned by skip-gram (gensim Word2Vec) over item "sentences".

``ItemVectorRecommender`` holds everything item2vec and DeepWalk share; a subclass only says
which sentences to train on (``_sentences``). Skip-gram with negative sampling learns two
vectors per item: the input ("word") vector ``v_i`` and the output ("context") vector ``c_i``.

* An item without a vector (in no sentence of >= 2 tokens, or below ``min_count``) gets a zero
  row in ``item_embeddings()`` and ``has_vector_[i] = False``; it scores ``-inf`` (never
  recommended, never similar) rather than 0, which would rank it above every item with a
  negative score.
* A user's vector ``u`` is the L2-normalised mean of the L2-normalised input vectors of the train
  items they liked (rating >= ``min_rating``) that have one, falling back to all their train
  items with a vector; a user with neither gets a zero vector (every item scores 0, so the ranking
  falls to the lowest item indices).
* ``scoring="cosine"``: ``score(u, i) = u . v_i / |v_i|``, the cosine of the user vector and the
  item's input vector. ``scoring="in_out"``: ``score(u, i) = u . c_i``, the skip-gram logit
  of "i appears in the context of the user's items". Input-input cosine measures *substitutes*
  (items seen in similar contexts) and, on MovieLens, ranks rare items whose contexts are the
  popular hubs first (near the centroid of every user); the in-out score predicts co-occurrence
  and keeps the popularity that negative sampling (unigram^0.75) leaves in ``c_i``. On MovieLens
  in-out ranks far better than cosine, so ``in_out`` is the models' default.
* ``similar_items`` (the base class's) ranks by input-input cosine among the items with a vector,
  the query item excluded.

Determinism: with ``workers=1`` and a fixed ``seed`` gensim gives bitwise identical vectors, also
across processes (its initial vectors and negative-sampling RNG are seeded from ``seed``; nothing
depends on Python's hash seed). With ``workers > 1`` the threads interleave their updates
differently run to run, so the vectors are not reproducible bit for bit.

Warm start (``warm_starts``): the vocabulary is built from tonight's sentences (their item counts,
``build_vocab_from_freq``: no pass of gensim over the text), then every item the earlier fit had a
vector for starts from its input and context vectors (new items: gensim's seeded draw), and
``warm_epochs`` epochs run (at least ``warm_min_epochs``, 2), with gensim's learning-rate schedule
restarted, over the sentences that changed tonight (``_changed_sentences``: item2vec, the users
with a new row; DeepWalk, the walks through an item with a new row) plus a seeded sample of
``warm_replay`` (default 1) unchanged sentences per changed one (``recflow.models.warm.replay_sample``;
``None``: every sentence, as before). Items in no trained sentence keep yesterday's vectors;
user vectors are recomputed for everyone from tonight's history. ``warm_fit_`` states the counts.
A warm fit's learning rate starts at ``warm_start_alpha`` (0.005, a fifth of gensim's 0.025) and
decays to gensim's ``min_alpha``: at the synthetic 2.5M shape, item2vec at gensim's 0.025 on the
few changed sentences pulled their items away from the rest (Recall@10 0.065-0.084, below the cold
fit's 95% CI [0.0789, 0.1150] in some runs), at 0.005-0.01 it stayed at 0.085-0.091 (``workers=2``:
not bitwise reproducible, so each figure is one draw).

Persistence: ``save`` writes ``params.json`` + ``arrays.npz`` (seen matrix, ``has_vector`` mask,
user vectors, context vectors) through ``Recommender.save`` and the input vectors as gensim
``KeyedVectors`` in the word2vec binary format (``vectors.bin``, ``save_word2vec_format``, keys
``str(item_idx)``), which stores float32 exactly and, unlike ``KeyedVectors.save``, unpickles
nothing on load. The Word2Vec training state is not kept (no further training after ``load``).
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from recflow.models.base import Recommender
from recflow.models.context import FitContext
from recflow.models.warm import replay_sample, warm_epochs
from recflow.prep.interactions import Interactions
from recflow.prep.sample_files import load_matching
from recflow.utils.numeric import normalise_rows

VECTORS_FILE = "vectors.bin"
SCORINGS = ("cosine", "in_out")


class ItemVectorRecommender(Recommender):
    """Skip-gram item vectors + mean-of-liked-items user vectors (module docstring for the rules).

    Subclasses set ``name`` and ``sample_output``, define ``__init__`` setting at least ``dim``,
    ``window``, ``min_count``, ``epochs``, ``negative``, ``sample``, ``min_rating``, ``seed``,
    ``workers``, ``compute_loss``, ``scoring`` and ``warm_replay``, and implement ``_sentences``.
    ``fit(train, context)`` trains and sets ``wv_`` (gensim ``KeyedVectors`` of the input
    vectors), ``item_vectors_`` / ``context_vectors_`` (n_items, dim), ``has_vector_``,
    ``user_vectors_`` and ``history_`` (per-epoch ``{"epoch", "loss"}`` when ``compute_loss``,
    the per-epoch difference of gensim's running loss, which is float32 and coarse on big
    corpora; empty otherwise). ``context.on_epoch_end(epoch, {"loss": ...})`` is called after each
    epoch (with ``{}`` without ``compute_loss``).
    """

    #: which ``recflow.prep.sampling`` output the subclass can take precomputed from ``context.samples``
    sample_output: ClassVar[str]
    item_spaces = ("items",)
    trains_in_epochs = True
    warm_starts = True
    warm_min_epochs = 2
    #: gensim's learning rate at the start of a warm fit (a cold fit starts at gensim's 0.025), decaying to its min_alpha
    warm_start_alpha: ClassVar[float] = 0.005

    dim: int
    window: int
    min_count: int
    epochs: int
    negative: int
    sample: float
    min_rating: float
    seed: int
    workers: int
    compute_loss: bool
    scoring: str
    warm_replay: float | None

    # -- what to train on ---------------------------------------------------------------
    @abstractmethod
    def _sentences(self, train: Interactions, context: FitContext | None) -> list[np.ndarray] | np.ndarray:
        """Item-index sentences (a list of int arrays, or a 2-D array padded with -1)."""

    # -- learning -------------------------------------------------------------------------
    def fit(self, train: Interactions, context: FitContext | None = None) -> ItemVectorRecommender:
        from gensim.models import KeyedVectors, Word2Vec
        from gensim.models.callbacks import CallbackAny2Vec

        self._check_params()
        warm = self._warm(context)
        corpus, counts = self._corpus(train, context, warm)

        self.history_: list[dict[str, Any]] = []
        history = self.history_
        on_epoch_end = context.on_epoch_end if context is not None else None
        compute_loss = bool(self.compute_loss)

        class _Epochs(CallbackAny2Vec):
            def __init__(self) -> None:
                self.epoch, self.previous = 0, 0.0

            def on_epoch_end(self, model) -> None:
                self.epoch += 1
                logs = {}
                if compute_loss:
                    total = float(model.get_latest_training_loss())  # cumulative within train()
                    logs = {"loss": total - self.previous}
                    self.previous = total
                    history.append({"epoch": self.epoch, **logs})
                if on_epoch_end is not None:
                    on_epoch_end(self.epoch, logs)

        epochs = int(self.epochs) if warm is None else warm_epochs(int(self.epochs), warm.share_new, self.warm_min_epochs)
        w2v = Word2Vec(
            vector_size=int(self.dim),
            window=int(self.window),
            min_count=int(self.min_count),
            sg=1,
            negative=int(self.negative),
            sample=float(self.sample),
            epochs=epochs,
            seed=int(self.seed),
            workers=int(self.workers),
        )
        if counts is not None and counts.any():  # warm: tonight's whole vocabulary, from its counts
            w2v.build_vocab_from_freq({str(i): int(c) for i, c in enumerate(counts) if c}, corpus_count=len(corpus))
        elif corpus:
            w2v.build_vocab(corpus)
        if warm is not None and len(w2v.wv):
            self._carry_vectors(w2v, warm)
        if len(w2v.wv):
            if corpus:  # a warm fit with nothing changed keeps the earlier vectors as they are
                w2v.train(
                    corpus,
                    total_examples=len(corpus),
                    epochs=w2v.epochs,
                    compute_loss=compute_loss,
                    callbacks=[_Epochs()],
                    **({} if warm is None else {"start_alpha": self.warm_start_alpha, "end_alpha": w2v.min_alpha}),
                )
            self.wv_ = w2v.wv
            out_vectors = np.asarray(w2v.syn1neg, dtype=np.float32)  # rows in wv_.index_to_key order
        else:  # nothing to learn from (no sentence of >= 2 tokens, or all below min_count)
            self.wv_ = KeyedVectors(vector_size=int(self.dim))
            out_vectors = np.zeros((0, int(self.dim)), dtype=np.float32)
        self._set_item_vectors(train.n_items)
        self.context_vectors_ = np.zeros_like(self.item_vectors_)
        if len(self.wv_):
            self.context_vectors_[self._keys()] = out_vectors
        self.user_vectors_ = self._user_vectors(train)
        self._remember_seen(train)
        return self

    def _corpus(self, train: Interactions, context: FitContext | None, warm) -> tuple[list[list[str]], np.ndarray | None]:
        """The sentences this fit trains on, as token lists, and (warm) tonight's item counts for the vocabulary.

        Cold: every sentence of >= 2 tokens (a lone token has no skip-gram context: it would keep its random
        init). Warm: the changed ones plus a seeded replay sample of the others (``warm_fit_`` says how many)."""
        tokens = np.array([str(i) for i in range(train.n_items)], dtype=object)
        sentences = [s[s >= 0] for s in map(np.asarray, self._sentences(train, context))]
        trained = np.array([len(s) >= 2 for s in sentences], bool)
        counts = None
        if warm is not None:
            counts = np.bincount(np.concatenate([s for s, t in zip(sentences, trained) if t] or [np.zeros(0, np.int64)]), minlength=train.n_items)
            changed = self._changed_sentences(sentences, train, warm) & trained
            picked = np.flatnonzero(trained)[replay_sample(changed[trained], self.warm_replay, np.random.default_rng(int(self.seed)))]
            self.warm_fit_ = {"changed_sentences": int(changed.sum()), "sentences_trained": len(picked), "of_sentences": int(trained.sum())}
            self.warm_fit_["warm_replay"] = self.warm_replay
        else:
            picked = np.flatnonzero(trained)
        return [tokens[sentences[k]].tolist() for k in picked], counts

    @staticmethod
    def _carry_vectors(w2v, warm) -> None:
        """Yesterday's input and context vectors into ``w2v``'s rows for every item that had one."""
        rows = np.array([int(k) for k in w2v.wv.index_to_key], dtype=np.int64)
        old = warm.item_map[rows]
        known = old >= 0
        known[known] = warm.model.has_vector_[old[known]]
        w2v.wv.vectors[known] = warm.model.item_vectors_[old[known]]
        w2v.syn1neg[known] = warm.model.context_vectors_[old[known]]

    def _changed_sentences(self, sentences: list[np.ndarray], train: Interactions, warm) -> np.ndarray:
        """Per sentence: whether tonight's new rows changed it (by default: it holds an item with a new row)."""
        touched = np.zeros(train.n_items, bool)
        touched[train.item_idx[warm.new_row]] = True
        return np.array([bool(touched[s].any()) for s in sentences], bool)

    def _check_params(self) -> None:
        if int(self.dim) < 1 or int(self.window) < 1 or int(self.epochs) < 1 or int(self.min_count) < 1:
            raise ValueError("dim, window, epochs and min_count must be >= 1")
        if int(self.negative) < 1:
            raise ValueError("negative must be >= 1 (skip-gram with negative sampling)")
        if int(self.workers) < 1:
            raise ValueError("workers must be >= 1")
        if self.scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {SCORINGS}, got {self.scoring!r}")

    def _keys(self) -> np.ndarray:
        return np.array([int(k) for k in self.wv_.index_to_key], dtype=np.int64)

    def _set_item_vectors(self, n_items: int) -> None:
        vectors = np.zeros((n_items, int(self.wv_.vector_size)), dtype=np.float32)
        has = np.zeros(n_items, dtype=bool)
        if len(self.wv_):
            keys = self._keys()
            if keys.min() < 0 or keys.max() >= n_items:
                raise ValueError(f"vector keys must be item indices in [0, {n_items})")
            vectors[keys] = self.wv_.vectors
            has[keys] = True
        self.item_vectors_ = vectors
        self.has_vector_ = has
        self._unit = normalise_rows(vectors)

    def _user_vectors(self, train: Interactions) -> np.ndarray:
        has = self.has_vector_[train.item_idx]
        liked = has & (train.ratings >= self.min_rating)

        def mean_of(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            m = sp.csr_matrix(
                (np.ones(int(mask.sum()), np.float32), (train.user_idx[mask], train.item_idx[mask])),
                shape=(train.n_users, train.n_items),
            )
            n = np.asarray(m.sum(axis=1)).ravel()
            return np.asarray(m @ self._unit), n

        vec, n = mean_of(liked)
        fallback = n == 0
        if fallback.any():
            vec_all, _ = mean_of(has)
            vec[fallback] = vec_all[fallback]
        return normalise_rows(vec)

    # -- scoring ----------------------------------------------------------------------------
    def _item_vectors(self, space: str) -> np.ndarray:
        """(n_items, dim) float32 raw skip-gram vectors; zero rows where ``has_vector_`` is False."""
        return self.item_vectors_.copy()

    def _item_valid(self, space: str) -> np.ndarray:
        return self.has_vector_.copy()

    def score(self, users: np.ndarray) -> np.ndarray:
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        items = self._unit if self.scoring == "cosine" else self.context_vectors_
        scores = self.user_vectors_[users] @ items.T
        scores[:, ~self.has_vector_] = -np.inf
        return np.ascontiguousarray(scores, dtype=np.float32)

    def dot_factors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``score`` as ``U @ V.T``: the user vectors against the context vectors (``in_out``) or the unit input vectors (``cosine``)."""
        self._check_fitted()
        V = self.context_vectors_ if self.scoring == "in_out" else normalise_rows(self.item_vectors_)
        return self.user_vectors_.astype(np.float32), V.astype(np.float32), self.has_vector_.astype(bool)

    # -- persistence -------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        return {"has_vector": self.has_vector_, "user_vectors": self.user_vectors_, "context_vectors": self.context_vectors_}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self._restored = arrays

    def save(self, path: str | Path) -> None:
        super().save(path)
        vec_file = Path(path) / VECTORS_FILE
        if len(self.wv_):
            self.wv_.save_word2vec_format(str(vec_file), binary=True)
        else:  # nothing learned: an empty file stands for "no vectors"
            vec_file.write_bytes(b"")

    @classmethod
    def load(cls, path: str | Path) -> ItemVectorRecommender:
        from gensim.models import KeyedVectors

        path = Path(path)
        model = super().load(path)
        arrays = model.__dict__.pop("_restored")
        vec_file = path / VECTORS_FILE
        if vec_file.stat().st_size:
            model.wv_ = KeyedVectors.load_word2vec_format(str(vec_file), binary=True)
        else:
            model.wv_ = KeyedVectors(vector_size=int(model.dim))
        model._set_item_vectors(model._seen.shape[1])
        if not np.array_equal(model.has_vector_, arrays["has_vector"].astype(bool)):
            raise ValueError(f"{vec_file} does not hold the vectors of the items recorded in arrays.npz")
        model.user_vectors_ = arrays["user_vectors"].astype(np.float32)
        model.context_vectors_ = arrays["context_vectors"].astype(np.float32)
        model.history_ = []
        return model

    # -- precomputed samples ---------------------------------------------------------------------
    def _precomputed(self, train: Interactions, context: FitContext | None, expected: dict[str, Any]):
        samples = context.samples if context is not None else None
        return load_matching(samples, self.sample_output, train, expected)
