"""evaluate[<model>]: full-ranking and rating metrics of a trained model on the test split.

Output: ``summary.json`` (metrics with their population counts and confidence intervals) and
``per_user.parquet`` (``user_id`` and each evaluated user's value of every per-user metric): what the
champion's paired significance test reads (``recflow.experiments.serving``).
"""

from __future__ import annotations

from pathlib import Path

import recflow.evaluation.evaluate as evaluate_lib
from recflow.experiments.config import EvaluationConfig
from recflow.models import MODELS
from recflow.runtime.store import Artifact
from tasks.caching import chosen_model, produce, stage, trained_models
from tasks.loading import load_parts

PER_USER_FILE = "per_user.parquet"


def keyed_on_results(inputs: dict) -> dict:
    """The config without its execution fields (``batch_users``): the metrics do not depend on them."""
    config = inputs["config"]
    values = config.model_dump(mode="json") if isinstance(config, EvaluationConfig) else dict(config or {})
    return {**inputs, "config": {k: v for k, v in values.items() if k not in EvaluationConfig.execution_fields}}


@stage(
    "evaluate",
    code=(chosen_model(lambda inputs: trained_models(inputs["model"])),),
    keyed_on=keyed_on_results,
    task_run_name="evaluate[{model.meta[model]}]",
)
def evaluate(model: Artifact, split: Artifact, config: EvaluationConfig) -> Artifact:
    def build(out: Path) -> dict:
        parts = load_parts(split)
        fitted = MODELS[model.meta["model"]].load(model.file("model"))
        evaluate_lib.check_evaluable(parts["train"], parts["test"], config.relevance_threshold)
        forward = split.meta.get("time_forward")
        exclude = parts["valid"].seen if config.mask_valid and len(parts["valid"]) else None
        metrics, per_user = evaluate_lib.evaluate_ranking_per_user(
            fitted,
            parts["train"],
            parts["test"],
            ks=config.ks,
            exclude=exclude,
            relevance_threshold=config.relevance_threshold,
            batch_users=config.batch_users,
            cold_start=forward is not None,  # a growing log: newcomers are judged apart from the warm users the main metrics cover
        )
        metrics = evaluate_lib.with_confidence_intervals(metrics, per_user, n_boot=config.bootstrap_samples, level=config.ci_level, seed=config.bootstrap_seed)
        per_user.to_parquet(out / PER_USER_FILE, index=False)
        if fitted.predicts_ratings:
            scale = split.meta.get("rating_scale")
            metrics.update(evaluate_lib.evaluate_ratings(fitted, parts["test"], clip=tuple(scale) if scale else None, train=parts["train"]))
        return {
            "model": model.meta["model"],
            "protocol": split.meta["protocol"],
            **({"period": forward["period"]} if forward else {}),
            "metrics": metrics,
            "per_user": PER_USER_FILE,
            "ci_level": config.ci_level,
        }

    return produce("evaluate", build)
