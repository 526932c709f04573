"""index[<model>]: tuned FAISS / hnswlib indexes over one trained model's embeddings, saved natively."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

import recflow.prep.genres as genres_lib
import recflow.retrieval.build as retrieval_lib
from recflow.experiments.config import IndexConfig
from recflow.models import MODELS, load_model
from recflow.retrieval.index import TuningGrid
from recflow.runtime.store import Artifact
from recflow.utils.numeric import distinct
from tasks.caching import chosen_model, produce, stage, trained_models


def has_embeddings(model_name: str) -> bool:
    """Whether a model class declares vectors to index (``vector_spaces``: by class, before anything is trained)."""
    return bool(MODELS[model_name].vector_spaces())


@stage("index", code=(chosen_model(lambda inputs: trained_models(inputs["model"])),), task_run_name="index[{model.meta[model]}]")
def index(model: Artifact, split: Artifact, data: Artifact, config: IndexConfig) -> Artifact:
    def build(out: Path) -> dict:
        ids = pq.read_table(split.file("split.parquet"), columns=["user_id", "item_id"])
        user_ids = distinct(ids["user_id"].to_numpy())
        item_ids = distinct(ids["item_id"].to_numpy())
        genres, _ = genres_lib.genre_matrix(item_ids, pd.read_parquet(data.file("items.parquet"), columns=["item_id", "genres"]))
        fitted = load_model(model.file("model"))
        return retrieval_lib.build_serving_indexes(fitted, item_ids, user_ids, TuningGrid.from_config(config), out, genres=genres if genres.shape[1] else None)

    return produce("index", build)
