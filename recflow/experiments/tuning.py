"""Hyperparameter search on a validation split: the pieces ``recflow tune`` composes (no Prefect here).

* **What is searched** is declared by each model (``search_space`` on its class, see
  ``recflow.models.search_space``); ``suggest`` turns it into Optuna suggestions. The other
  parameters keep the run config's values.
* **What is judged** is a validation metric, never a test one. ``read_tuning_frame`` reads the
  split file with a row filter, so test rows are never materialised; ``tuning_frame`` keeps the
  preset's valid part, or, when the preset has none, carves a seeded per-user random part out of
  train (``user_random``'s sizes: round half up, at least one row for a user with two or more).
  The index of the tuning split is built from train + valid only: even which items exist only in
  test stays unknown to a trial.
* **What comes out** is a config overlay (``overlay``): ``models: [{name, <best params>}]``, which
  ``recflow run --config base.yaml --config overlay.yaml`` merges by model name.
* **Resuming**: the study lives in an Optuna RDB storage under the artifacts root
  (``storage_url``), named from dataset, model and a digest of everything that defines the
  objective (``study_name``), so a restart continues the same study and a changed protocol starts
  a new one.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel

from recflow.evaluation.evaluate import evaluate_ranking, evaluate_ratings
from recflow.evaluation.specs import measured, metric_key
from recflow.experiments.config import RunConfig
from recflow.models import MODELS, Recommender
from recflow.models.params import MODEL_PARAMS
from recflow.models.search_space import BOTH, RANKING, RATINGS, Choice, Dimension, FloatRange, IntRange, searched
from recflow.prep.interactions import Interactions, index_split
from recflow.runtime.store import hash_parts

#: metrics where lower is better; every other metric is maximised


#: an RDB URL (postgresql://...) holding the studies instead of the root's sqlite file: what a team shares
TUNING_STORAGE_VARIABLE = "RECFLOW_TUNING_STORAGE"


def storage_url(root: Path) -> str:
    """The Optuna RDB storage of every study: ``$RECFLOW_TUNING_STORAGE``, else a sqlite file under the root (created on first use).

    A sqlite file cannot be shared through a bucket (Optuna writes it in place, trial by trial), so
    machines that tune one study together, or resume each other's, name a database server.
    """
    if shared := os.environ.get(TUNING_STORAGE_VARIABLE):
        return shared
    folder = Path(root) / "tuning"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'optuna.db'}"


def search_space(model: str, metric: str | None = None) -> dict[str, Dimension]:
    """The model's declared space, checked against its parameters; an error if it declares none.

    With ``metric``: only the dimensions that objective can see (``recflow.models.search_space.searched``).
    """
    if model not in MODELS:
        raise KeyError(f"unknown model {model!r}; known: {sorted(MODELS)}")
    cls = MODELS[model]
    space = dict(cls.search_space)
    if not space:
        tunable = sorted(name for name, c in MODELS.items() if c.search_space)
        raise ValueError(f"model {model!r} declares no search_space, so it cannot be tuned; tunable: {tunable}")
    params = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(space) - params)
    if unknown:
        raise ValueError(f"{cls.__name__}.search_space names {unknown}, which are not parameters of its __init__ {sorted(params)}")
    for name, dim in space.items():
        if isinstance(dim, (FloatRange, IntRange)) and not dim.low < dim.high:
            raise ValueError(f"{cls.__name__}.search_space[{name!r}]: low {dim.low} must be below high {dim.high}")
        if isinstance(dim, (FloatRange, IntRange)) and dim.log and dim.low <= 0:
            raise ValueError(f"{cls.__name__}.search_space[{name!r}]: a log range needs low > 0, got {dim.low}")
        if isinstance(dim, Choice) and not dim.options:
            raise ValueError(f"{cls.__name__}.search_space[{name!r}]: no options")
        if dim.affects not in (RATINGS, RANKING, BOTH):
            raise ValueError(f"{cls.__name__}.search_space[{name!r}]: affects {dim.affects!r}; expected {RATINGS!r}, {RANKING!r} or {BOTH!r}")
    if metric is not None:
        space, blind = searched(space, metric)
        if not space:
            raise ValueError(f"{cls.__name__}.search_space: none of {blind} affects {metric}, so there is nothing to tune on it")
    return space


def unsearched(model: str, metric: str) -> list[str]:
    """The declared dimensions a study on ``metric`` leaves at the config's values (the objective cannot see them)."""
    return searched(search_space(model), metric)[1]


def suggest(trial, space: dict[str, Dimension]) -> dict[str, Any]:
    """One value per dimension from an Optuna trial (``trial.suggest_*``)."""
    values: dict[str, Any] = {}
    for name, dim in space.items():
        if isinstance(dim, FloatRange):
            values[name] = trial.suggest_float(name, dim.low, dim.high, log=dim.log)
        elif isinstance(dim, IntRange):
            values[name] = trial.suggest_int(name, dim.low, dim.high, log=dim.log, step=dim.step)
        elif isinstance(dim, Choice):
            values[name] = trial.suggest_categorical(name, list(dim.options))
        else:
            raise TypeError(f"search_space[{name!r}]: unknown dimension {dim!r}")
    return values


def baseline_values(base: BaseModel, space: dict[str, Dimension]) -> dict[str, Any]:
    """The config's own values of the searched parameters, where they lie in the space.

    A new study tries them first (``flows/tune.py``), so the best trial is never worse on
    validation than the preset it tunes, however small the budget; a value outside its range
    is left for the sampler.
    """
    values: dict[str, Any] = {}
    for name, dim in space.items():
        value = getattr(base, name)
        if isinstance(dim, Choice):
            inside = value in dim.options
        else:
            inside = isinstance(value, (int, float)) and not isinstance(value, bool) and dim.low <= value <= dim.high
        if inside:
            values[name] = value
    return values


def default_metric(model: str, ks: list[int]) -> str:
    """RMSE for a rating model, else NDCG at 10 (RecBole's model selection) or the smallest cutoff."""
    if MODELS[model].predicts_ratings:
        return "rmse"
    return metric_key("ndcg", 10 if 10 in ks else min(ks))


def is_rating_metric(metric: str) -> bool:
    found = measured(metric)
    return found is not None and found.spec.kind == "rating"


def direction(metric: str) -> str:
    """Optuna's direction for ``metric``, from the metric registry."""
    found = measured(metric)
    if found is None:
        raise ValueError(f"{metric!r} is not a metric the evaluation measures")
    return found.spec.direction


def base_params(cfg: RunConfig, model: str) -> BaseModel:
    """The model's params in the run config, or its defaults when the config does not list it."""
    try:
        return cfg.model(model)
    except KeyError:
        return MODEL_PARAMS[model]()


def trial_params(base: BaseModel, values: dict[str, Any]) -> BaseModel:
    """``base`` with the suggested ``values``, validated like a config entry."""
    return type(base).model_validate({**base.model_dump(), **values})


def study_name(cfg: RunConfig, model: str, metric: str, valid_fraction: float) -> str:
    """``<dataset>/<model>/<protocol>-<digest>``: the digest covers everything the objective depends on."""
    base = base_params(cfg, model)
    space = {name: repr(dim) for name, dim in search_space(model, metric).items()}
    digest = hash_parts(
        cfg.dataset.model_dump(mode="json"),
        cfg.split.model_dump(mode="json"),
        cfg.evaluation.relevance_threshold,
        metric,
        valid_fraction,
        base.model_dump(mode="json"),
        space,
    )[:10]
    return f"{cfg.dataset.name}/{model}/{cfg.split.protocol}-{digest}"


# -- data: train + valid only --------------------------------------------------------------------
def read_tuning_frame(split_file: str | Path) -> pd.DataFrame:
    """The train and valid rows of a split file; the test rows are filtered out while reading."""
    return pd.read_parquet(split_file, filters=[("split", "in", ["train", "valid"])])


def tuning_frame(frame: pd.DataFrame, valid_fraction: float = 0.1, seed: int = 0) -> pd.DataFrame:
    """train/valid rows to tune on: the preset's valid part, else a per-user random one carved from train.

    Refuses a frame holding test rows: the caller must not have read them.
    """
    parts = set(frame["split"].astype(str).unique())
    if "test" in parts:
        raise ValueError("the tuning frame holds test rows; read the split with read_tuning_frame")
    if "valid" in parts:
        return frame.reset_index(drop=True)
    if not 0 < valid_fraction < 1:
        raise ValueError(f"the split has no valid part and valid_fraction={valid_fraction} cannot carve one (need 0 < f < 1)")
    frame = frame.reset_index(drop=True)
    users = frame["user_id"].to_numpy()
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.permutation(len(frame)), users))  # per user, a seeded random order
    grouped = users[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    sizes = np.diff(np.r_[starts, len(grouped)])
    position = np.arange(len(grouped)) - np.repeat(starts, sizes)
    n_valid = np.floor(valid_fraction * sizes + 0.5).astype(np.int64)
    n_valid = np.where(sizes >= 2, np.clip(n_valid, 1, sizes - 1), 0)
    is_valid = np.empty(len(frame), bool)
    is_valid[order] = position >= np.repeat(sizes - n_valid, sizes)
    return frame.assign(split=np.where(is_valid, "valid", "train"))


def tuning_parts(frame: pd.DataFrame) -> dict[str, Interactions]:
    """``index_split`` of a tuning frame (train + valid; the test part is empty)."""
    if "test" in set(frame["split"].astype(str).unique()):
        raise ValueError("the tuning frame holds test rows")
    return index_split(frame)


# -- the objective -------------------------------------------------------------------------------
def validation_metrics(
    model: Recommender, parts: dict[str, Interactions], *, metric: str, ks: list[int], relevance_threshold: float | None = None, rating_scale=None
) -> dict[str, float]:
    """Metrics of a model fitted on ``parts['train']``, judged on ``parts['valid']``; ``metric`` among them."""
    valid = parts["valid"]
    if not len(valid):
        raise ValueError("the tuning split has no validation rows")
    if is_rating_metric(metric):
        if not model.predicts_ratings:
            raise ValueError(f"{model.name} does not predict ratings, so it cannot be tuned on {metric}")
        out = evaluate_ratings(model, valid, clip=tuple(rating_scale) if rating_scale else None)
    else:
        out = evaluate_ranking(model, parts["train"], valid, ks=ks, relevance_threshold=relevance_threshold)
    if metric not in out:
        raise ValueError(f"metric {metric!r} is not measured; measured: {sorted(out)}")
    return {k: float(v) for k, v in out.items()}


# -- the result ----------------------------------------------------------------------------------
def overlay(model: str, best: dict[str, Any]) -> dict[str, Any]:
    """The config overlay that sets the best values: ``{"models": [{"name": model, **best}]}``."""
    return {"models": [{"name": model, **{k: _plain(v) for k, v in best.items()}}]}


def write_overlay(path: str | Path, model: str, best: dict[str, Any], header: str = "") -> Path:
    from recflow.runtime.store import write_text_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    write_text_atomic(path, comment + yaml.safe_dump(overlay(model, best), sort_keys=False))
    return path


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# -- MLflow: one parent run per study, one nested run per trial ----------------------------------
def start_parent_run(cfg: RunConfig, model: str, study, root: Path | None = None) -> str:
    """The study's ``tune <model>`` MLflow run, reopened when the study resumes; returns its id."""
    import mlflow

    from recflow.experiments.tracking import experiment_name, use_experiment

    use_experiment(cfg, root)
    run_id = study.user_attrs.get("mlflow_run_id")
    try:
        resumed = run_id is not None and mlflow.get_run(run_id).info.experiment_id == mlflow.get_experiment_by_name(experiment_name(cfg)).experiment_id
    except mlflow.exceptions.MlflowException:  # the study outlived its tracking store
        resumed = False
    if resumed:
        mlflow.start_run(run_id=run_id)
    else:
        run = mlflow.start_run(run_name=f"tune {model}", tags={"recflow.tune.study": study.study_name})
        study.set_user_attr("mlflow_run_id", run.info.run_id)
    return mlflow.active_run().info.run_id


def log_trial(number: int, params: dict[str, Any], metrics: dict[str, float] | None, error: str | None = None) -> None:
    """A nested run ``trial <n>`` under the active parent run."""
    import mlflow

    with mlflow.start_run(run_name=f"trial {number}", nested=True):
        mlflow.log_params({k: _plain(v) for k, v in params.items()})
        mlflow.set_tag("recflow.tune.trial", str(number))
        if metrics:
            mlflow.log_metrics(metrics)
        if error:
            mlflow.set_tag("recflow.tune.error", error[:4000])
