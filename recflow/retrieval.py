"""From a fitted model to answers: what serving needs is built once, then read by ``Retriever``.

Build side (the ``index`` task, any imports allowed):

* ``model_spaces``: the vector spaces a model offers. ``items`` (``item_embeddings()``), or one
  space per mode when ``item_embeddings`` takes a ``mode`` (hybrid: ``hybrid``, ``content``,
  ``cf``; the default mode is the primary space); ``users`` for a model with only
  ``user_embeddings()`` (user_cf). Rows without a vector (all zero: an item2vec item too rare for
  a vector, a hybrid item without content) are left out of the index.
* ``build_serving_indexes``: tunes and saves every index kind per space (``recflow.index``), with
  ``rows.parquet`` (row -> dense index -> raw id) and the unit vectors (``vectors.npy``).
* ``dot_factors``: when a model's ranking score is a plain dot product ``U[u] . V[i]`` (items
  where ``valid`` is False never ranked), the factors are exported and checked against
  ``model.score`` on real users; then serving needs neither the model's code path nor its heavy
  imports (gensim for item2vec, never TensorFlow). If ``V``'s rows are also the unit vectors of the
  primary space, recommendations come from that space's index (``recommend_via = "index"``:
  two_tower, hybrid); else from the exact product (``"dot"``: mf with its biases folded into
  two extra dimensions, item2vec / deepwalk). Otherwise (dssm's squashed dot, user_cf, ease,
  popular ...) the saved model is loaded and scores (``"model"``; still npz only, no TensorFlow).

Query side (``Retriever``; numpy, pyarrow, faiss / hnswlib only): ``recommend`` ranks the items
a user has not rated anywhere in the split (train, valid or test: the catalogue's ``seen``);
``similar`` finds the title (``recflow.titles``) and its nearest items by cosine in one space.
The CLI and the MLflow pyfunc both call ``Retriever.from_sources`` on the same files, so they
give the same answers.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from recflow.index import KindResult, TuningGrid, VectorIndex, normalise, recall_qps_plot, tune_space

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


# ============================================================================= build side


@dataclass
class Space:
    """One set of vectors to index: ``vectors`` (n, d) by dense index, extra ``queries`` to tune on."""

    name: str
    entity: str  # "item" or "user"
    vectors: np.ndarray
    queries: np.ndarray | None = None


def model_spaces(model: Any) -> tuple[list[Space], str | None]:
    """The spaces ``model`` offers and the primary one (None: the model has no embeddings)."""
    users = None
    if hasattr(model, "user_embeddings"):
        users = np.asarray(model.user_embeddings(), dtype=np.float32)
    if hasattr(model, "item_embeddings"):
        param = inspect.signature(model.item_embeddings).parameters.get("mode")
        if param is None:
            items = np.asarray(model.item_embeddings(), dtype=np.float32)
            return [Space("items", "item", items, _same_dim(users, items))], "items"
        primary = param.default
        modes = [primary] + [m for m in _literal_values(model.item_embeddings, "mode") if m != primary]
        spaces = []
        for mode in modes:
            items = np.asarray(model.item_embeddings(mode), dtype=np.float32)
            spaces.append(Space(mode, "item", items, _same_dim(users, items) if mode == primary else None))
        return spaces, primary
    if users is not None:
        return [Space("users", "user", users)], "users"
    return [], None


def _literal_values(fn: Any, name: str) -> list[str]:
    import typing

    try:
        hint = typing.get_type_hints(fn).get(name)
    except (NameError, TypeError):  # an annotation that does not resolve: the default mode only
        hint = None
    values = [v for v in typing.get_args(hint) if isinstance(v, str)]
    return values or [inspect.signature(fn).parameters[name].default]


def _same_dim(users: np.ndarray | None, items: np.ndarray) -> np.ndarray | None:
    return users if users is not None and users.ndim == 2 and users.shape[1] == items.shape[1] else None


def dot_factors(model: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(U, V, valid) with ``model.score(u) == U[u] @ V.T`` (``-inf`` where not ``valid``), if the model has them.

    Candidates per model family; ``check_dot_factors`` confirms them on real users, so a model
    whose scoring changes simply falls back to ``"model"``.
    """
    try:
        name = model.name
        if name == "mf":
            n_users, n_items = len(model.user_factors_), len(model.item_factors_)
            U = np.hstack([model.user_factors_, np.ones((n_users, 1)), (model.global_mean_ + model.user_bias_)[:, None]])
            V = np.hstack([model.item_factors_, model.item_bias_[:, None], np.ones((n_items, 1))])
            return U.astype(np.float32), V.astype(np.float32), np.ones(n_items, bool)
        if hasattr(model, "user_vectors_") and hasattr(model, "context_vectors_"):  # item2vec, deepwalk
            V = model.context_vectors_ if model.scoring == "in_out" else normalise(model.item_vectors_)
            return model.user_vectors_.astype(np.float32), V.astype(np.float32), model.has_vector_.astype(bool)
        if hasattr(model, "user_embeddings") and hasattr(model, "item_embeddings"):  # two_tower, hybrid
            U = np.asarray(model.user_embeddings(), dtype=np.float32)
            V = np.asarray(model.item_embeddings(), dtype=np.float32)
            return U, V, np.ones(len(V), bool)
    except (AttributeError, TypeError, ValueError):
        return None
    return None


def check_dot_factors(model: Any, U: np.ndarray, V: np.ndarray, valid: np.ndarray, n_users: int = 64) -> bool:
    """Whether ``U @ V.T`` reproduces ``model.score`` on up to ``n_users`` users spread over the index."""
    if U.shape[0] != model.n_users or V.shape[0] != model.n_items or U.shape[1] != V.shape[1]:
        return False
    users = np.unique(np.linspace(0, model.n_users - 1, min(n_users, model.n_users)).astype(np.int64))
    expected = np.asarray(model.score(users), dtype=np.float64)
    got = U[users].astype(np.float64) @ V.T.astype(np.float64)
    got[:, ~valid] = -np.inf
    if not np.array_equal(np.isneginf(expected), np.isneginf(got)):
        return False
    finite = np.isfinite(expected)
    scale = 1.0 + float(np.abs(expected[finite]).max()) if finite.any() else 1.0
    return bool(np.allclose(got[finite], expected[finite], rtol=1e-4, atol=1e-4 * scale))


def build_serving_indexes(model: Any, item_ids: np.ndarray, user_ids: np.ndarray, grid: TuningGrid, out: Path,
                          genres: np.ndarray | None = None, genre_queries: int = 2000) -> dict[str, Any]:
    """Tune and save every index kind of every space of ``model`` into ``out``; returns the summary.

    ``item_ids`` / ``user_ids``: the raw ids of the split's dense indices (what the model was fitted on).
    ``genres``: (n_items, g) multi-hot aligned with ``item_ids``; when given, every item space also
    gets ``genre_overlap_at_{k}`` (exact cosine neighbours of a seeded sample of ``genre_queries``
    items): how "movies similar to" answers are judged, and how the run picks its ``similar`` model.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    if model.n_items != len(item_ids) or model.n_users != len(user_ids):
        raise ValueError(f"{model.name} was fitted on {model.n_users} users x {model.n_items} items, "
                         f"but the split has {len(user_ids)} x {len(item_ids)}")
    spaces, primary = model_spaces(model)
    if not spaces:
        raise ValueError(f"{model.name} has no item_embeddings() or user_embeddings() to index")
    summary: dict[str, Any] = {"model": model.name, "primary": primary, "k": grid.k,
                               "target_recall": grid.target_recall, "spaces": {}}
    metric = f"ann_recall_at_{grid.k}"
    for space in spaces:
        folder = out / SPACES_DIR / space.name
        folder.mkdir(parents=True, exist_ok=True)
        norms = np.linalg.norm(space.vectors, axis=1)
        rows = np.flatnonzero(norms > 0)
        if len(rows) < 2:
            raise ValueError(f"{model.name}: space {space.name!r} has {len(rows)} non-zero vectors; nothing to index")
        unit = normalise(space.vectors[rows])
        ids = item_ids if space.entity == "item" else user_ids
        pq.write_table(pa.table({"row": np.arange(len(rows), dtype=np.int64), "index": rows.astype(np.int64),
                                 "id": np.asarray(ids)[rows].astype(np.int64)}), folder / ROWS_FILE)
        np.save(folder / VECTORS_FILE, unit, allow_pickle=False)
        pool = unit if space.queries is None else np.vstack([unit, normalise(space.queries)])
        tuned = tune_space(unit, pool, grid)
        kinds: dict[str, Any] = {}
        for kind, result in tuned.results.items():
            entry = result.to_json()
            if kind in tuned.indexes:
                entry["spec"] = tuned.indexes[kind].save(folder).to_json()
            kinds[kind] = entry
        (folder / "tuning.json").write_text(json.dumps({k: r.to_json(with_curve=True) for k, r in tuned.results.items()}, indent=1, default=float))
        recall_qps_plot(tuned.results, folder / "recall_qps.png", title=f"{model.name} / {space.name} ({tuned.n} x {tuned.dim})",
                        target=grid.target_recall)
        chosen: KindResult = tuned.results[tuned.chosen]
        summary["spaces"][space.name] = {
            "entity": space.entity, "n": tuned.n, "dim": tuned.dim, "kind": tuned.chosen, "reason": tuned.reason,
            "index": kinds[tuned.chosen]["spec"],
            "metrics": {metric: chosen.recall, "qps": chosen.qps, "p50_ms": chosen.p50_ms, "p99_ms": chosen.p99_ms,
                        "build_seconds": chosen.build_seconds, "bytes": chosen.bytes},
            "kinds": kinds,
        }
        if genres is not None and space.entity == "item":
            summary["spaces"][space.name]["metrics"].update(_genre_agreement(space.vectors, genres, grid.k, genre_queries))
    summary["recommend_via"] = _export_scorer(model, spaces, primary, out)
    return summary


def _genre_agreement(vectors: np.ndarray, genres: np.ndarray, k: int, n_queries: int) -> dict[str, float]:
    """``genre_overlap_at_k`` / ``genre_jaccard_at_k`` of a space, on a seeded sample of items with a vector."""
    from recflow.genres import genre_overlap_at_k

    valid = np.linalg.norm(vectors, axis=1) > 0
    queries = np.flatnonzero(valid & (np.asarray(genres) > 0).any(axis=1))
    if len(queries) > n_queries:
        queries = np.sort(np.random.default_rng(0).choice(queries, n_queries, replace=False))
    result = genre_overlap_at_k(vectors, genres, k, queries=queries, valid=valid)
    return {name: value for name, value in result.items() if name.startswith("genre_")}


def _export_scorer(model: Any, spaces: list[Space], primary: str | None, out: Path) -> str:
    factors = dot_factors(model)
    if factors is None or not check_dot_factors(model, *factors):
        return "model"
    U, V, valid = factors
    folder = out / SCORER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "user_factors.npy", np.ascontiguousarray(U, dtype=np.float32), allow_pickle=False)
    space = next((s for s in spaces if s.name == primary and s.entity == "item"), None)
    if space is not None and valid.all() and V.shape == space.vectors.shape:
        unit = np.allclose(np.linalg.norm(V, axis=1), 1.0, atol=1e-4)
        if unit and np.allclose(V, normalise(space.vectors), atol=1e-5):
            return "index"
    np.save(folder / "item_factors.npy", np.ascontiguousarray(V, dtype=np.float32), allow_pickle=False)
    np.save(folder / "item_valid.npy", valid.astype(bool), allow_pickle=False)
    return "dot"


def build_catalogue(split_file: Path, items_file: Path | None, out: Path) -> dict[str, Any]:
    """Id maps, titles, training counts and every rated (user, item) pair of a split, for serving.

    ``split_file``: the split stage's Parquet (user_id, item_id, split); ``items_file``: the ingest
    stage's items (item_id, title), optional (titles then read ``item <id>``).
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = pq.read_table(split_file, columns=["user_id", "item_id", "split"])
    raw_u = table["user_id"].to_numpy().astype(np.int64)
    raw_i = table["item_id"].to_numpy().astype(np.int64)
    is_train = pc.equal(table["split"].cast(pa.string()), "train").to_numpy(zero_copy_only=False)
    user_ids, u = np.unique(raw_u, return_inverse=True)
    item_ids, i = np.unique(raw_i, return_inverse=True)
    n_users, n_items = len(user_ids), len(item_ids)
    train_count = np.bincount(i[is_train], minlength=n_items).astype(np.int64)
    user_train = np.bincount(u[is_train], minlength=n_users).astype(np.int64)
    titles = np.array([f"item {x}" for x in item_ids.tolist()], dtype=object)
    if items_file is not None and Path(items_file).exists():
        meta = pq.read_table(items_file, columns=["item_id", "title"])
        m_ids = meta["item_id"].to_numpy().astype(np.int64)
        m_titles = np.asarray(meta["title"].to_pylist(), dtype=object)
        pos = np.searchsorted(item_ids, m_ids)
        ok = (pos < n_items) & (item_ids[np.minimum(pos, n_items - 1)] == m_ids)
        has = np.array([t is not None and str(t) != "" for t in m_titles], dtype=bool)
        titles[pos[ok & has]] = m_titles[ok & has]
    pq.write_table(pa.table({"item_idx": np.arange(n_items, dtype=np.int64), "item_id": item_ids,
                             "title": pa.array(titles.tolist(), pa.string()), "train_count": train_count}), out / ITEMS_FILE)
    pq.write_table(pa.table({"user_idx": np.arange(n_users, dtype=np.int64), "user_id": user_ids,
                             "train_count": user_train}), out / USERS_FILE)
    order = np.lexsort((i, u))
    pairs = np.unique(np.stack([u[order], i[order]], axis=1), axis=0) if len(order) else np.zeros((0, 2), np.int64)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(pairs[:, 0], minlength=n_users), out=indptr[1:])
    np.save(out / SEEN_INDPTR, indptr, allow_pickle=False)
    np.save(out / SEEN_ITEMS, pairs[:, 1].astype(np.int32), allow_pickle=False)
    return {"n_users": int(n_users), "n_items": int(n_items), "n_pairs": int(len(pairs))}


# ============================================================================= query side


class Catalogue:
    """The catalogue folder of ``build_catalogue``, read for queries."""

    def __init__(self, folder: str | Path) -> None:
        import pyarrow.parquet as pq

        folder = Path(folder)
        for name in (ITEMS_FILE, USERS_FILE, SEEN_INDPTR, SEEN_ITEMS):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name}: catalogue file missing (rerun `recflow run`)")
        items = pq.read_table(folder / ITEMS_FILE, columns=["item_id", "title", "train_count"])
        self.item_ids = items["item_id"].to_numpy().astype(np.int64)
        self.titles = np.asarray(items["title"].to_pylist(), dtype=object)
        self.train_count = items["train_count"].to_numpy().astype(np.int64)
        users = pq.read_table(folder / USERS_FILE, columns=["user_id", "train_count"])
        self.user_ids = users["user_id"].to_numpy().astype(np.int64)
        self.user_train_count = users["train_count"].to_numpy().astype(np.int64)
        self.seen_indptr = np.load(folder / SEEN_INDPTR, mmap_mode="r", allow_pickle=False)
        self.seen_items = np.load(folder / SEEN_ITEMS, mmap_mode="r", allow_pickle=False)
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

    def seen(self, user: int) -> np.ndarray:
        return np.asarray(self.seen_items[self.seen_indptr[user] : self.seen_indptr[user + 1]], dtype=np.int64)

    @cached_property
    def popular(self) -> np.ndarray:
        """Item indices by training count, most first (ties: lower index)."""
        return np.lexsort((np.arange(self.n_items), -self.train_count))

    @cached_property
    def title_index(self):
        from recflow.titles import TitleIndex

        return TitleIndex(self.titles, self.train_count)


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
        return [{"rank": r + 1, "item_id": int(i), "title": t, "score": float(s)}
                for r, (i, t, s) in enumerate(zip(self.item_ids.tolist(), self.titles, self.scores.tolist()))]


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest finite scores, best first (ties: lower index)."""
    finite = np.flatnonzero(np.isfinite(scores))
    if len(finite) > k:
        part = np.argpartition(-scores[finite], k - 1)[:k]
        kth = scores[finite[part]].min()
        finite = finite[scores[finite] >= kth]  # everything tied with the k-th competes on index
    order = np.lexsort((finite, -scores[finite]))
    return finite[order][:k]


class ItemSpace:
    """One indexed space of an index folder: the chosen index, its rows and unit vectors."""

    def __init__(self, folder: Path, name: str, info: dict[str, Any], n_items: int) -> None:
        import pyarrow.parquet as pq

        self.name = name
        self.info = info
        self.kind = info["kind"]
        base = Path(folder) / SPACES_DIR / name
        self.index = VectorIndex.load(base, info["index"])
        self.item_idx = pq.read_table(base / ROWS_FILE, columns=["index"])["index"].to_numpy().astype(np.int64)
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
    def from_sources(cls, sources: Mapping[str, str | Path | None], info: Mapping[str, Any] | None = None) -> "Retriever":
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
        U = np.load(self._index.folder / SCORER_DIR / "user_factors.npy", mmap_mode="r", allow_pickle=False)
        if U.shape[0] != self.catalogue.n_users:
            raise ValueError(f"{self._index.folder / SCORER_DIR}: {U.shape[0]} user rows, the catalogue has {self.catalogue.n_users} users")
        return U

    @cached_property
    def _model(self) -> Any:
        path = self.sources.get("model")
        if path is None:
            raise NotServable(f"{self.recommend_model}: no saved model in this bundle to score with")
        from recflow.models import load_model

        return load_model(path)

    # -- recommend -------------------------------------------------------------------------
    def recommend(self, user_id: int, k: int = 10, fallback: str | None = None) -> Answer:
        """Top-``k`` items the user has not rated, best first; cold or unknown users get
        ``UnknownUser`` unless ``fallback == "popular"``."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if fallback not in (None, "", "none", "popular"):
            raise ValueError(f"fallback must be 'popular' or none, got {fallback!r}")
        cat = self.catalogue
        user = cat.user_index(int(user_id))
        cold = user < 0 or cat.user_train_count[user] == 0
        if cold:
            if fallback == "popular":
                return self._popular(user_id, user, k)
            if user < 0:
                raise UnknownUser(f"user {user_id} is unknown: not among the {cat.n_users} users of this catalogue "
                                  f"(ids {cat.user_ids.min()}..{cat.user_ids.max()}); "
                                  "--fallback popular answers with the most popular movies")
            raise UnknownUser(f"user {user_id} has no training ratings (a cold user); "
                              "--fallback popular answers with the most popular movies")
        seen = cat.seen(user)
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

    def _dot_scores(self, user: int) -> np.ndarray:
        folder = self._index.folder / SCORER_DIR
        V = np.load(folder / "item_factors.npy", mmap_mode="r", allow_pickle=False)
        valid = np.load(folder / "item_valid.npy", allow_pickle=False)
        scores = np.asarray(V @ np.asarray(self._user_factors[user]), dtype=np.float32)
        scores[~valid] = -np.inf
        return scores

    def _recommend_by_index(self, user: int, seen: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Nearest items to the user's vector, over-fetched by the number of seen items, then filtered."""
        space = self._index.space(self._index.primary())
        u = np.asarray(self._user_factors[user], dtype=np.float32)
        norm = float(np.linalg.norm(u))
        available = len(space.item_idx) - np.isin(space.item_idx, seen).sum() if len(seen) else len(space.item_idx)
        want = min(k, int(available))
        if norm > 0:
            items, cos = space.nearest(u / norm, min(k + len(seen), len(space.item_idx)))
            keep = ~np.isin(items, seen)
            items, cos = items[keep][:k], cos[keep][:k]
            if len(items) >= want:
                return items, (cos * norm).astype(np.float32)
        # the approximate search came back short (or a zero user vector): rank exactly
        scores = np.full(self.catalogue.n_items, -np.inf, dtype=np.float32)
        scores[space.item_idx] = np.asarray(space.vectors @ u, dtype=np.float32)
        scores[seen] = -np.inf
        items = top_k(scores, k)
        return items, scores[items]

    def _popular(self, user_id: int, user: int, k: int) -> Answer:
        cat = self.catalogue
        order = cat.popular
        if user >= 0:
            order = order[~np.isin(order, cat.seen(user))]
        items = order[:k]
        note = "unknown user" if user < 0 else "cold user"
        return self._answer(f"user {user_id}", items, cat.train_count[items].astype(np.float32), "popular",
                            "popularity fallback", note=f"{note}: the most popular movies (score = training ratings)")

    # -- similar ---------------------------------------------------------------------------
    def similar_modes(self) -> list[str]:
        index = self._similar_index
        return index.item_spaces() if index is not None else []

    def similar(self, title: str, k: int = 10, mode: str | None = None) -> Answer:
        """The ``k`` items nearest by cosine to the item ``title`` names (``recflow.titles`` rules)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        index = self._similar_index
        if index is None or not index.item_spaces():
            raise NotServable(f"{self.recommend_model} has no item embeddings to find similar movies with; "
                              "pick a model with an index (--model item2vec, mf, two_tower, dssm, hybrid ...)")
        spaces = index.item_spaces()
        if mode is None:
            mode = index.primary() or spaces[0]
        elif mode not in spaces:
            if spaces == ["items"]:
                raise ValueError(f"--mode applies to models with several spaces (hybrid); {index.model} has one")
            raise ValueError(f"mode must be one of {spaces}, got {mode!r}")
        cat = self.catalogue
        query = cat.title_index.find(title)
        space = index.space(mode)
        row = space.row_of[query]
        if row < 0:
            raise NoVector(f"{cat.titles[query]!r} has no vector in {index.model}'s {mode!r} space "
                           f"({cat.train_count[query]} training ratings); try another model or mode")
        items, scores = space.nearest(np.asarray(space.vectors[row]), min(k + 1, len(space.item_idx)))
        keep = items != query
        items, scores = items[keep][:k], scores[keep][:k]
        label = f"{space.kind} index, {mode}" if mode != "items" else f"{space.kind} index"
        return self._answer(str(cat.titles[query]), items, scores, index.model, label,
                            extra={"query_item_id": int(cat.item_ids[query]), "mode": mode})

    def _answer(self, query: str, items: np.ndarray, scores: np.ndarray, model: str, via: str, note: str = "",
                extra: dict[str, Any] | None = None) -> Answer:
        items = np.asarray(items, dtype=np.int64)
        cat = self.catalogue
        return Answer(query, items, cat.item_ids[items], [str(t) for t in cat.titles[items]],
                      np.asarray(scores, dtype=np.float32), model, via, note, extra or {})
