"""The one contract every recommender honours (after scikit-learn and ``implicit``).

Hyperparameters go to ``__init__`` and nothing else is set there; ``fit`` learns from a train
``Interactions`` and returns ``self``. A subclass implements ``score`` (users x all items) and
inherits the batched, masked top-K of ``recommend``; rating models also implement ``_predict``.
Users and items are the dense indices of ``Interactions``; raw ids are mapped at the edges.

Capabilities are declared, never guessed (after scikit-learn's estimator tags and ``implicit``'s
ANN wrappers, which work on any model through its declared factors). What a model offers beyond
``score`` is stated on its class, readable before anything is fitted, and reached through the
base class's methods, so indexing, retrieval, serving and tracking need no ``hasattr`` and no
model name:

* ``item_spaces`` / ``user_space`` / ``similarity``: the named vector spaces it exposes
  (``vector_spaces()``), read with ``item_embeddings(space)`` / ``user_embeddings()``. The first
  item space is the primary one; ``similar_items`` ranks in any of them by its similarity.
* ``dot_factors()``: ``(U, V, valid)`` when its ranking score is a plain dot product.
* ``predict``: one rule for unknown indices, -1 means "unknown" and gets the model's fallback.
* ``framework_flavour`` / ``framework_model()``: a framework model (Keras) to log beside the npz.
* ``trains_in_epochs`` / ``epoch_budget()``: ``fit`` runs at most ``epochs`` epochs and reports
  each to ``context.on_epoch_end`` (a progress bar's length).
* ``member_names()``: the other models an ensemble combines; ``fit`` takes them already fitted
  from ``context.members`` (the pipeline trains them first and passes their cached fits).

A model declaring spaces implements the hooks ``_item_vectors(space)`` / ``_user_vectors()``
(and ``_item_valid(space)`` when "no vector" is not simply a zero row); the public methods add
the checks. ``tests/models/test_contract.py`` holds every registered model to all of this.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp

from recflow.models.context import FitContext
from recflow.models.search_space import Dimension
from recflow.prep.interactions import Interactions
from recflow.utils.numeric import cosine_neighbours, topk
from recflow.utils.progress import track


class NotFittedError(RuntimeError):
    pass


class NotSupported(NotImplementedError):
    """A capability the model does not declare (no vectors, no ratings, no framework model)."""


@dataclass(frozen=True)
class VectorSpace:
    """A named set of vectors a model exposes: one per item (or per user), compared by ``similarity``."""

    name: str
    entity: Literal["item", "user"]
    similarity: Literal["cosine"] = "cosine"


class Recommender(ABC):
    name: ClassVar[str]
    #: whether ``predict`` gives ratings (evaluated by RMSE / MAE)
    predicts_ratings: ClassVar[bool] = False
    #: the item vector spaces ``item_embeddings(space)`` gives, the primary first; () for none
    item_spaces: ClassVar[tuple[str, ...]] = ()
    #: whether ``user_embeddings()`` gives one vector per user
    user_space: ClassVar[bool] = False
    #: how the vectors of every space are compared (indexes and ``similar_items``)
    similarity: ClassVar[Literal["cosine"]] = "cosine"
    #: a framework model saved beside the npz that tracking logs in that flavour (``"keras"``), or None
    framework_flavour: ClassVar[str | None] = None
    #: bounds of ``__init__`` params as pydantic ``Field`` keywords (``{"reg": {"ge": 0}}``): a config
    #: out of them is an error when it loads, naming the key, not a training failure later
    param_bounds: ClassVar[dict[str, dict[str, float]]] = {}
    #: whether ``fit`` trains for at most ``epochs`` epochs, calling ``context.on_epoch_end`` after each
    trains_in_epochs: ClassVar[bool] = False
    #: the ``__init__`` parameters ``recflow tune`` searches, with their ranges; {} for none (not tunable)
    search_space: ClassVar[dict[str, Dimension]] = {}
    #: what ``fit`` recorded per epoch (a dict each: ``loss`` ..., ``examples_per_second`` where measured); () without epochs
    history_: Sequence[dict[str, Any]] = ()

    _seen: sp.csr_matrix | None = None

    # -- learning ---------------------------------------------------------------------
    @abstractmethod
    def fit(self, train: Interactions, context: FitContext | None = None) -> Recommender:
        """Learn from ``train``; ``context`` offers side tables, validation data and samples."""

    def member_names(self) -> tuple[str, ...]:
        """The models (by registered name) whose fits this one combines; () for a model that learns alone.

        An ensemble's ``fit`` reads them fitted on the same training data from ``context.members``;
        the pipeline trains them first and hands over their cached fits, never refitting one.
        """
        return ()

    def sampling_needs(self) -> dict[str, dict[str, Any]]:
        """Outputs of the sampling stage this model can reuse, with the settings it needs them made with.

        Keys are ``recflow.prep.sampling`` outputs (``triplets``, ``sequences``, ``walks``); the pipeline
        merges the needs of every enabled model into one cached sampling task.
        """
        return {}

    @abstractmethod
    def score(self, users: np.ndarray) -> np.ndarray:
        """Dense float32 scores, shape (len(users), n_items); higher is better.

        The result belongs to the caller (``recommend`` masks it in place): return a fresh
        array, not a view of fitted state. NaN is an error; ``-inf`` means "never recommend".
        """

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted ratings (float64) of (user, item) index pairs; only where ``predicts_ratings``.

        The rule for unknown indices is the same for every model: ``-1`` means "unknown" (a user or
        item outside the fitted index) and gets the model's fallback, which each model's docstring
        states (e.g. the global mean plus the known side's bias); any other index outside
        ``[0, n)`` is an ``IndexError``. ``users`` and ``items`` must have the same length.
        """
        if not self.predicts_ratings:
            raise NotSupported(f"{self.name} does not predict ratings")
        self._check_fitted()
        users, items = self._index_pairs(users, items)
        return self._predict(users, items)

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Ratings of checked 1-D int64 index pairs, ``-1`` where unknown (see ``predict``)."""
        raise NotSupported(f"{self.name} does not predict ratings")

    def _index_pairs(self, users, items) -> tuple[np.ndarray, np.ndarray]:
        """``predict``'s inputs as 1-D int64 arrays of one length, each index in ``[-1, n)``."""
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        if users.shape != items.shape:
            raise ValueError(f"users has {len(users)} entries but items has {len(items)}")
        for idx, n, what in ((users, self.n_users, "user"), (items, self.n_items, "item")):
            if idx.size and (idx.min() < -1 or idx.max() >= n):
                raise IndexError(f"{what} indices must lie in [0, {n}) or be -1 (unknown)")
        return users, items

    # -- vector spaces -----------------------------------------------------------------------
    @classmethod
    def vector_spaces(cls) -> list[VectorSpace]:
        """The spaces the class exposes (item spaces first, the primary one leading), before any fit."""
        spaces = [VectorSpace(name, "item", cls.similarity) for name in cls.item_spaces]
        if cls.user_space:
            spaces.append(VectorSpace("users", "user", cls.similarity))
        return spaces

    def item_embeddings(self, space: str | None = None) -> np.ndarray:
        """(n_items, dim) float32 vectors of an item space (default: the primary); zero rows: no vector."""
        name = self._item_space(space)
        self._check_fitted()
        return self._item_vectors(name)

    def user_embeddings(self) -> np.ndarray:
        """(n_users, dim) float32 user vectors, where ``user_space`` is declared."""
        if not self.user_space:
            raise NotSupported(f"{self.name} has no user vectors")
        self._check_fitted()
        return self._user_vectors()

    def similar_items(self, items, k: int = 10, space: str | None = None, batch_size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items nearest by the space's similarity to each query item, best first (ties: lower index).

        ``items``: one item index (1-D results) or an array of them ((n, k) results). The query and
        items without a vector in that space are never returned; a query without one, or a row with
        fewer candidates than ``k``, is padded with ``-1`` / ``-inf``.
        """
        name = self._item_space(space)
        self._check_fitted()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        scalar = np.ndim(items) == 0
        out_i, out_s = cosine_neighbours(self._item_vectors(name), np.asarray(items, dtype=np.int64).reshape(-1), int(k), self._item_valid(name), batch_size)
        return (out_i[0], out_s[0]) if scalar else (out_i, out_s)

    def dot_factors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``(U, V, valid)`` with ``score(u) == U[u] @ V.T`` (``-inf`` where not ``valid``), or None.

        Declared by models whose ranking score is a plain dot product, so serving can score
        without the model's code path (``recflow.retrieval.search`` checks them on real users).
        """
        return None

    def framework_model(self) -> Any:
        """The framework model (``framework_flavour``) for tracking to log."""
        raise NotSupported(f"{self.name} has no framework model")

    def epoch_budget(self) -> int | None:
        """The most epochs ``fit`` runs (its ``epochs``) when it ``trains_in_epochs``; None otherwise."""
        return int(self.epochs) if self.trains_in_epochs else None

    def _item_space(self, space: str | None) -> str:
        if not self.item_spaces:
            raise NotSupported(f"{self.name} has no item vectors (it declares no item_spaces)")
        if space is None:
            return self.item_spaces[0]
        if space not in self.item_spaces:
            raise ValueError(f"space must be one of {self.item_spaces}, got {space!r}")
        return space

    def _item_vectors(self, space: str) -> np.ndarray:
        """A fresh (n_items, dim) float32 array of a declared item space."""
        raise NotSupported(f"{self.name} declares item space {space!r} but does not implement _item_vectors")

    def _item_valid(self, space: str) -> np.ndarray:
        """Which items have a vector in ``space`` (default: the non-zero rows)."""
        return np.linalg.norm(self._item_vectors(space), axis=1) > 0

    def _user_vectors(self) -> np.ndarray:
        raise NotSupported(f"{self.name} declares user vectors but does not implement _user_vectors")

    # -- retrieval ---------------------------------------------------------------------
    def recommend(
        self,
        users: np.ndarray,
        k: int = 10,
        exclude_seen: bool = True,
        exclude: sp.csr_matrix | None = None,
        batch_size: int = 2048,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item indices and scores per user, best first.

        ``exclude_seen`` masks what the user rated in the data ``fit`` saw; ``exclude`` masks more
        (e.g. validation items at test time). Masked items get ``-inf`` and never rank above a
        real item; when fewer than ``k`` items remain the tail holds ``-1`` with score ``-inf``.
        """
        self._check_fitted()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        n_users, n_items = self.n_users, self.n_items
        if len(users) and (users.min() < 0 or users.max() >= n_users):
            # a negative index would silently wrap onto another user's seen row
            raise IndexError(f"user indices must lie in [0, {n_users}); cold users have no index")
        if exclude is not None:
            exclude = sp.csr_matrix(exclude)
            if exclude.shape != (n_users, n_items):
                raise ValueError(f"exclude has shape {exclude.shape}, expected {(n_users, n_items)}")
        k_eff = min(k, n_items)
        out_items = np.full((len(users), k), -1, dtype=np.int64)
        out_scores = np.full((len(users), k), -np.inf, dtype=np.float32)
        starts = range(0, len(users), batch_size)
        for start in track(starts, desc=f"{self.name}: ranking", min_total=4):
            batch = users[start : start + batch_size]
            scores = np.asarray(self.score(batch), dtype=np.float32)
            if scores.shape != (len(batch), n_items):
                raise ValueError(f"{type(self).__name__}.score returned shape {scores.shape}, expected {(len(batch), n_items)}")
            if not scores.flags.writeable:
                scores = scores.copy()
            if np.isnan(scores).any():
                raise ValueError(f"{type(self).__name__}.score returned NaN")
            if exclude_seen:
                _mask(scores, self._seen[batch])
            if exclude is not None:
                _mask(scores, exclude[batch])
            top = topk(scores, k_eff)
            top_scores = np.take_along_axis(scores, top, axis=1)
            top = np.where(np.isneginf(top_scores), -1, top)
            out_items[start : start + len(batch), :k_eff] = top
            out_scores[start : start + len(batch), :k_eff] = top_scores
        return out_items, out_scores

    # -- persistence (native formats, never pickle) ------------------------------------
    def save(self, path: str | Path) -> None:
        """Write ``params.json`` + ``arrays.npz`` (subclasses with other native formats override)."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "params.json").write_text(json.dumps({"name": self.name, "params": self.get_params()}, indent=2))
        arrays = dict(self._state())
        seen = self._seen.tocoo()
        arrays.update(_seen_row=seen.row, _seen_col=seen.col, _seen_shape=np.array(seen.shape))
        np.savez(path / "arrays.npz", **arrays)

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        path = Path(path)
        meta = json.loads((path / "params.json").read_text())
        if meta["name"] != cls.name:
            raise ValueError(f"{path} holds a {meta['name']!r} model, not {cls.name!r}")
        model = cls(**meta["params"])
        with np.load(path / "arrays.npz", allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        shape = tuple(arrays.pop("_seen_shape"))
        row, col = arrays.pop("_seen_row"), arrays.pop("_seen_col")
        model._seen = sp.csr_matrix((np.ones(len(row), np.float32), (row, col)), shape=shape)
        model._restore(arrays)
        return model

    def _state(self) -> dict[str, np.ndarray]:
        """Learned arrays to save; the inverse of ``_restore``."""
        raise NotImplementedError

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    # -- helpers -------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        import inspect

        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {n: getattr(self, n) for n in names}

    def _remember_seen(self, train: Interactions) -> None:
        self._seen = train.seen

    @property
    def n_items(self) -> int:
        self._check_fitted()
        return self._seen.shape[1]

    @property
    def n_users(self) -> int:
        self._check_fitted()
        return self._seen.shape[0]

    def _check_fitted(self) -> None:
        if self._seen is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() first")


def _mask(scores: np.ndarray, mask_rows: sp.csr_matrix) -> None:
    rows, cols = mask_rows.nonzero()
    scores[rows, cols] = -np.inf
