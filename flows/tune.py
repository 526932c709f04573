"""The tuning flow, read top to bottom:

    locate -> ingest -> split -> tuning_split (train + valid only) -> features -> sampling
           -> trial[model #n] ... (Optuna TPE asks, each trial is a task, Optuna is told) -> overlay

The first stages are the pipeline's own head (``flows.head.pipeline_head``), so a tuned dataset
shares their cache with ``recflow run``. ``tuning_split`` drops the test rows while reading; everything after it
(features, samples, every trial) sees train and valid only. A study lives in Optuna's RDB
storage under the artifacts root: rerun the same command after a crash and it continues where it
stopped (trials left running by the crash are marked failed; completed trials count toward the
budget). Each trial is logged as a nested MLflow run under the study's ``tune <model>`` run.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import optuna
from prefect import flow, get_run_logger, tags

from flows.head import called, pipeline_head
from recflow.experiments import tuning
from recflow.experiments.config import load_config
from recflow.runtime.store import artifacts_root
from recflow.utils.progress import track
from tasks.caching import prepare_results_storage, results_storage
from tasks.operations import exclusive_root
from tasks.tune import tune_trial, tuning_split


@flow(name="recflow-tune", log_prints=True, result_storage=results_storage())
def tune(
    config_paths: list[str] | None,
    overrides: list[str] | None,
    model: str,
    trials: int | None = 20,
    minutes: float | None = None,
    metric: str | None = None,
    seed: int = 0,
    valid_fraction: float = 0.1,
    out: str | None = None,
    parallel: int = 1,
) -> dict[str, Any]:
    """Search ``model``'s declared space until the study has ``trials`` completed trials or ``minutes`` have passed."""
    cfg = load_config(config_paths, overrides)
    metric = metric or tuning.default_metric(model, cfg.evaluation.ks)
    space = tuning.search_space(model, metric)  # only what the objective can see
    base = tuning.base_params(cfg, model)
    ks = sorted(set(cfg.evaluation.ks) | ({int(metric.rsplit("_at_", 1)[1])} if "_at_" in metric else set()))
    root = artifacts_root()
    log = get_run_logger()
    with exclusive_root(root), tags(f"dataset:{cfg.dataset.name}", f"tune:{model}"):
        head = pipeline_head(
            cfg,
            called,
            narrow=lambda add, parts: add("tuning_split", tuning_split, parts, valid_fraction, seed),
            sampled_for=cfg.model_copy(update={"models": [base]}),
        )
        data, parts, feats, samples = head.data, head.parts, head.feats, head.samples

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = tuning.storage_url(root)
        name = tuning.study_name(cfg, model, metric, valid_fraction)
        study = optuna.create_study(study_name=name, storage=storage, direction=tuning.direction(metric), load_if_exists=True)
        for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(stale.number, state=optuna.trial.TrialState.FAIL)  # left by a crash: the root lock rules out a live one
        if not study.trials:
            study.enqueue_trial(tuning.baseline_values(base, space))  # the preset's own values first
        completed_before = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
        # a resumed study draws fresh random start points rather than repeating the first run's
        study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
        remaining = None if trials is None else max(trials - completed_before, 0)
        if completed_before:
            log.info("study %s resumes with %d completed trials", name, completed_before)
        if blind := tuning.unsearched(model, metric):
            log.warning("not searched, kept at the config's values: %s (they do not affect %s)", ", ".join(blind), metric)

        deadline = None if minutes is None else time.monotonic() + 60 * minutes
        run_id = tuning.start_parent_run(cfg, model, study, root)
        try:
            batches = range(0, remaining, parallel) if remaining is not None else itertools.count(0, parallel)
            for start in track(batches, desc=f"tune {model}", min_total=1):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                size = parallel if remaining is None else min(parallel, remaining - start)
                asked = [study.ask() for _ in range(size)]
                values = [tuning.suggest(trial, space) for trial in asked]
                futures = [
                    tune_trial.submit(trial.number, data, parts, feats, samples, tuning.trial_params(base, v), metric, ks, cfg.evaluation.relevance_threshold)
                    for trial, v in zip(asked, values)
                ]
                for trial, v, future in zip(asked, values, futures):
                    future.wait()
                    if future.state.is_completed():
                        result = future.result()
                        study.tell(trial, result["metrics"][metric])
                        tuning.log_trial(trial.number, v, {**result["metrics"], "fit_seconds": result["fit_seconds"]})
                    else:
                        study.tell(trial, state=optuna.trial.TrialState.FAIL)
                        tuning.log_trial(trial.number, v, None, error=str(future.state.message or future.state.name))
                        log.warning("trial %d failed: %s", trial.number, future.state.message)
            completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if not completed:
                raise RuntimeError(f"study {name}: no trial completed; see the failed trials' messages")
            best = study.best_trial
            overlay_path = Path(out) if out else root / "tuning" / (name.replace("/", "__") + ".yaml")
            header = (
                f"recflow tune: best of {len(completed)} completed trials of study {name}\n"
                f"{metric} on the validation part = {best.value:.6g} (trial {best.number}); "
                f"use: recflow run --config <base.yaml> --config {overlay_path.name}"
            )
            tuning.write_overlay(overlay_path, model, best.params, header)
            _log_best(metric, best, overlay_path)
        finally:
            import mlflow

            mlflow.end_run()
    return {
        "study": name,
        "metric": metric,
        "direction": study.direction.name.lower(),
        "best_value": best.value,
        "best_params": dict(best.params),
        "best_trial": best.number,
        "n_trials": len(study.trials),
        "n_completed": len(completed),
        "overlay": str(overlay_path),
        "mlflow_run_id": run_id,
    }


def _log_best(metric: str, best, overlay_path: Path) -> None:
    import mlflow

    mlflow.log_metric(f"best_{metric}", best.value)
    mlflow.set_tag("recflow.tune.best_trial", str(best.number))
    mlflow.log_artifact(str(overlay_path))


def run_tune(config_paths: list[str] | None, overrides: list[str] | None, model: str, root: Path | None = None, **options: Any) -> dict[str, Any]:
    """Run the flow with task results persisted under the artifacts root (shared with ``recflow run``)."""
    root = root or artifacts_root()
    storage = results_storage(root)
    prepare_results_storage(storage)
    return tune.with_options(result_storage=storage)(config_paths=config_paths, overrides=overrides, model=model, **options)
