"""The query side of serving: ``Retriever`` answers ``recommend`` and ``similar`` from the files
``recflow.retrieval.build`` writes (a catalogue folder, an index folder per model, maybe a saved model).

NumPy, pyarrow and faiss / hnswlib only, never TensorFlow or MLflow: the CLI and the MLflow
pyfunc both call ``Retriever.from_sources`` on the same files, so they give the same answers,
and a query starts fast. How an index folder answers is decided when it is built (its
``recommend_via``): ``index`` (nearest items to the user's vector in the primary space's
index), ``dot`` (the exact product of exported factors) or ``model`` (the saved model scores).

``recommend`` ranks the items a user has not rated anywhere in the split (train, valid or test:
the catalogue's ``seen``); ``similar`` finds the title (``recflow.retrieval.titles``) and its nearest
items by cosine in one space.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from recflow.retrieval.index import VectorIndex
from recflow.utils.numeric import top_k

ITEMS_FILE = "items.parquet"
USERS_FILE = "users.parquet"
SEEN_INDPTR = "seen_indptr.npy"
SEEN_ITEMS = "seen_items.npy"
SPACES_DIR = "spaces"
SCORER_DIR = "scorer"
ROWS_FILE = "rows.parquet"
VECTORS_FILE = "vectors.npy"
SUMMARY_FILE = "summary.json"


class RetrievalError(LookupError):
    """A query that cannot be answered; the message says why and what to try."""


class UnknownUser(RetrievalError):
    pass


class NoVector(RetrievalError):
    pass


class NotServable(RetrievalError):
    pass


class UnknownItem(RetrievalError):
    """An item id the catalogue does not hold; ``suggestions`` are the nearest ids it does."""

    def __init__(self, message: str, suggestions: list[int]) -> None:
        self.suggestions = suggestions
        super().__init__(message)


def int_column(table, name: str) -> np.ndarray:
    """An integer column of a pyarrow table as int64, read from its buffer: pyarrow's ``to_numpy`` (and ``pq.read_table``,
    through ``pyarrow.dataset``) import pandas, half a second of a ``recflow recommend`` that needs none of it."""
    column = table.column(name).combine_chunks()
    if column.null_count == 0 and column.type.bit_width in (8, 16, 32, 64) and str(column.type).startswith(("int", "uint")):
        dtype = np.dtype(str(column.type))
        return np.frombuffer(column.buffers()[1], dtype=dtype, count=len(column), offset=column.offset * dtype.itemsize).astype(np.int64)
    return np.asarray(column.to_pylist(), dtype=np.int64)


class Catalogue:
    """The catalogue folder of ``build_catalogue``, read for queries."""

    def __init__(self, folder: str | Path) -> None:
        import pyarrow.parquet as pq

        folder = Path(folder)
        for name in (ITEMS_FILE, USERS_FILE, SEEN_INDPTR, SEEN_ITEMS):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name}: catalogue file missing (rerun `recflow run`)")
        items = pq.ParquetFile(folder / ITEMS_FILE).read(columns=["item_id", "title", "train_count"])
        self.item_ids = int_column(items, "item_id")
        self.titles = np.asarray(items["title"].to_pylist(), dtype=object)
        self.train_count = int_column(items, "train_count")
        users = pq.ParquetFile(folder / USERS_FILE).read(columns=["user_id", "train_count"])
        self.user_ids = int_column(users, "user_id")
        self.user_train_count = int_column(users, "train_count")
        # plain ndarray views of the memory maps: slicing an np.memmap runs Python code per query
        self.seen_indptr = np.load(folder / SEEN_INDPTR, mmap_mode="r", allow_pickle=False).view(np.ndarray)
        self.seen_items = np.load(folder / SEEN_ITEMS, mmap_mode="r", allow_pickle=False).view(np.ndarray)
        if len(self.seen_indptr) != len(self.user_ids) + 1:
            raise ValueError(f"{folder / SEEN_INDPTR}: {len(self.seen_indptr) - 1} users, {USERS_FILE} has {len(self.user_ids)}")

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def user_index(self, user_id: int) -> int:
        """Dense index of a raw user id; -1 when unknown."""
        pos = int(np.searchsorted(self.user_ids, user_id))
        return pos if pos < self.n_users and self.user_ids[pos] == user_id else -1

    def item_index(self, item_ids) -> np.ndarray:
        """Dense indices of raw item ids (int64 array); -1 where unknown."""
        ids = np.asarray(item_ids, dtype=np.int64).reshape(-1)
        pos = np.minimum(np.searchsorted(self.item_ids, ids), max(self.n_items - 1, 0))
        return np.where(self.item_ids[pos] == ids, pos, -1) if self.n_items else np.full(len(ids), -1, np.int64)

    def nearest_item_ids(self, item_id: int, n: int = 5) -> list[int]:
        """The ``n`` catalogue ids closest in value to an unknown id (what an error suggests)."""
        order = np.argsort(np.abs(self.item_ids - int(item_id)), kind="stable")[:n]
        return [int(i) for i in self.item_ids[np.sort(order)]]

    def seen(self, user: int) -> np.ndarray:
        """The items the user rated anywhere in the split, ascending (``build_catalogue`` writes them sorted)."""
        return np.asarray(self.seen_items[self.seen_indptr[user] : self.seen_indptr[user + 1]], dtype=np.int64)

    @cached_property
    def popular(self) -> np.ndarray:
        """Item indices by training count, most first (ties: lower index)."""
        return np.lexsort((np.arange(self.n_items), -self.train_count))

    @cached_property
    def title_index(self):
        from recflow.retrieval.titles import TitleIndex

        return TitleIndex(self.titles, self.train_count)


def in_sorted(values: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Which ``values`` are in the ascending array ``pool`` (a user's seen items): one binary search each,
    several times cheaper than ``np.isin`` (which sorts both) for a query's few dozen candidates."""
    if not len(pool):
        return np.zeros(len(values), bool)
    pos = np.searchsorted(pool, values)
    return pool[np.minimum(pos, len(pool) - 1)] == values


@dataclass
class Answer:
    """A ranked list of items and what produced it."""

    query: str
    item_idx: np.ndarray
    item_ids: np.ndarray
    titles: list[str]
    scores: np.ndarray
    model: str
    via: str
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"rank": r + 1, "item_id": int(i), "title": t, "score": float(s)}
            for r, (i, t, s) in enumerate(zip(self.item_ids.tolist(), self.titles, self.scores.tolist()))
        ]


class ItemSpace:
    """One indexed space of an index folder: the chosen index, its rows and unit vectors."""

    def __init__(self, folder: Path, name: str, info: dict[str, Any], n_items: int) -> None:
        import pyarrow.parquet as pq

        self.name = name
        self.info = info
        self.kind = info["kind"]
        base = Path(folder) / SPACES_DIR / name
        self.index = VectorIndex.load(base, info["index"])
        self.item_idx = int_column(pq.ParquetFile(base / ROWS_FILE).read(columns=["index"]), "index")
        self.vectors = np.load(base / VECTORS_FILE, mmap_mode="r", allow_pickle=False)
        self.row_of = np.full(n_items, -1, dtype=np.int64)
        self.row_of[self.item_idx] = np.arange(len(self.item_idx))

    def nearest(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(item indices, cosines) of the ``k`` nearest rows to a (unit) vector."""
        rows, scores = self.index.search(np.asarray(vector, dtype=np.float32)[None, :], k)
        ok = rows[0] >= 0
        return self.item_idx[rows[0][ok]], scores[0][ok]


class IndexFolder:
    """An ``index`` stage folder: its summary, spaces (loaded on demand) and exported scorer."""

    def __init__(self, folder: str | Path, n_items: int) -> None:
        self.folder = Path(folder)
        path = self.folder / SUMMARY_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: index summary missing (rerun `recflow run`)")
        self.summary = json.loads(path.read_text())
        self.n_items = n_items
        self._spaces: dict[str, ItemSpace] = {}

    @property
    def model(self) -> str:
        return self.summary["model"]

    def item_spaces(self) -> list[str]:
        return [name for name, s in self.summary["spaces"].items() if s["entity"] == "item"]

    def primary(self) -> str | None:
        p = self.summary.get("primary")
        return p if p in self.item_spaces() else None

    def space(self, name: str) -> ItemSpace:
        if name not in self._spaces:
            self._spaces[name] = ItemSpace(self.folder, name, self.summary["spaces"][name], self.n_items)
        return self._spaces[name]


class Retriever:
    """Answers ``recommend`` and ``similar`` from a catalogue, an index folder and (maybe) a model folder.

    ``sources``: ``catalogue`` (folder), ``index`` (index folder of the recommending model, if it
    has one), ``model`` (its saved model, needed when ``recommend_via`` is ``model``),
    ``similar_index`` (index folder for ``similar``, default ``index``). ``info``: at least
    ``recommend_model``; ``similar_model`` names the model behind ``similar_index``.
    """

    def __init__(self, sources: Mapping[str, str | Path | None], info: Mapping[str, Any]) -> None:
        self.sources = {k: Path(v) for k, v in sources.items() if v is not None}
        self.info = dict(info)
        self.catalogue = Catalogue(self.sources["catalogue"])
        self.recommend_model = str(info["recommend_model"])
        self.similar_model = info.get("similar_model")

    @classmethod
    def from_sources(cls, sources: Mapping[str, str | Path | None], info: Mapping[str, Any] | None = None) -> Retriever:
        """``info`` defaults to the JSON file at ``sources["bundle"]`` (how the pyfunc passes it)."""
        if info is None:
            info = json.loads(Path(sources["bundle"]).read_text())
        return cls(sources, info)

    # -- loading on demand (each command touches only what it needs) ---------------------
    @cached_property
    def _index(self) -> IndexFolder | None:
        path = self.sources.get("index")
        return IndexFolder(path, self.catalogue.n_items) if path else None

    @cached_property
    def _similar_index(self) -> IndexFolder | None:
        path = self.sources.get("similar_index")
        return IndexFolder(path, self.catalogue.n_items) if path else self._index

    @cached_property
    def recommend_via(self) -> str:
        return self._index.summary.get("recommend_via", "model") if self._index is not None else "model"

    @cached_property
    def _user_factors(self) -> np.ndarray:
        U = np.load(self._index.folder / SCORER_DIR / "user_factors.npy", mmap_mode="r", allow_pickle=False).view(np.ndarray)
        if U.shape[0] != self.catalogue.n_users:
            raise ValueError(f"{self._index.folder / SCORER_DIR}: {U.shape[0]} user rows, the catalogue has {self.catalogue.n_users} users")
        return U

    @cached_property
    def _model(self) -> Any:
        path = self.sources.get("model")
        if path is None:
            raise NotServable(f"{self.recommend_model}: no saved model in this bundle to score with")
        from recflow.models import load_model
        from recflow.models.base import memory_mapped

        with memory_mapped():  # a query reads the pages it scores with (EASE: the user's rows of B), not every array
            return load_model(path)

    # -- recommend -------------------------------------------------------------------------
    def recommend(self, user_id: int, k: int = 10, fallback: str | None = None, exclude_seen: bool = True) -> Answer:
        """Top-``k`` items the user has not rated, best first; cold or unknown users get
        ``UnknownUser`` unless ``fallback == "popular"``. ``exclude_seen=False`` ranks the rated items too."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if fallback not in (None, "", "none", "popular"):
            raise ValueError(f"fallback must be 'popular' or none, got {fallback!r}")
        cat = self.catalogue
        user = cat.user_index(int(user_id))
        cold = user < 0 or cat.user_train_count[user] == 0
        if cold:
            if fallback == "popular":
                return self._popular(user_id, user, k, exclude_seen)
            if user < 0:
                raise UnknownUser(
                    f"user {user_id} is unknown: not among the {cat.n_users} users of this catalogue "
                    f"(ids {cat.user_ids.min()}..{cat.user_ids.max()}); "
                    "--fallback popular answers with the most popular movies"
                )
            raise UnknownUser(f"user {user_id} has no training ratings (a cold user); --fallback popular answers with the most popular movies")
        seen = cat.seen(user) if exclude_seen else np.zeros(0, np.int64)
        via = self.recommend_via
        if via == "index":
            items, scores = self._recommend_by_index(user, seen, k)
            label = f"{self._index.space(self._index.primary()).kind} index"
        else:
            if via == "dot":
                scores_all = self._dot_scores(user)
                label = "exact dot product"
            else:
                scores_all = np.asarray(self._model.score(np.array([user])), dtype=np.float32)[0]
                label = "model scores"
            scores_all[seen] = -np.inf
            items = top_k(scores_all, k)
            scores = scores_all[items]
        return self._answer(f"user {user_id}", items, scores, self.recommend_model, label)

    def recommend_many(self, users: np.ndarray, k: int, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """``recommend`` of many warm users at once: (len(users), k) item indices (``-1`` padding) and scores.

        The ranking of ``recommend`` (the catalogue's rated items masked) computed a batch of users
        at a time where the scores are a matrix product (``model``, ``dot``); through the index
        one user at a time (``index``: the ANN answer a query would get). What ``recflow api``
        precomputes at load time and the batch export writes.
        """
        import scipy.sparse as sp

        from recflow.utils.numeric import topk

        cat = self.catalogue
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        k = max(1, min(int(k), cat.n_items))
        items = np.full((len(users), k), -1, dtype=np.int32)
        scores = np.full((len(users), k), -np.inf, dtype=np.float32)
        if self.recommend_via == "index":
            for row, user in enumerate(users.tolist()):
                got, s = self._recommend_by_index(user, cat.seen(user), k)
                items[row, : len(got)], scores[row, : len(got)] = got, s
            return items, scores
        seen_items = np.asarray(cat.seen_items)
        seen = sp.csr_matrix((np.ones(len(seen_items), np.float32), seen_items, np.asarray(cat.seen_indptr)), shape=(cat.n_users, cat.n_items))
        for start in range(0, len(users), batch_size):
            batch = users[start : start + batch_size]
            block = self._batch_scores(batch)
            rows, cols = seen[batch].nonzero()
            block[rows, cols] = -np.inf
            top = topk(block, k)
            top_s = np.take_along_axis(block, top, axis=1)
            items[start : start + len(batch)] = np.where(np.isneginf(top_s), -1, top)
            scores[start : start + len(batch)] = top_s
        return items, scores

    def _batch_scores(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_items) float32 scores by the ``model`` or ``dot`` route, as ``recommend`` computes them."""
        if self.recommend_via == "model":
            return np.array(self._model.score(users), dtype=np.float32)
        folder = self._index.folder / SCORER_DIR
        V = np.load(folder / "item_factors.npy", mmap_mode="r", allow_pickle=False)
        valid = np.load(folder / "item_valid.npy", allow_pickle=False)
        scores = np.asarray(np.asarray(self._user_factors[users]) @ np.asarray(V).T, dtype=np.float32)
        scores[:, ~valid] = -np.inf
        return scores

    def _dot_scores(self, user: int) -> np.ndarray:
        folder = self._index.folder / SCORER_DIR
        V = np.load(folder / "item_factors.npy", mmap_mode="r", allow_pickle=False)
        valid = np.load(folder / "item_valid.npy", allow_pickle=False)
        scores = np.asarray(V @ np.asarray(self._user_factors[user]), dtype=np.float32)
        scores[~valid] = -np.inf
        return scores

    def _recommend_by_index(self, user: int, seen: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Nearest items to the user's vector, over-fetched to make room for the seen items, then filtered.

        The first search over-fetches by at most ``4 k`` of the user's seen items (a heavy user's
        thousands of ratings would make every query search thousands of neighbours), the second,
        only when too few unseen items came back, by all of them; both counted from the array
        lookup ``row_of``, never a pass over the catalogue, so a query costs the search alone.
        """
        space = self._index.space(self._index.primary())
        u = np.asarray(self._user_factors[user], dtype=np.float32)
        norm = math.sqrt(float(u @ u))
        n = len(space.item_idx)
        in_space = int(np.count_nonzero(space.row_of[seen] >= 0)) if len(seen) else 0
        want = min(k, n - in_space)
        if norm > 0:
            full = min(k + in_space, n)
            fetch = min(k + min(in_space, 4 * k), n)
            while True:
                items, cos = space.nearest(u / norm, fetch)
                keep = ~in_sorted(items, seen)
                if keep.sum() >= want or fetch >= full:
                    break
                fetch = full
            items, cos = items[keep][:k], cos[keep][:k]
            if len(items) >= want:
                return items, (cos * norm).astype(np.float32)
        # the approximate search came back short (or a zero user vector): rank exactly
        scores = np.full(self.catalogue.n_items, -np.inf, dtype=np.float32)
        scores[space.item_idx] = np.asarray(space.vectors @ u, dtype=np.float32)
        scores[seen] = -np.inf
        items = top_k(scores, k)
        return items, scores[items]

    def _popular(self, user_id: int, user: int, k: int, exclude_seen: bool = True) -> Answer:
        cat = self.catalogue
        order = cat.popular
        if user >= 0 and exclude_seen:
            order = order[~np.isin(order, cat.seen(user))]
        items = order[:k]
        note = "unknown user" if user < 0 else "cold user"
        return self._answer(
            f"user {user_id}",
            items,
            cat.train_count[items].astype(np.float32),
            "popular",
            "popularity fallback",
            note=f"{note}: the most popular movies (score = training ratings)",
        )

    # -- similar ---------------------------------------------------------------------------
    def similar_modes(self) -> list[str]:
        index = self._similar_index
        return index.item_spaces() if index is not None else []

    def similar(self, title: str, k: int = 10, mode: str | None = None) -> Answer:
        """The ``k`` items nearest by cosine to the item ``title`` names (``recflow.retrieval.titles`` rules)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self._similar_space(mode)  # a model without item vectors is refused before the title is looked up
        return self.similar_to(self.catalogue.title_index.find(title), k, mode)

    def similar_item(self, item_id: int, k: int = 10, mode: str | None = None) -> Answer:
        """``similar`` for an item given by its raw id; ``UnknownItem`` (with the nearest ids) when it is not in the catalogue."""
        cat = self.catalogue
        query = int(cat.item_index([item_id])[0])
        if query < 0:
            near = cat.nearest_item_ids(item_id)
            raise UnknownItem(f"item {item_id} is not in this catalogue of {cat.n_items} items; nearest ids: {', '.join(map(str, near))}", near)
        return self.similar_to(query, k, mode)

    def similar_to(self, query: int, k: int = 10, mode: str | None = None) -> Answer:
        """The ``k`` items nearest by cosine to the item of dense index ``query``, in ``mode``'s space."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        index, mode = self._similar_space(mode)
        cat = self.catalogue
        space = index.space(mode)
        row = space.row_of[query]
        if row < 0:
            raise NoVector(
                f"{cat.titles[query]!r} has no vector in {index.model}'s {mode!r} space ({cat.train_count[query]} training ratings); try another model or mode"
            )
        items, scores = space.nearest(np.asarray(space.vectors[row]), min(k + 1, len(space.item_idx)))
        keep = items != query
        items, scores = items[keep][:k], scores[keep][:k]
        label = f"{space.kind} index, {mode}" if mode != "items" else f"{space.kind} index"
        return self._answer(str(cat.titles[query]), items, scores, index.model, label, extra={"query_item_id": int(cat.item_ids[query]), "mode": mode})

    def _similar_space(self, mode: str | None) -> tuple[IndexFolder, str]:
        """The index folder ``similar`` searches and the space (``mode``, default the primary one)."""
        index = self._similar_index
        if index is None or not index.item_spaces():
            raise NotServable(
                f"{self.recommend_model} has no item embeddings to find similar movies with; "
                "pick a model with an index (--model item2vec, mf, two_tower, dssm, hybrid ...)"
            )
        spaces = index.item_spaces()
        if mode is None:
            mode = index.primary() or spaces[0]
        elif mode not in spaces:
            if spaces == ["items"]:
                raise ValueError(f"--mode applies to models with several spaces (hybrid); {index.model} has one")
            raise ValueError(f"mode must be one of {spaces}, got {mode!r}")
        return index, mode

    def _answer(self, query: str, items: np.ndarray, scores: np.ndarray, model: str, via: str, note: str = "", extra: dict[str, Any] | None = None) -> Answer:
        items = np.asarray(items, dtype=np.int64)
        cat = self.catalogue
        return Answer(
            query, items, cat.item_ids[items], [str(t) for t in cat.titles[items]], np.asarray(scores, dtype=np.float32), model, via, note, extra or {}
        )
