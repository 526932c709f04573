"""Reading stage outputs back into library objects (shared by the tasks that consume them)."""

from __future__ import annotations

import pandas as pd

from recflow.interactions import Interactions, index_split
from recflow.models.context import FitContext
from recflow.store import Artifact


def load_parts(split: Artifact) -> dict[str, Interactions]:
    return index_split(pd.read_parquet(split.file("split.parquet")))


def _optional(artifact: Artifact | None, name: str) -> pd.DataFrame | None:
    if artifact is None:
        return None
    path = artifact.file(name)
    return pd.read_parquet(path) if path.exists() else None


def fit_context(parts: dict[str, Interactions], data: Artifact, features: Artifact | None, samples: Artifact | None) -> FitContext:
    """Everything a model may use besides train: validation part, train-only features, side tables, samples."""
    return FitContext(
        valid=parts["valid"] if len(parts["valid"]) else None,
        user_features=_optional(features, "user_features.parquet"),
        item_features=_optional(features, "item_features.parquet"),
        items=_optional(data, "items.parquet"),
        users=_optional(data, "users.parquet"),
        tags=_optional(data, "tags.parquet"),
        tmdb=_optional(data, "tmdb.parquet"),
        samples=samples.dir() if samples is not None else None,
    )
