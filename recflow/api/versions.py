"""One served version: its files loaded, every warm user's top-K computed, its answers rendered.

A ``ServedVersion`` is immutable once built and answers every query on its own, so a request
that took one (``recflow.api.service.Service.current``) uses that version throughout, whatever
swap happens meanwhile. Everything a request would otherwise wait for is done in ``load``:

* the ``Retriever`` over the pointer's files (``recflow.retrieval.search``: the very answers of
  ``recflow recommend`` / ``similar`` and of the registered pyfunc), with its index, scorer and
  model read eagerly instead of on the first request;
* ``precompute``: the top ``depth`` unseen items of every user with training ratings, ranked as
  ``Retriever.recommend`` ranks them (the catalogue's rated items masked), so ``GET /recommend``
  with ``k <= depth`` is an array slice and a JSON encode. Where scoring every user is dear (the
  25M shape: 162k users x 59k items), ``auto`` skips it and requests go through the index;
* the fold-in model: the run's saved model, when its class declares ``folds_in_history``
  (``recflow.models.base``): ``POST /recommend`` scores a list of items with it.

NumPy, pyarrow and faiss / hnswlib only: neither MLflow nor TensorFlow is imported here (the
models that fold in score in NumPy).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from recflow.api.sources import Pointer
from recflow.retrieval.search import Answer, RetrievalError, Retriever, UnknownUser
from recflow.utils.numeric import top_k

#: ``auto`` precomputes when scoring every user costs at most this many user x item scores
PRECOMPUTE_BUDGET = 200_000_000
PRECOMPUTE_BATCH = 1024


class FoldInNotSupported(RetrievalError):
    """The served model cannot score a list of items; ``capable`` names the run's models that can."""

    def __init__(self, message: str, capable: list[str]) -> None:
        self.capable = capable
        super().__init__(message)


class UnknownItems(RetrievalError):
    """Item ids of a history that the catalogue does not hold."""

    def __init__(self, message: str, unknown: list[int]) -> None:
        self.unknown = unknown
        super().__init__(message)


def model_class(folder: Path) -> type | None:
    """The registered class of a saved model folder (its ``params.json``), None when there is none."""
    path = Path(folder) / "params.json"
    if not path.is_file():
        return None
    from recflow.models import MODELS

    return MODELS.get(json.loads(path.read_text())["name"])


def _folds_in(cls: type | None) -> bool:
    return bool(cls is not None and cls.folds_in_history)


class ServedVersion:
    """Everything one version answers from (see the module docstring); build it with ``load``."""

    def __init__(self, pointer: Pointer, retriever: Retriever, root: Path) -> None:
        self.pointer = pointer
        self.retriever = retriever
        self.root = root
        self.info = pointer.info
        self.catalogue = retriever.catalogue
        self.item_ids: list[int] = self.catalogue.item_ids.tolist()
        self.titles: list[str] = [str(t) for t in self.catalogue.titles]
        self.loaded_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.load_seconds = 0.0
        self.top_items: np.ndarray | None = None
        self.top_scores: np.ndarray | None = None
        self.depth = 0
        self.fold_in = None
        self.via_label = ""
        self.searches_inline = False
        entry = pointer.record["models"][self.model]
        self.entry = entry
        self.model_folder = root / entry["model"] if entry.get("model") else None
        self.capable = sorted(n for n, e in pointer.record["models"].items() if e.get("model") and _folds_in(model_class(root / e["model"])))
        self.header = {
            "model": self.model,
            "version": self.version,
            "run_id": self.info.get("run_id"),
            "model_run_id": self.info.get("model_run_id"),
        }

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def load(cls, pointer: Pointer, root: Path, depth: int = 100, precompute: str = "auto") -> ServedVersion:
        """Read every file the pointer names and compute what requests would otherwise wait for."""
        started = time.perf_counter()
        retriever = Retriever.from_sources(pointer.sources, pointer.info)
        version = cls(pointer, retriever, root)
        version._warm()
        if precompute not in ("auto", "all", "none"):
            raise ValueError(f"precompute must be auto, all or none, got {precompute!r}")
        cat = version.catalogue
        if precompute == "all" or (precompute == "auto" and cat.n_users * cat.n_items <= PRECOMPUTE_BUDGET):
            version._precompute(int(depth))
        version.load_seconds = time.perf_counter() - started
        return version

    def _warm(self) -> None:
        """Load the index, scorer and models now, not on the first request."""
        r = self.retriever
        via = r.recommend_via
        if self.model_folder is not None and _folds_in(model_class(self.model_folder)):
            from recflow.models import load_model

            self.fold_in = load_model(self.model_folder)
            if via == "model" and "model" in r.sources:
                r.__dict__["_model"] = self.fold_in  # one copy serves both (cached_property's slot)
        if via == "model":
            r._model  # noqa: B018  (loads it)
            self.via_label = "model scores"
        elif via == "dot":
            r._user_factors  # noqa: B018
            self.via_label = "exact dot product"
        else:
            r._user_factors  # noqa: B018
            space = r._index.space(r._index.primary())
            self.via_label = f"{space.kind} index"
            self.searches_inline = True  # one index search: cheaper than the thread hop (recflow.api.app)
        for mode in r.similar_modes():
            r._similar_index.space(mode)
        self.catalogue.popular  # noqa: B018
        self.catalogue.title_index  # noqa: B018

    def _precompute(self, depth: int) -> None:
        """Every warm user's top ``depth`` unseen items (``-1`` padding), by the served ranking (``Retriever.recommend_many``)."""
        cat = self.catalogue
        depth = max(1, min(int(depth), cat.n_items))
        items = np.full((cat.n_users, depth), -1, dtype=np.int32)
        scores = np.full((cat.n_users, depth), -np.inf, dtype=np.float32)
        warm = np.flatnonzero(cat.user_train_count > 0)
        items[warm], scores[warm] = self.retriever.recommend_many(warm, depth, PRECOMPUTE_BATCH)
        self.top_items, self.top_scores, self.depth = items, scores, depth

    # -- what it is ----------------------------------------------------------------------------
    @property
    def model(self) -> str:
        return self.info["recommend_model"]

    @property
    def version(self) -> int | None:
        return self.info.get("version")

    @property
    def key(self) -> str:
        return self.pointer.key

    def metadata(self) -> dict[str, Any]:
        record = self.pointer.record
        trained = self.model_folder / "params.json" if self.model_folder is not None else None
        trained_at = datetime.fromtimestamp(trained.stat().st_mtime, timezone.utc).isoformat(timespec="seconds") if trained and trained.is_file() else None
        return {
            "dataset": record["dataset"],
            "registered_model": self.info.get("registered_model"),
            "served_from": self.info.get("served_from"),
            **self.header,
            "recommend_via": self.retriever.recommend_via,
            "similar_model": self.info.get("similar_model"),
            "protocol": record.get("protocol"),
            "metric": record.get("metric"),
            "metric_value": self.info.get("metric_value"),
            "metrics": self.entry.get("metrics", {}),
            "trained_at": trained_at,
            "run_created": record.get("created"),
            "loaded_at": self.loaded_at,
            "load_seconds": round(self.load_seconds, 3),
            "folds_in_history": self.fold_in is not None,
            "fold_in_models": self.capable,
            "precomputed": {"users": int((self.top_items[:, 0] >= 0).sum()) if self.top_items is not None else 0, "depth": self.depth},
            "catalogue": {"users": self.catalogue.n_users, "items": self.catalogue.n_items},
        }

    # -- answers (plain dicts, encoded by the app) ---------------------------------------------
    def _rows(self, items, scores) -> list[dict[str, Any]]:
        ids, titles = self.item_ids, self.titles
        return [{"rank": r + 1, "item_id": ids[i], "title": titles[i], "score": s} for r, (i, s) in enumerate(zip(items, scores))]

    def _from_answer(self, answer: Answer, **head: Any) -> dict[str, Any]:
        out = {**head, **self.header, "via": answer.via, "items": self._rows(answer.item_idx.tolist(), answer.scores.tolist())}
        if answer.model != self.model:  # the popularity fallback, or the similar model
            out["model"], out["model_run_id"] = answer.model, self.pointer.record["models"].get(answer.model, {}).get("run_id")
        if answer.note:
            out["note"] = answer.note
        return out

    def precomputed(self, user_id: int, k: int) -> dict[str, Any] | None:
        """The answer from the top-K table, or None when the table cannot give it (cold user, k > depth)."""
        if self.top_items is None or k > self.depth:
            return None
        user = self.catalogue.user_index(user_id)
        if user < 0 or self.top_items[user, 0] < 0:
            return None
        items = self.top_items[user, :k]
        n = int(np.count_nonzero(items >= 0))
        return {"user_id": user_id, **self.header, "via": self.via_label, "items": self._rows(items[:n].tolist(), self.top_scores[user, :n].tolist())}

    def recommend(self, user_id: int, k: int, exclude_seen: bool = True, fallback: str | None = None) -> dict[str, Any]:
        """``GET /recommend``: the table when it holds the answer, else the retriever (the same ranking)."""
        if exclude_seen:
            hit = self.precomputed(user_id, k)
            if hit is not None:
                return hit
        return self._from_answer(self.retriever.recommend(user_id, k, fallback, exclude_seen=exclude_seen), user_id=user_id)

    def recommend_history(self, item_ids: list[int], k: int, exclude_seen: bool = True) -> dict[str, Any]:
        """``POST /recommend``: a user outside the training data, scored from their items by the fold-in model."""
        if self.fold_in is None:
            can = ", ".join(self.capable) or "none"
            raise FoldInNotSupported(
                f"{self.model} cannot score a user from a list of items (it is not a function of the history); "
                f"the models of run {self.info.get('run_id')} that can: {can} (serve one with `recflow api --model NAME`)",
                self.capable,
            )
        cat = self.catalogue
        idx = cat.item_index(item_ids)
        unknown = [int(i) for i, j in zip(item_ids, idx.tolist()) if j < 0]
        if unknown:
            shown = ", ".join(map(str, unknown[:10])) + (" ..." if len(unknown) > 10 else "")
            raise UnknownItems(f"{len(unknown)} item id(s) are not in this catalogue of {cat.n_items} items: {shown}", unknown)
        scores = np.array(self.fold_in.score_history([idx])[0], dtype=np.float32)
        if exclude_seen:
            scores[idx] = -np.inf
        top = top_k(scores, min(k, cat.n_items))
        top = top[np.isfinite(scores[top])]
        return {"history": len(set(idx.tolist())), **self.header, "via": "history fold-in", "items": self._rows(top.tolist(), scores[top].tolist())}

    def similar(self, k: int, item_id: int | None = None, title: str | None = None, mode: str | None = None) -> dict[str, Any]:
        r = self.retriever
        answer = r.similar_item(item_id, k, mode) if item_id is not None else r.similar(title, k, mode)
        return self._from_answer(answer, query=answer.query, query_item_id=answer.extra.get("query_item_id"), mode=answer.extra.get("mode"))


__all__ = ["FoldInNotSupported", "ServedVersion", "UnknownItems", "UnknownUser"]
