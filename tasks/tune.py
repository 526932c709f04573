"""Tuning tasks: the train + valid split a study judges on (cached), and one task per trial."""

from __future__ import annotations

import time
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

import recflow.experiments.tuning as tuning_lib
from recflow.experiments.config import ModelParams
from recflow.models import build_model
from recflow.runtime.store import Artifact
from tasks.caching import produce, stage
from tasks.loading import fit_context


@stage("tuning_split", code=(tuning_lib,), task_run_name="tuning_split")
def tuning_split(split: Artifact, valid_fraction: float, seed: int) -> Artifact:
    """The split's train and valid rows only (valid carved from train when the preset has none).

    Written as a ``split.parquet`` like the split stage's, so features, sampling and the trials
    read it exactly as they read a split, and no test row is in it.
    """

    def build(out: Path) -> dict:
        frame = tuning_lib.read_tuning_frame(split.file("split.parquet"))
        carved = not (frame["split"] == "valid").any()
        frame = tuning_lib.tuning_frame(frame, valid_fraction, seed)
        frame.to_parquet(out / "split.parquet", index=False)
        counts = frame["split"].value_counts()
        return {
            "protocol": split.meta["protocol"],
            "rating_scale": split.meta.get("rating_scale"),
            "valid_carved_from_train": bool(carved),
            "n_train": int(counts.get("train", 0)),
            "n_valid": int(counts.get("valid", 0)),
        }

    return produce("tuning_split", build)


@task(name="trial", task_run_name="trial[{params.name} #{number}]", cache_policy=NO_CACHE)
def tune_trial(
    number: int,
    data: Artifact,
    split: Artifact,
    features: Artifact | None,
    samples: Artifact | None,
    params: ModelParams,
    metric: str,
    ks: list[int],
    relevance_threshold: float | None,
) -> dict:
    """Fit ``params`` on the tuning train part, score it on the valid part; metrics and fit seconds."""
    parts = tuning_lib.tuning_parts(tuning_lib.read_tuning_frame(split.file("split.parquet")))
    model = build_model(params)
    started = time.perf_counter()
    model.fit(parts["train"], fit_context(parts, data, features, samples))
    fit_seconds = time.perf_counter() - started
    metrics = tuning_lib.validation_metrics(
        model, parts, metric=metric, ks=ks, relevance_threshold=relevance_threshold, rating_scale=split.meta.get("rating_scale")
    )
    return {"metrics": metrics, "fit_seconds": round(fit_seconds, 4)}
