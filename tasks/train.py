"""train[<model>]: fit one model on the training split and save it in its native format."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import recflow.interactions as interactions_lib
import recflow.models.base as base_lib
from recflow.config import ModelParams
from recflow.models import MODELS, build_model
from recflow.store import Artifact
from tasks.caching import produce, stage
from tasks.loading import load_parts


def _model_code(inputs: dict) -> list:
    """Only the chosen model's module is in the key: editing one model reruns only that model."""
    return [sys.modules[MODELS[inputs["params"].name].__module__]]


@stage("train", code=(interactions_lib, base_lib, _model_code), task_run_name="train[{params.name}]")
def train(split: Artifact, features: Artifact, params: ModelParams) -> Artifact:
    def build(out: Path) -> dict:
        parts = load_parts(split)
        model = build_model(params)
        started = time.perf_counter()
        model.fit(parts["train"])
        seconds = time.perf_counter() - started
        model.save(out / "model")
        return {
            "model": params.name,
            "params": params.model_dump(mode="json"),
            "fit_seconds": round(seconds, 4),
            "n_train": len(parts["train"]),
            "train_examples_per_second": round(len(parts["train"]) / max(seconds, 1e-9), 1),
        }

    return produce("train", build)
