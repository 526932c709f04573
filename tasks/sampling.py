"""sampling: BPR triplets (three kinds of negatives), liked-item sequences and item-graph walks.

One cached task for every model that trains on samples; what it makes is the union of the
enabled models' ``sampling_needs()``, so it is skipped when no model needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

import recflow.prep.sample_files as sample_files_lib
import recflow.prep.sampling as sampling_lib
from recflow.experiments.config import ModelParams, RunConfig, SamplingConfig
from recflow.models import build_model
from recflow.runtime.store import Artifact
from tasks.caching import produce, stage
from tasks.loading import load_parts


class SamplingPlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    negatives: SamplingConfig | None = None
    sequences: dict[str, Any] | None = None
    walks: dict[str, Any] | None = None


def sampling_plan(cfg: RunConfig) -> SamplingPlan | None:
    """What the enabled models want sampled; the first model to ask for an output sets its settings."""
    needs: dict[str, dict[str, Any]] = {}
    for params in cfg.models:
        for output, settings in build_model(params).sampling_needs().items():
            needs.setdefault(output, settings)
    if not needs:
        return None
    return SamplingPlan(
        negatives=cfg.sampling if "triplets" in needs else None,
        sequences=needs.get("sequences"),
        walks=needs.get("walks"),
    )


def needs_samples(params: ModelParams) -> bool:
    """Whether the model reads the sampling stage's outputs (``sampling_needs()`` is not empty).

    A model that does not is trained without them: it need not wait for the sampling task (on a
    cluster it starts as soon as the split and the features are there), and a change of the samples
    does not touch its cache key.
    """
    return bool(build_model(params).sampling_needs())


@stage("sampling", task_run_name="sampling")
def sampling(split: Artifact, plan: SamplingPlan) -> Artifact:
    def build(out: Path) -> dict:
        train = load_parts(split)["train"]
        made, params, seconds = sampling_lib.make_samples(train, negatives=plan.negatives, sequences=plan.sequences, walks=plan.walks)
        sample_files_lib.write_samples(out, train=train, params=params, **made)
        return {
            "rows": {name: len(value) for name, value in made.items()},
            "seconds": {k: round(v, 3) for k, v in seconds.items()},
        }

    return produce("sampling", build)
