"""Model registry: config params -> unfitted model, saved folder -> fitted model.

Entries are lazy: ``MODELS[name]`` imports that model's module only, so loading one saved model (``recflow
recommend``'s champion) does not import every model (Keras towers, gensim, hnswlib, scipy.linalg) first.
Iterating ``MODELS`` imports them all. Each entry's class must carry the registry's name (checked on access).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recflow.models.base import NotFittedError, NotSupported, Recommender, VectorSpace

if TYPE_CHECKING:
    from pydantic import BaseModel

#: name -> (module under recflow.models, class, family); the family is what kind of model it is, for people
#: comparing runs (MLflow's compare page draws it as an axis) without importing the class
ENTRIES: dict[str, tuple[str, str, str]] = {
    "popular": ("popular", "PopularRecommender", "popularity"),
    "bias": ("bias", "BiasRecommender", "baselines"),
    "ease": ("ease", "EASERecommender", "linear autoencoder"),
    "item2vec": ("item2vec", "Item2VecRecommender", "item embedding"),
    "deepwalk": ("deepwalk", "DeepWalkRecommender", "item embedding"),
    "mf": ("mf", "BiasedMFRecommender", "matrix factorisation"),
    "autorec": ("autorec", "AutoRecRecommender", "autoencoder"),
    "user_cf": ("user_cf", "UserCFRecommender", "neighbourhood"),
    "two_tower": ("two_tower", "TwoTowerRecommender", "two-tower network"),
    "dssm": ("dssm", "DSSMRecommender", "two-tower network"),
    "hybrid": ("hybrid", "HybridRecommender", "two-tower network"),
    "bpr": ("bpr", "BPRRecommender", "matrix factorisation"),
    "item_knn": ("item_knn", "ItemKNNRecommender", "neighbourhood"),
    "edlae": ("edlae", "EDLAERecommender", "linear autoencoder"),
    "mult_vae": ("mult_vae", "MultVAERecommender", "autoencoder"),
    "rank_fusion": ("rank_fusion", "RankFusionRecommender", "ensemble"),
}
_CLASSES = {cls: (name, module) for name, (module, cls, _) in ENTRIES.items()}


class Registry(Mapping[str, type[Recommender]]):
    """A mapping name -> model class that imports a class's module on first access.

    The built-in models are ``ENTRIES``; a model defined elsewhere (a team's own, a test's) joins with
    ``register``, which refuses a name already taken, so a saved folder's name always means one class."""

    def __init__(self) -> None:
        self.registered: dict[str, type[Recommender]] = {}

    def register(self, cls: type[Recommender]) -> type[Recommender]:
        """Add ``cls`` under its ``name`` (usable as a class decorator)."""
        if cls.name in ENTRIES or self.registered.get(cls.name, cls) is not cls:
            raise ValueError(f"a model named {cls.name!r} is already registered")
        self.registered[cls.name] = cls
        return cls

    def __getitem__(self, name: str) -> type[Recommender]:
        if name in self.registered:
            return self.registered[name]
        module, cls_name, _ = ENTRIES[name]
        cls = getattr(importlib.import_module(f"{__name__}.{module}"), cls_name)
        if cls.name != name:
            raise RuntimeError(f"recflow.models.{module}.{cls_name}.name is {cls.name!r}, registered as {name!r}")
        return cls

    def family(self, name: str) -> str:
        """What kind of model ``name`` is ("linear autoencoder", "matrix factorisation" ...), without importing it;
        a registered class's ``family`` attribute, else "custom"."""
        if name in self.registered:
            return str(getattr(self.registered[name], "family", "custom"))
        return ENTRIES[name][2]

    def __iter__(self) -> Iterator[str]:
        yield from ENTRIES
        yield from self.registered

    def __len__(self) -> int:
        return len(ENTRIES) + len(self.registered)

    def __repr__(self) -> str:
        return f"Registry({list(self)})"


MODELS = Registry()


def __getattr__(attr: str) -> Any:
    """``from recflow.models import BiasRecommender``: the class, imported on demand."""
    if attr in _CLASSES:
        return MODELS[_CLASSES[attr][0]]
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


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
