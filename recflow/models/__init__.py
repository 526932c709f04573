"""Model registry: config params -> unfitted model, saved folder -> fitted model."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from recflow.models.autorec import AutoRecRecommender
from recflow.models.base import NotFittedError, NotSupported, Recommender, VectorSpace
from recflow.models.bias import BiasRecommender
from recflow.models.bpr import BPRRecommender
from recflow.models.deepwalk import DeepWalkRecommender
from recflow.models.dssm import DSSMRecommender
from recflow.models.ease import EASERecommender
from recflow.models.edlae import EDLAERecommender
from recflow.models.hybrid import HybridRecommender
from recflow.models.item2vec import Item2VecRecommender
from recflow.models.item_knn import ItemKNNRecommender
from recflow.models.mf import BiasedMFRecommender
from recflow.models.mult_vae import MultVAERecommender
from recflow.models.popular import PopularRecommender
from recflow.models.rank_fusion import RankFusionRecommender
from recflow.models.two_tower import TwoTowerRecommender
from recflow.models.user_cf import UserCFRecommender

MODELS: dict[str, type[Recommender]] = {
    PopularRecommender.name: PopularRecommender,
    BiasRecommender.name: BiasRecommender,
    EASERecommender.name: EASERecommender,
    Item2VecRecommender.name: Item2VecRecommender,
    DeepWalkRecommender.name: DeepWalkRecommender,
    BiasedMFRecommender.name: BiasedMFRecommender,
    AutoRecRecommender.name: AutoRecRecommender,
    UserCFRecommender.name: UserCFRecommender,
    TwoTowerRecommender.name: TwoTowerRecommender,
    DSSMRecommender.name: DSSMRecommender,
    HybridRecommender.name: HybridRecommender,
    BPRRecommender.name: BPRRecommender,
    ItemKNNRecommender.name: ItemKNNRecommender,
    EDLAERecommender.name: EDLAERecommender,
    MultVAERecommender.name: MultVAERecommender,
    RankFusionRecommender.name: RankFusionRecommender,
}


def build_model(params: BaseModel) -> Recommender:
    """An unfitted model from its config params (``PopularParams``, ``BiasParams`` ...)."""
    try:
        cls = MODELS[params.name]
    except KeyError:
        raise KeyError(f"unknown model {params.name!r}; known: {sorted(MODELS)}") from None
    return cls(**params.model_dump(exclude={"name"}))


def load_model(path: str | Path) -> Recommender:
    """A fitted model from a folder written by ``save``, whatever its class."""
    name = json.loads((Path(path) / "params.json").read_text())["name"]
    if name not in MODELS:
        raise KeyError(f"{path} holds an unknown model {name!r}; known: {sorted(MODELS)}")
    return MODELS[name].load(path)


__all__ = [
    "MODELS",
    "build_model",
    "load_model",
    "Recommender",
    "VectorSpace",
    "NotFittedError",
    "NotSupported",
    "BiasRecommender",
    "BPRRecommender",
    "ItemKNNRecommender",
    "PopularRecommender",
]
