"""evaluate[<model>]: full-ranking and rating metrics of a trained model on the test split."""

from __future__ import annotations

from pathlib import Path

import recflow.evaluate as evaluate_lib
import recflow.metrics as metrics_lib
from recflow.config import EvaluationConfig
from recflow.models import MODELS
from recflow.store import Artifact
from tasks.caching import produce, stage
from tasks.loading import load_parts


@stage("evaluate", code=(evaluate_lib, metrics_lib), task_run_name="evaluate[{model.meta[model]}]")
def evaluate(model: Artifact, split: Artifact, config: EvaluationConfig) -> Artifact:
    def build(out: Path) -> dict:
        parts = load_parts(split)
        fitted = MODELS[model.meta["model"]].load(model.file("model"))
        evaluate_lib.check_evaluable(parts["train"], parts["test"], config.relevance_threshold)
        exclude = parts["valid"].seen if config.mask_valid and len(parts["valid"]) else None
        metrics = evaluate_lib.evaluate_ranking(
            fitted, parts["train"], parts["test"], ks=config.ks, exclude=exclude,
            relevance_threshold=config.relevance_threshold, batch_users=config.batch_users,
        )
        if fitted.predicts_ratings:
            scale = split.meta.get("rating_scale")
            metrics.update(evaluate_lib.evaluate_ratings(fitted, parts["test"], clip=tuple(scale) if scale else None))
        return {"model": model.meta["model"], "protocol": split.meta["protocol"], "metrics": metrics}

    return produce("evaluate", build)
