"""The one contract every recommender honours (after scikit-learn and ``implicit``).

Hyperparameters go to ``__init__`` and nothing else is set there; ``fit`` learns from a train
``Interactions`` and returns ``self``. A subclass implements ``score`` (users x all items) and
inherits the batched, masked top-K of ``recommend``; rating models also implement ``predict``.
Users and items are the dense indices of ``Interactions``; raw ids are mapped at the edges.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from recflow.interactions import Interactions
from recflow.models.context import FitContext
from recflow.progress import track


class NotFittedError(RuntimeError):
    pass


class Recommender(ABC):
    name: ClassVar[str]
    #: whether ``predict`` gives ratings (evaluated by RMSE / MAE)
    predicts_ratings: ClassVar[bool] = False

    _seen: sp.csr_matrix | None = None

    # -- learning ---------------------------------------------------------------------
    @abstractmethod
    def fit(self, train: Interactions, context: FitContext | None = None) -> "Recommender":
        """Learn from ``train``; ``context`` offers side tables, validation data and samples."""

    def sampling_needs(self) -> dict[str, dict[str, Any]]:
        """Outputs of the sampling stage this model can reuse, with the settings it needs them made with.

        Keys are ``recflow.sampling`` outputs (``triplets``, ``sequences``, ``walks``); the pipeline
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
        raise NotImplementedError(f"{self.name} does not predict ratings")

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
    def load(cls, path: str | Path) -> "Recommender":
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


def topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` largest entries per row, sorted best first (ties: lower index).

    The tie rule holds at the cut too: among items tied with the ``k``-th score, the lowest
    indices are kept (``argpartition`` alone keeps an arbitrary subset of them). NaN ranks last.
    """
    scores = np.asarray(scores)
    n_rows, n = scores.shape
    if k <= 0:
        return np.empty((n_rows, 0), dtype=np.int64)
    if np.isnan(scores).any():
        scores = np.where(np.isnan(scores), -np.inf, scores)
    if k >= n:
        return np.argsort(-scores, axis=1, kind="stable")[:, :k]
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]  # k-th largest value per row
    chosen = scores > kth
    short = k - chosen.sum(axis=1)  # how many of the tied-with-kth items each row still needs
    tied = scores == kth
    n_tied = tied.sum(axis=1)
    excess = np.flatnonzero(n_tied > short)  # rows where only the lowest-index ties may go in
    if len(excess):
        t = tied[excess]
        t &= np.cumsum(t, axis=1, dtype=np.int32) <= short[excess, None]
        tied[excess] = t
    chosen |= tied
    part = np.nonzero(chosen)[1].reshape(n_rows, k).astype(np.int64)  # ascending index per row
    part_scores = np.take_along_axis(scores, part, axis=1)
    # order by score desc, then index asc, for deterministic ties
    order = np.lexsort((part, -part_scores), axis=1)
    return np.take_along_axis(part, order, axis=1)
