"""split: canonical ratings -> one Parquet file with a train/valid/test column, per the protocol."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import recflow.prep.split as split_lib
from recflow.experiments.config import SplitConfig
from recflow.runtime.store import Artifact
from tasks.caching import produce, stage


@stage("split", task_run_name="split[{config.protocol}]")
def split(data: Artifact, config: SplitConfig) -> Artifact:
    def build(out: Path) -> dict:
        ratings = pd.read_parquet(data.file("ratings.parquet"))
        result = split_lib.split_ratings(ratings, config)
        split_lib.check_evaluable(result.stats)  # fail before any model trains on an unjudgeable split
        result.frame.to_parquet(out / "split.parquet", index=False)
        return {**result.stats, "protocol": config.protocol, "rating_scale": data.meta.get("rating_scale")}

    return produce("split", build)
