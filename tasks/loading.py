"""Reading stage outputs back into library objects (shared by the tasks that consume them)."""

from __future__ import annotations

import threading

import pandas as pd

from recflow.models.context import FitContext
from recflow.prep.interactions import Interactions, index_split
from recflow.runtime.store import Artifact

_PARTS: dict[str, dict[str, Interactions]] = {}
_PARTS_LOCK = threading.Lock()


def load_parts(split: Artifact) -> dict[str, Interactions]:
    """The split's parts, read once per process and shared by the tasks that read the same split.

    Nearly every task reads the split (each model's train, evaluate and index): at 25M ratings a
    read and ``index_split`` cost seconds each time, and a Dask worker runs many such tasks in a
    row. The parts are keyed by the split's content fingerprint (a new split is a new key; one is
    kept) and their arrays are read-only, so no task can change what another one reads.
    """
    with _PARTS_LOCK:
        parts = _PARTS.get(split.fingerprint)
    if parts is not None:
        return parts
    parts = index_split(pd.read_parquet(split.file("split.parquet")))
    for part in parts.values():
        for array in (part.user_idx, part.item_idx, part.ratings, part.timestamps, part.user_ids, part.item_ids):
            array.flags.writeable = False
    with _PARTS_LOCK:
        _PARTS.clear()
        _PARTS[split.fingerprint] = parts
    return parts


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
