"""The build side of serving: what a fitted model and a split leave for ``recflow.retrieval.search`` to read.

Run by the ``index`` task and the run's catalogue stage (any imports allowed; the query side
reads the files only).

* ``model_spaces``: the vector spaces a model declares (``Recommender.vector_spaces``), read
  through ``item_embeddings(space)`` / ``user_embeddings()``; never guessed from its methods.
  Rows without a vector (all zero: an item2vec item too rare for a vector, a hybrid item without
  content) are left out of the index.
* ``build_serving_indexes``: tunes and saves every index kind per space (``recflow.retrieval.index``), with
  ``rows.parquet`` (row -> dense index -> raw id) and the unit vectors (``vectors.npy``).
* The scorer: when a model declares ``dot_factors`` (its ranking score is ``U[u] . V[i]``, items
  where ``valid`` is False never ranked), they are checked against ``model.score`` on real users
  and exported; then serving needs neither the model's code path nor its heavy imports (gensim,
  TensorFlow). If ``V``'s rows are also the unit vectors of the primary space, recommendations
  come from that space's index (``recommend_via = "index"``); else from the exact product
  (``"dot"``). Otherwise the saved model is loaded and scores (``"model"``; npz only).
* ``build_catalogue``: id maps, titles, training counts and every rated pair of a split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recflow.prep.genres import genre_overlap_at_k, overlap_queries
from recflow.retrieval.index import KindResult, TuningGrid, recall_qps_plot, tune_space
from recflow.retrieval.search import (
    ITEMS_FILE,
    ROWS_FILE,
    SCORER_DIR,
    SEEN_INDPTR,
    SEEN_ITEMS,
    SPACES_DIR,
    USERS_FILE,
    VECTORS_FILE,
)
from recflow.utils.numeric import normalise_rows as normalise

if TYPE_CHECKING:
    from recflow.models.base import Recommender


#: the share of an hnswlib index's rows a warm fit may move for the index to be continued: at 62,000 x 64,
#: replacing every row took 84.6 s where a build from scratch took 9.2 s (adding 310 new rows: 0.48 s)
MAX_MOVED_SHARE = 0.1


@dataclass
class Space:
    """One set of vectors to index: ``vectors`` (n, d) by dense index, extra ``queries`` to tune on."""

    name: str
    entity: str  # "item" or "user"
    vectors: np.ndarray
    queries: np.ndarray | None = None


def model_spaces(model: Recommender) -> tuple[list[Space], str | None]:
    """The spaces ``model`` declares (``Recommender.vector_spaces``) and the primary one (None: no vectors).

    Item spaces come first, the model's primary one leading; user vectors of the primary's width
    are extra tuning queries for it. A model with user vectors only is indexed in a ``users`` space.
    """
    declared = model.vector_spaces()
    for space in declared:
        if space.similarity != "cosine":
            raise ValueError(f"{model.name}: space {space.name!r} is compared by {space.similarity!r}; indexes serve cosine only")
    users = np.asarray(model.user_embeddings(), dtype=np.float32) if any(s.entity == "user" for s in declared) else None
    item_spaces = [s.name for s in declared if s.entity == "item"]
    if item_spaces:
        primary = item_spaces[0]
        spaces = []
        for name in item_spaces:
            items = np.asarray(model.item_embeddings(name), dtype=np.float32)
            spaces.append(Space(name, "item", items, _same_dim(users, items) if name == primary else None))
        return spaces, primary
    if users is not None:
        return [Space("users", "user", users)], "users"
    return [], None


def _same_dim(users: np.ndarray | None, items: np.ndarray) -> np.ndarray | None:
    return users if users is not None and users.ndim == 2 and users.shape[1] == items.shape[1] else None


def check_dot_factors(model: Recommender, U: np.ndarray, V: np.ndarray, valid: np.ndarray, n_users: int = 64) -> bool:
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


def build_serving_indexes(
    model: Recommender, item_ids: np.ndarray, user_ids: np.ndarray, grid: TuningGrid, out: Path, genres: np.ndarray | None = None, genre_queries: int = 2000
) -> dict[str, Any]:
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
        raise ValueError(f"{model.name} was fitted on {model.n_users} users x {model.n_items} items, but the split has {len(user_ids)} x {len(item_ids)}")
    spaces, primary = model_spaces(model)
    if not spaces:
        raise ValueError(f"{model.name} declares no vector spaces to index")
    summary: dict[str, Any] = {"model": model.name, "primary": primary, "k": grid.k, "target_recall": grid.target_recall, "spaces": {}}
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
        pq.write_table(
            pa.table({"row": np.arange(len(rows), dtype=np.int64), "index": rows.astype(np.int64), "id": np.asarray(ids)[rows].astype(np.int64)}),
            folder / ROWS_FILE,
        )
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
        recall_qps_plot(tuned.results, folder / "recall_qps.png", title=f"{model.name} / {space.name} ({tuned.n} x {tuned.dim})", target=grid.target_recall)
        chosen: KindResult = tuned.results[tuned.chosen]
        summary["spaces"][space.name] = {
            "entity": space.entity,
            "n": tuned.n,
            "dim": tuned.dim,
            "kind": tuned.chosen,
            "reason": tuned.reason,
            "index": kinds[tuned.chosen]["spec"],
            "metrics": {
                metric: chosen.recall,
                "qps": chosen.qps,
                "p50_ms": chosen.p50_ms,
                "p99_ms": chosen.p99_ms,
                "build_seconds": chosen.build_seconds,
                "bytes": chosen.bytes,
            },
            "kinds": kinds,
        }
        if genres is not None and space.entity == "item":
            summary["spaces"][space.name]["metrics"].update(_genre_agreement(space.vectors, genres, grid.k, genre_queries))
    summary["recommend_via"] = _export_scorer(model, spaces, primary, out)
    return summary


def continue_serving_indexes(
    model: Recommender,
    item_ids: np.ndarray,
    user_ids: np.ndarray,
    previous: Path,
    out: Path,
    genres: np.ndarray | None = None,
    genre_queries: int = 2000,
    label: str | None = None,
) -> tuple[dict[str, Any] | None, str]:
    """Continue last night's index folder ``previous`` (built over the fit ``model`` warm-started from) into ``out``.

    Each space keeps its chosen kind and tuned parameters (no retuning): yesterday's rows stay the
    first rows, in their order (their vectors replaced where the warm fit moved them), and rows with a
    vector that yesterday's index lacks (new items, or old ones that just got a vector) are added after
    them (``VectorIndex.extend``). Returns (summary, "") or (None, why) when it cannot continue (a kind
    that takes no rows in place, a space or a dimension that changed, a row that lost its id or its
    vector): the caller then builds and tunes from scratch. The summary keeps yesterday's tuning
    metrics (they were measured on yesterday's rows) and states, per space, ``continued``: from where
    (``label``, e.g. the folder relative to the artifacts root), rows added and updated.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from recflow.retrieval.index import VectorIndex

    previous, out = Path(previous), Path(out)
    try:
        before = json.loads((previous / "summary.json").read_text())
    except (OSError, ValueError):
        return None, f"{previous}: no summary to continue from"
    if model.n_items != len(item_ids) or model.n_users != len(user_ids):
        return None, "the model and the split disagree on their ids"
    spaces, primary = model_spaces(model)
    if primary != before.get("primary") or sorted(s.name for s in spaces) != sorted(before["spaces"]):
        return None, "the model's vector spaces changed"
    summary = {**before, "spaces": {}}
    for space in spaces:
        info = before["spaces"][space.name]
        if info["kind"] not in VectorIndex.EXTENDABLE:
            return None, f"space {space.name!r}: a {info['kind']} index cannot take new rows in place"
        old = previous / SPACES_DIR / space.name
        old_ids = pq.read_table(old / ROWS_FILE, columns=["id"])["id"].to_numpy().astype(np.int64)
        ids = np.asarray(item_ids if space.entity == "item" else user_ids).astype(np.int64)
        at = np.searchsorted(ids, old_ids)  # ids are sorted distinct raw ids (the split's dense order)
        if len(old_ids) and (at.max() >= len(ids) or not np.array_equal(ids[np.minimum(at, len(ids) - 1)], old_ids)):
            return None, f"space {space.name!r}: an indexed {space.entity} is gone from tonight's split"
        has = np.linalg.norm(space.vectors, axis=1) > 0
        if not has[at].all():
            return None, f"space {space.name!r}: an indexed {space.entity} has no vector tonight"
        fresh = np.flatnonzero(has)
        fresh = fresh[~np.isin(fresh, at)]
        rows = np.concatenate([at, fresh]).astype(np.int64)
        unit = normalise(space.vectors[rows])
        if unit.shape[1] != info["dim"]:
            return None, f"space {space.name!r}: its dimension changed ({info['dim']} -> {unit.shape[1]})"
        if info["kind"] == "hnswlib" and len(at):  # replacing a node costs ~9x inserting it: past a share, a rebuild is cheaper
            moved = int((np.abs(np.load(old / VECTORS_FILE) - unit[: len(at)]).max(axis=1) > 0).sum())
            if moved > MAX_MOVED_SHARE * len(at):
                return None, f"space {space.name!r}: the fit moved {moved} of {len(at)} indexed vectors; rebuilding the hnswlib index is cheaper"
        index = VectorIndex.load(old, info["index"])
        done = index.extend(unit, threads=2)
        folder = out / SPACES_DIR / space.name
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"row": np.arange(len(rows), dtype=np.int64), "index": rows, "id": ids[rows]}), folder / ROWS_FILE)
        np.save(folder / VECTORS_FILE, unit, allow_pickle=False)
        for file in ("tuning.json", "recall_qps.png"):  # yesterday's tuning, which this index keeps
            if (old / file).exists():
                (folder / file).write_bytes((old / file).read_bytes())
        spec = index.save(folder).to_json()
        entry = {**info, "n": len(rows), "index": spec, "kinds": {info["kind"]: {**info["kinds"].get(info["kind"], {}), "spec": spec}}}
        entry["continued"] = {"from": label or str(previous), **done}
        entry["reason"] = f"continued last night's {info['kind']} index (+{done['added']} rows, {done['updated']} replaced), tuned then: {info['reason']}"
        if genres is not None and space.entity == "item":
            entry["metrics"] = {**info["metrics"], **_genre_agreement(space.vectors, genres, summary["k"], genre_queries)}
        summary["spaces"][space.name] = entry
    summary["recommend_via"] = _export_scorer(model, spaces, primary, out)
    summary["continued_from"] = label or str(previous)
    return summary, ""


def _genre_agreement(vectors: np.ndarray, genres: np.ndarray, k: int, n_queries: int) -> dict[str, float]:
    """``genre_overlap_at_k`` / ``genre_jaccard_at_k`` of a space, on a seeded sample of items with a vector."""
    valid = np.linalg.norm(vectors, axis=1) > 0
    queries = overlap_queries(genres, valid, n_queries, seed=0)
    result = genre_overlap_at_k(vectors, genres, k, queries=queries, valid=valid)
    return {name: value for name, value in result.items() if name.startswith("genre_")}


def _export_scorer(model: Recommender, spaces: list[Space], primary: str | None, out: Path) -> str:
    factors = model.dot_factors()
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
    pq.write_table(
        pa.table(
            {"item_idx": np.arange(n_items, dtype=np.int64), "item_id": item_ids, "title": pa.array(titles.tolist(), pa.string()), "train_count": train_count}
        ),
        out / ITEMS_FILE,
    )
    pq.write_table(pa.table({"user_idx": np.arange(n_users, dtype=np.int64), "user_id": user_ids, "train_count": user_train}), out / USERS_FILE)
    order = np.lexsort((i, u))
    pairs = np.unique(np.stack([u[order], i[order]], axis=1), axis=0) if len(order) else np.zeros((0, 2), np.int64)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(pairs[:, 0], minlength=n_users), out=indptr[1:])
    np.save(out / SEEN_INDPTR, indptr, allow_pickle=False)
    np.save(out / SEEN_ITEMS, pairs[:, 1].astype(np.int32), allow_pickle=False)
    return {"n_users": int(n_users), "n_items": int(n_items), "n_pairs": int(len(pairs))}
