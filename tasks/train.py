"""train[<model>]: fit one model on the training split and save it in its native format.

An ensemble (a model with ``member_names()``) trains after its members and from their descriptors:
each member's saved fit is loaded and handed over in ``context.members``, none refitted. Their
fingerprints are in its cache key, so a member that retrains retrains the ensemble too.

A warm fit (``warm_from``: an earlier fit of the same model, ``warm_split``: the split it trained
on; chosen by ``recflow.runtime.warmstarts``) continues from that fit: the earlier split's raw ids
give the maps onto tonight's indices (``recflow.models.warm.WarmStart``). Both descriptors are
inputs, so the earlier fit is in the cache key: replaying the same nights reproduces the same
models. The summary states where it started (``warm_start_from``, the earlier train folder),
how much was new and what the warm fit did (``warm_start``: the model's ``warm_fit_``, e.g. rows
replayed, or EASE's ``resolved`` and why), or why the model fitted cold (``warm_start_refusal``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from prefect.futures import PrefectFuture

from recflow.evaluation.plots import loss_curve
from recflow.experiments.config import ModelParams, RunConfig
from recflow.experiments.tracking import KERAS_FLAVOR_DIR, save_keras_flavor
from recflow.models import MODELS, build_model, load_model
from recflow.models.warm import WarmStart
from recflow.prep.interactions import Interactions
from recflow.runtime import warmstarts
from recflow.runtime.store import Artifact, artifacts_root
from recflow.utils.numeric import distinct
from tasks.caching import chosen_model, produce, stage
from tasks.loading import fit_context, load_parts
from tasks.operations import refreshing
from tasks.reporting import epoch_progress


def result_params(params: ModelParams) -> dict:
    """The model's params without its declared execution parameters: what the fit's cache key holds."""
    if not hasattr(params, "model_dump"):  # already a plain mapping (a test's hand-made inputs)
        return params
    knobs = MODELS[params.name].execution_params
    return {k: v for k, v in params.model_dump(mode="json").items() if k not in knobs}


def keyed_on_results(inputs: dict) -> dict:
    return {**inputs, "params": result_params(inputs["params"])}


def members_of(params: ModelParams) -> tuple[str, ...]:
    """The models an ensemble combines (its ``member_names()``); () for a model that learns alone."""
    return build_model(params).member_names()


@stage(
    "train",
    code=(chosen_model(lambda inputs: [inputs["params"].name, *members_of(inputs["params"])]),),
    keyed_on=keyed_on_results,
    task_run_name="train[{params.name}]",
)
def train(
    data: Artifact,
    split: Artifact,
    features: Artifact,
    samples: Artifact | None,
    params: ModelParams,
    members: dict[str, Artifact] | None = None,
    warm_from: Artifact | None = None,
    warm_split: Artifact | None = None,
) -> Artifact:
    def build(out: Path) -> dict:
        parts = load_parts(split)
        context = fit_context(parts, data, features, samples)
        if members:
            context.members = {name: load_model(member.file("model")) for name, member in members.items()}
        model = build_model(params)
        if warm_from is not None and warm_split is not None:
            context.warm_start = warm_start_of(warm_from, warm_split, parts["train"])
        progress = epoch_progress(params.name, model.epoch_budget())
        context.on_epoch_end = context.on_epoch_end or progress
        started = time.perf_counter()
        try:
            model.fit(parts["train"], context)
        finally:  # a model that stopped early (or failed) still ends its progress bar
            if progress is not None:
                progress.close()
        seconds = time.perf_counter() - started
        warm = {}
        if model.warm_started_:
            warm = {
                "warm_start_from": warm_from.path,
                "warm_start": {"new_rows": context.warm_start.n_new_rows, "share_new": round(context.warm_start.share_new, 6), **(model.warm_fit_ or {})},
            }
        elif split.meta.get("time_forward") is not None:  # a growing log: say why this one fitted cold
            declined = "declined the earlier fit (e.g. an item with history entered its top_items)" if context.warm_start else None
            warm = {
                "warm_start_refusal": model.warm_start_refusal()
                or declined
                or "cold: no earlier fit to continue from (the first night, a refresh, or one collected)"
            }
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
            **warm,
            **({"epoch_examples_per_second": round(float(np.median(rates)), 1)} if rates else {}),
        }

    return produce("train", build)


def warm_start_of(model: Artifact, split: Artifact, train: Interactions) -> WarmStart:
    """The earlier fit and the maps from its split's raw ids (sorted distinct, as ``index_split`` makes them) onto ``train``'s."""
    frame = pd.read_parquet(split.file("split.parquet"), columns=["user_id", "item_id"])
    return WarmStart.between(load_model(model.file("model")), distinct(frame["user_id"].to_numpy()), distinct(frame["item_id"].to_numpy()), train)


def wants_warm_starts(cfg: RunConfig) -> bool:
    """Warm starts apply: a time-forward split, the config allows them, and not a refresh (the weekly cold rebuild)."""
    return bool(cfg.warm_start) and not refreshing() and cfg.split.protocol == "time_forward"


def warm_starts(cfg: RunConfig, split_future: PrefectFuture) -> dict[str, tuple[Artifact, Artifact]]:
    """The earlier fit each model continues from (``recflow.runtime.warmstarts``): only on a time-forward
    split, for a model whose class and parameters allow it, never in a refresh (the weekly cold rebuild).
    ``split_future`` has settled (the flow ran the DAG's head first)."""
    if not wants_warm_starts(cfg):
        return {}
    if not split_future.state.is_completed():  # the flow reports the split's failure
        return {}
    split_artifact = split_future.result()
    out = {}
    for m in cfg.models:
        if build_model(m).warm_start_refusal() is None:
            start = warmstarts.warm_source(artifacts_root(), cfg.dataset.name, m.model_dump(mode="json"), split_artifact)
            if start is not None:
                out[m.name] = start
    return out


def record_fits(cfg: RunConfig, split_future: PrefectFuture, trained: dict[str, PrefectFuture], starts: dict[str, tuple[Artifact, Artifact]]) -> None:
    """Remember tonight's fits for tomorrow's warm starts (time-forward splits only)."""
    if not cfg.warm_start or cfg.split.protocol != "time_forward" or not split_future.state.is_completed():
        return
    for m in cfg.models:
        future = trained[m.name]
        if future.state.is_completed() and build_model(m).warm_start_refusal() is None:
            warmstarts.record_fit(artifacts_root(), cfg.dataset.name, m.model_dump(mode="json"), split_future.result(), future.result(), starts.get(m.name))
