"""Reading stage outputs back into library objects (shared by the tasks that consume a split)."""

from __future__ import annotations

import pandas as pd

from recflow.interactions import Interactions, index_split
from recflow.store import Artifact


def load_parts(split: Artifact) -> dict[str, Interactions]:
    return index_split(pd.read_parquet(split.file("split.parquet")))
