"""index[<model>]: tuned FAISS / hnswlib indexes over one trained model's embeddings, saved natively.

A model that warm-started (its train summary's ``warm_start_from``: the earlier fit it continued)
continues the index built over that earlier fit instead of rebuilding it, where the index kind takes
new rows in place (``recflow.retrieval.build.continue_serving_indexes``: hnswlib, faiss flat and
IVF-flat; no retuning). Which index that is, is recorded per fit and index configuration under
``<root>/warmstarts/indexes/`` when an index is built; the task's cache key holds it (``keyed_on``),
as a warm fit's key holds the fit it continued. Without a record, with one collected by gc, or for a
cold fit (the first night, a refresh), the index is built and tuned from scratch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

import recflow.prep.genres as genres_lib
import recflow.retrieval.build as retrieval_lib
from recflow.experiments.config import IndexConfig
from recflow.models import MODELS, load_model
from recflow.retrieval.index import TuningGrid
from recflow.runtime.store import Artifact, artifacts_root, canonical_json, write_json_atomic
from recflow.utils.numeric import distinct
from tasks.caching import chosen_model, produce, stage, trained_models

RECORDS = Path("warmstarts") / "indexes"


def has_embeddings(model_name: str) -> bool:
    """Whether a model class declares vectors to index (``vector_spaces``: by class, before anything is trained)."""
    return bool(MODELS[model_name].vector_spaces())


def _record_file(root: Path, train_path: str, config: IndexConfig | dict[str, Any]) -> Path:
    settings = config.model_dump(mode="json") if isinstance(config, IndexConfig) else config
    digest = hashlib.sha256(canonical_json({"train": train_path, "config": settings}).encode()).hexdigest()[:24]
    return root / RECORDS / f"{digest}.json"


def continued_index(model: Artifact, config: IndexConfig, root: Path | None = None, verify: bool = True) -> Artifact | None:
    """The intact index built over the fit ``model`` warm-started from, with the same configuration; None: build from scratch.

    ``verify=False`` (the cache key): the recorded descriptor as it is; its fingerprint names the content the key
    continues, and the task body verifies it (hashing a 25M-shape index once per task, not twice)."""
    start = model.meta.get("warm_start_from")
    if not start:
        return None
    root = root or artifacts_root()
    try:
        previous = Artifact(**json.loads(_record_file(root, start, config).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return previous if not verify or previous.is_intact(root) else None


def _keyed(inputs: dict[str, Any]) -> dict[str, Any]:
    previous = continued_index(inputs["model"], inputs.get("config", {}), verify=False)
    return {**inputs, "continues": previous.cache_token() if previous is not None else None}


@stage("index", code=(chosen_model(lambda inputs: trained_models(inputs["model"])),), keyed_on=_keyed, task_run_name="index[{model.meta[model]}]")
def index(model: Artifact, split: Artifact, data: Artifact, config: IndexConfig) -> Artifact:
    previous = continued_index(model, config)

    def build(out: Path) -> dict:
        ids = pq.read_table(split.file("split.parquet"), columns=["user_id", "item_id"])
        user_ids = distinct(ids["user_id"].to_numpy())
        item_ids = distinct(ids["item_id"].to_numpy())
        genres, _ = genres_lib.genre_matrix(item_ids, pd.read_parquet(data.file("items.parquet"), columns=["item_id", "genres"]))
        genres = genres if genres.shape[1] else None
        fitted = load_model(model.file("model"))
        refused = "no earlier index to continue (a cold fit, or none recorded for the fit it continued)" if previous is None else ""
        if previous is not None:
            summary, refused = retrieval_lib.continue_serving_indexes(fitted, item_ids, user_ids, previous.dir(), out, genres=genres, label=previous.path)
            if summary is not None:
                return summary
        summary = retrieval_lib.build_serving_indexes(fitted, item_ids, user_ids, TuningGrid.from_config(config), out, genres=genres)
        return {**summary, "continued_from": None, "rebuilt": refused}

    built = produce("index", build)
    root = artifacts_root()
    write_json_atomic(_record_file(root, model.path, config), built.model_dump(mode="json"))
    return built
