"""train[<model>]: fit one model on the training split and save it in its native format.

An ensemble (a model with ``member_names()``) trains after its members and from their descriptors:
each member's saved fit is loaded and handed over in ``context.members``, none refitted. Their
fingerprints are in its cache key, so a member that retrains retrains the ensemble too.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from recflow.evaluation.plots import loss_curve
from recflow.experiments.config import ModelParams
from recflow.experiments.tracking import KERAS_FLAVOR_DIR, save_keras_flavor
from recflow.models import build_model, load_model
from recflow.runtime.store import Artifact
from tasks.caching import chosen_model, produce, stage
from tasks.loading import fit_context, load_parts
from tasks.reporting import epoch_progress


def members_of(params: ModelParams) -> tuple[str, ...]:
    """The models an ensemble combines (its ``member_names()``); () for a model that learns alone."""
    return build_model(params).member_names()


@stage("train", code=(chosen_model(lambda inputs: [inputs["params"].name, *members_of(inputs["params"])]),), task_run_name="train[{params.name}]")
def train(
    data: Artifact,
    split: Artifact,
    features: Artifact,
    samples: Artifact | None,
    params: ModelParams,
    members: dict[str, Artifact] | None = None,
) -> Artifact:
    def build(out: Path) -> dict:
        parts = load_parts(split)
        context = fit_context(parts, data, features, samples)
        if members:
            context.members = {name: load_model(member.file("model")) for name, member in members.items()}
        model = build_model(params)
        progress = epoch_progress(params.name, model.epoch_budget())
        context.on_epoch_end = context.on_epoch_end or progress
        started = time.perf_counter()
        try:
            model.fit(parts["train"], context)
        finally:  # a model that stopped early (or failed) still ends its progress bar
            if progress is not None:
                progress.close()
        seconds = time.perf_counter() - started
        model.save(out / "model")
        if model.framework_flavour == "keras":
            save_keras_flavor(model.framework_model(), out / KERAS_FLAVOR_DIR)
        history = list(model.history_)
        (out / "history.json").write_text(json.dumps(history, default=float))
        loss_curve(history, out / "loss_curve.png", title=params.name)
        # per-epoch throughput without validation; epoch 1 also pays compilation where there is one
        rates = [h["examples_per_second"] for h in history if "examples_per_second" in h]
        rates = rates[1:] or rates
        return {
            "model": params.name,
            **({"members": sorted(members)} if members else {}),
            "params": params.model_dump(mode="json"),
            "fit_seconds": round(seconds, 4),
            "n_train": len(parts["train"]),
            "train_examples_per_second": round(len(parts["train"]) / max(seconds, 1e-9), 1),
            "epochs_run": len(history),
            **({"epoch_examples_per_second": round(float(np.median(rates)), 1)} if rates else {}),
        }

    return produce("train", build)
