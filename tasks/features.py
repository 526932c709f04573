"""features: user and item feature tables from the training split only."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import recflow.prep.features as features_lib
from recflow.experiments.config import FeaturesConfig
from recflow.runtime.store import Artifact
from tasks.caching import produce, stage


@stage("features", task_run_name="features")
def features(data: Artifact, split: Artifact, config: FeaturesConfig) -> Artifact:
    def build(out: Path) -> dict:
        train = pd.read_parquet(split.file("split.parquet"), filters=[("split", "==", "train")])
        items = pd.read_parquet(data.file("items.parquet"))
        inputs = {"ingest": data.fingerprint, "split": split.fingerprint}
        return features_lib.write_feature_tables(train, items, config, out, inputs)

    return produce("features", build)
