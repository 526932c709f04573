"""An artifacts root built by hand from tiny fitted models, and a real uvicorn server over it.

Two pipeline runs, recorded as ``recflow run`` records them (``serving/runs/<id>.json``, the
champion file ``serving/champions/recflow-tiny.json``): run A's best model is EASE (v1), run B's
is item-kNN (v2). Both hold popular, EASE, item-kNN and MF (the one with an index, so ``/similar``
answers). The fixture serves v1; a test moves the champion to v2 by rewriting the champion file,
exactly as ``register_champion`` does. Run C (``build_index_run``, never promoted) holds one model
whose recommendations come from its index (``recommend_via = index``): what the 25M shape serves.
40 users x 30 items, seeded: seconds to build.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from recflow.api.app import create_app
from recflow.api.service import Service
from recflow.experiments.serving.records import champions_dir, runs_dir
from recflow.models.ease import EASERecommender
from recflow.models.item_knn import ItemKNNRecommender
from recflow.models.mf import BiasedMFRecommender
from recflow.models.popular import PopularRecommender
from recflow.prep.interactions import index_split
from recflow.retrieval.build import build_catalogue, build_serving_indexes
from recflow.retrieval.index import TuningGrid
from recflow.runtime.store import write_json_atomic

N_USERS, N_ITEMS = 40, 30
USER_IDS = np.arange(1, N_USERS + 1) * 10  # raw ids 10, 20, ... 400
ITEM_IDS = np.arange(N_ITEMS) + 101  # raw ids 101 ... 130
TITLES = ["Toy Story (1995)", "Jumanji (1995)", "Heat (1995)"] + [f"Movie {i} (2000)" for i in range(3, N_ITEMS)]
COLD_USER = 9990  # only in the test part: in the catalogue, no training ratings


def tiny_frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for u in USER_IDS:
        for rank, i in enumerate(rng.choice(ITEM_IDS, int(rng.integers(6, 12)), replace=False)):
            rows.append((int(u), int(i), float(rng.integers(1, 6)), rank, "test" if rank == 0 else "train"))
    rows.append((COLD_USER, int(ITEM_IDS[0]), 4.0, 0, "test"))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp", "split"])


def _record(root: Path, run_id: str, best: str, entries: dict, catalogue: Path) -> dict:
    return {
        "dataset": "tiny",
        "registered_model": "recflow-tiny",
        "run_id": run_id,
        "experiment": "tiny",
        "tracking_uri": "sqlite:///none",
        "catalogue": str(catalogue.relative_to(root)),
        "metric": "recall_at_10",
        "greater_is_better": True,
        "significance_level": 0.05,
        "protocol": {"split": {"protocol": "hand-made"}, "mask_valid": True, "relevance_threshold": None},
        "best": best,
        "similar": "mf",
        "models": entries,
        "created": "2026-01-01T00:00:00+00:00",
    }


def _split_and_catalogue(root: Path, run_id: str):
    """The tiny split written as the split stage writes it, its catalogue folder, and its training part."""
    frame = tiny_frame()
    data = root / "split" / run_id
    data.mkdir(parents=True)
    frame.to_parquet(data / "split.parquet")
    pd.DataFrame({"item_id": ITEM_IDS, "title": TITLES}).to_parquet(data / "items.parquet")
    catalogue = root / "catalogue" / run_id
    build_catalogue(data / "split.parquet", data / "items.parquet", catalogue)
    return catalogue, index_split(frame)["train"]


def build_run(root: Path, run_id: str, best: str, ease_l2: float) -> dict:
    """Fit the four models on the tiny split, save them like the train and index stages, record the run."""
    catalogue, train = _split_and_catalogue(root, run_id)
    models = {
        "popular": PopularRecommender(),
        "ease": EASERecommender(l2=ease_l2),
        "item_knn": ItemKNNRecommender(k=10),
        "mf": BiasedMFRecommender(factors=4, epochs=3),
    }
    entries = {}
    for i, (name, model) in enumerate(models.items()):
        model.fit(train)
        folder = root / "train" / f"{run_id}-{name}"
        model.save(folder / "model")
        index = None
        via = "model"
        if model.vector_spaces():
            out = root / "index" / f"{run_id}-{name}"
            summary = build_serving_indexes(model, train.item_ids, train.user_ids, TuningGrid(kinds=("flat", "hnswlib"), n_queries=20, latency_queries=10), out)
            write_json_atomic(out / "summary.json", summary)
            index, via = str(out.relative_to(root)), summary["recommend_via"]
        entries[name] = {
            "run_id": f"{run_id}-{name}",
            "model": str((folder / "model").relative_to(root)),
            "index": index,
            "recommend_via": via,
            "similar": index is not None,
            "metrics": {"recall_at_10": 0.5 - 0.1 * i, "recall_at_10_ci_low": 0.4 - 0.1 * i, "recall_at_10_ci_high": 0.6 - 0.1 * i},
            "per_user": None,
            "genre_overlap": None,
        }
    record = _record(root, run_id, best, entries, catalogue)
    write_json_atomic(runs_dir(root) / f"{run_id}.json", record)
    return record


class UnitVectors:
    """A model whose score is ``U[u] . V[i]`` with unit item rows: its index folder serves ``recommend_via = index``."""

    name = "vectors"

    def __init__(self, n_users: int, n_items: int, dim: int = 6) -> None:
        rng = np.random.default_rng(5)
        self.n_users, self.n_items = n_users, n_items
        V = rng.standard_normal((n_items, dim)).astype(np.float32)
        self.V = V / np.linalg.norm(V, axis=1, keepdims=True)
        self.U = rng.standard_normal((n_users, dim)).astype(np.float32)

    def vector_spaces(self):
        from recflow.models.base import VectorSpace

        return [VectorSpace("items", "item"), VectorSpace("users", "user")]

    def item_embeddings(self, space=None):
        return self.V

    def user_embeddings(self):
        return self.U

    def dot_factors(self):
        return self.U, self.V, np.ones(self.n_items, bool)

    def score(self, users):
        return self.U[users] @ self.V.T


def build_index_run(root: Path, run_id: str) -> dict:
    """A run whose only model answers through its index (``recommend_via = index``), on the same tiny split."""
    catalogue, train = _split_and_catalogue(root, run_id)
    model = UnitVectors(len(train.user_ids), len(train.item_ids))
    out = root / "index" / f"{run_id}-vectors"
    summary = build_serving_indexes(model, train.item_ids, train.user_ids, TuningGrid(kinds=("flat",), n_queries=20, latency_queries=10), out)
    write_json_atomic(out / "summary.json", summary)
    assert summary["recommend_via"] == "index", summary["recommend_via"]
    entry = {"run_id": f"{run_id}-vectors", "model": None, "index": str(out.relative_to(root)), "recommend_via": "index", "similar": True, "metrics": {}}
    record = {**_record(root, run_id, "vectors", {"vectors": entry}, catalogue), "similar": "vectors"}
    write_json_atomic(runs_dir(root) / f"{run_id}.json", record)
    return record


def promote(root: Path, run_id: str, version: int, model: str) -> None:
    """Move the champion to ``run_id`` as ``register_champion`` records it (an atomic file replace)."""
    write_json_atomic(
        champions_dir(root) / "recflow-tiny.json",
        {
            "registered_model": "recflow-tiny",
            "version": version,
            "run_id": run_id,
            "record": str((runs_dir(root) / f"{run_id}.json").relative_to(root)),
            "model": model,
            "metric": "recall_at_10",
            "value": 0.5,
            "updated": "2026-01-01T00:00:00+00:00",
        },
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn on a free loopback port, in a thread of this process, over a ``Service``."""

    def __init__(self, service: Service) -> None:
        import uvicorn

        self.service = service
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(service), host="127.0.0.1", port=self.port, log_level="warning", access_log=False, loop="asyncio")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise TimeoutError("recflow api did not become ready")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
