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
* ``warm_starts``: ``fit`` continues from an earlier fit of the same class when
  ``context.warm_start`` (a ``recflow.models.warm.WarmStart``) holds one: its state grown to the
  new ids, ``warm_epochs`` epochs where it trains in epochs. Without one it fits cold. The
  contract suite checks that a warm fit on old + new data is as good as a cold one.
* ``member_names()``: the other models an ensemble combines; ``fit`` takes them already fitted
  from ``context.members`` (the pipeline trains them first and passes their cached fits).
* ``folds_in_history`` / ``score_history(histories)``: the score of a user is a function of the
  items they interacted with, so a user outside the training data is scored from a list of items
  (a new user of the service, ``recflow api``'s ``POST /recommend``); folding in a training
  user's own training items gives that user's ``score``.

A model declaring spaces implements the hooks ``_item_vectors(space)`` / ``_user_vectors()``
(and ``_item_valid(space)`` when "no vector" is not simply a zero row); the public methods add
the checks. ``tests/models/test_contract.py`` holds every registered model to all of this.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
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
    #: whether ``fit`` continues from ``context.warm_start`` (an earlier fit of this class) when given one
    warm_starts: ClassVar[bool] = False
    #: after ``fit``: whether it continued from ``context.warm_start`` (False for a cold fit, or a warm start the model had to decline)
    warm_started_: bool = False
    #: after ``fit``: why a warm start the model was given could not be continued (the fit ran cold), where the model says; else None
    warm_declined_: str | None = None
    #: after a warm ``fit``: what it did, in the model's words (rows replayed, a closed form re-solved or not and why), for the train summary
    warm_fit_: dict | None = None
    #: a warm fit's fewest epochs (``recflow.models.warm.warm_epochs``), where it trains in epochs
    warm_min_epochs: ClassVar[int] = 1
    #: whether ``score_history`` scores any list of items (a user outside the training data), the model being a function of the history
    folds_in_history: ClassVar[bool] = False
    #: the ``__init__`` parameters ``recflow tune`` searches, with their ranges; {} for none (not tunable)
    search_space: ClassVar[dict[str, Dimension]] = {}
    #: what ``fit`` recorded per epoch (a dict each: ``loss`` ..., ``examples_per_second`` where measured); () without epochs
    history_: Sequence[dict[str, Any]] = ()

    _seen: sp.csr_matrix | None = None

    # -- learning ---------------------------------------------------------------------
    @abstractmethod
    def fit(self, train: Interactions, context: FitContext | None = None) -> Recommender:
        """Learn from ``train``; ``context`` offers side tables, validation data and samples."""

    #: parameters that change how a fit runs, never what it computes (threads, logging): they stay out
    #: of the fit's cache key, so ``verbose: true`` does not retrain a model
    execution_params: ClassVar[frozenset[str]] = frozenset()

    def catalogue_scope(self) -> str | None:
        """A sentence for the run summary when these parameters make the model rank only part of the
        catalogue (its metrics are still over the full ranking, but it never recommends the rest);
        None (the default) for a model that can recommend every item."""
        return None

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

    def score_history(self, histories: Sequence[Sequence[int]] | sp.spmatrix) -> np.ndarray:
        """Dense float32 scores, shape (len(histories), n_items), of users known only by their items.

        ``histories``: one list of item indices per user (order and repeats do not matter: a
        history is the set of items, as the binary train matrix holds it), or a (users x items)
        sparse matrix of them. Only where ``folds_in_history``; an item index outside
        ``[0, n_items)`` is an ``IndexError``. Folding in a training user's own training items
        gives that user's ``score`` (the contract suite checks it).
        """
        if not self.folds_in_history:
            raise NotSupported(f"{self.name} cannot score a user from a list of items (it does not declare folds_in_history)")
        self._check_fitted()
        return np.asarray(self._score_history(self._history_matrix(histories)), dtype=np.float32)

    def _history_matrix(self, histories: Sequence[Sequence[int]] | sp.spmatrix) -> sp.csr_matrix:
        """Histories as a binary float32 CSR (users x n_items), each index checked."""
        n_items = self.n_items
        if sp.issparse(histories):
            X = sp.csr_matrix(histories, dtype=np.float32)
            if X.shape[1] != n_items:
                raise ValueError(f"histories have {X.shape[1]} item columns, the model has {n_items} items")
            X.data[:] = 1.0
            return X
        rows = [np.unique(np.asarray(h, dtype=np.int64).reshape(-1)) for h in histories]
        cols = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        if len(cols) and (cols.min() < 0 or cols.max() >= n_items):
            raise IndexError(f"item indices must lie in [0, {n_items})")
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(r) for r in rows], out=indptr[1:])
        return sp.csr_matrix((np.ones(len(cols), np.float32), cols, indptr), shape=(len(rows), n_items))

    def _score_history(self, X: sp.csr_matrix) -> np.ndarray:
        """Scores of the binary history rows ``X`` (users x n_items), where ``folds_in_history``."""
        raise NotSupported(f"{self.name} declares folds_in_history but does not implement _score_history")

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

    def warm_start_refusal(self) -> str | None:
        """Why this instance fits cold although its class ``warm_starts`` (a parameter that rules it
        out), or None. Stated in the train summary, never silent."""
        return None if self.warm_starts else f"{self.name} does not warm-start (it declares no warm_starts)"

    def _warm(self, context: FitContext | None):
        """The ``WarmStart`` this fit continues from, or None (a cold fit); checks it holds this class."""
        self.warm_started_ = False
        self.warm_fit_ = None
        warm = context.warm_start if context is not None else None
        if warm is None or self.warm_start_refusal() is not None:
            return None
        if type(warm.model) is not type(self):
            raise TypeError(f"{self.name} cannot warm-start from a {type(warm.model).__name__}")
        if warm.model.get_params() != self.get_params():
            raise ValueError(f"{self.name} can warm-start only from a fit with the same parameters: {warm.model.get_params()} != {self.get_params()}")
        self.warm_started_ = True
        return warm

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
        arrays = read_arrays(path / "arrays.npz", mmap=_MEMORY_MAPPED.get())
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


#: under ``memory_mapped()``, arrays of at least this many bytes are mapped, not read
MMAP_MIN_BYTES = 1 << 20
_MEMORY_MAPPED: ContextVar[bool] = ContextVar("recflow_models_memory_mapped", default=False)


@contextmanager
def memory_mapped() -> Iterator[None]:
    """Models loaded inside map their large arrays read-only from ``arrays.npz`` instead of reading them.

    For a process that scores a few users and exits (``recflow recommend``): EASE's items x items
    ``B`` then costs the pages of the user's rows, not the whole matrix (378 MB at 9,724 items).
    Opt-in, because a mapped file must not be rewritten in place while the model lives (stage
    folders never are: they are written aside and renamed).
    """
    token = _MEMORY_MAPPED.set(True)
    try:
        yield
    finally:
        _MEMORY_MAPPED.reset(token)


def read_arrays(path: Path, mmap: bool = False) -> dict[str, np.ndarray]:
    """The arrays of an ``np.savez`` file; with ``mmap``, uncompressed members of ``MMAP_MIN_BYTES`` or more as read-only memmaps."""
    if not mmap:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    import struct
    import zipfile

    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        for info in zf.infolist():
            name = info.filename.removesuffix(".npy")
            if info.compress_type == zipfile.ZIP_STORED and info.file_size >= MMAP_MIN_BYTES:
                fh.seek(info.header_offset)
                local = fh.read(30)  # the member's local header: its name and extra field come next
                name_len, extra_len = struct.unpack("<HH", local[26:30])
                fh.seek(info.header_offset + 30 + name_len + extra_len)
                version = np.lib.format.read_magic(fh)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read_header(fh)
                if not dtype.hasobject:
                    out[name] = mapped = np.memmap(path, dtype=dtype, mode="r", offset=fh.tell(), shape=shape, order="F" if fortran else "C")
                    _no_readahead(mapped)
                    continue
            with zf.open(info) as member:
                out[name] = np.lib.format.read_array(member, allow_pickle=False)
    return out


def _no_readahead(mapped: np.memmap) -> None:
    """Rows are read scattered (a user's items): without this the kernel reads ahead around every
    touched row, about 1.3 MB a row (200 MB for one ML-latest-small user's 160 rows of EASE's B)."""
    import mmap

    handle = getattr(mapped, "_mmap", None)
    if handle is not None and hasattr(handle, "madvise") and hasattr(mmap, "MADV_RANDOM"):
        handle.madvise(mmap.MADV_RANDOM)


def spread_items(sub: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """Scores over a subset ``items`` of the catalogue (columns of ``sub``) spread to all ``n_items``:
    ``-inf`` (never recommended) for the items a model was not fitted on; ``sub`` itself when it covers all."""
    if len(items) == n_items:
        return sub
    out = np.full((len(sub), n_items), -np.inf, dtype=np.float32)
    out[:, items] = sub
    return out


def _mask(scores: np.ndarray, mask_rows: sp.csr_matrix) -> None:
    rows, cols = mask_rows.nonzero()
    scores[rows, cols] = -np.inf
