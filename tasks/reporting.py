"""What a pipeline run shows in the Prefect UI besides its task runs.

* a table artifact of every model's metrics and a markdown summary linking the MLflow runs,
  keyed per dataset (``recflow-<dataset>-metrics`` / ``-summary``) so the Artifacts page keeps
  each dataset's history;
* a table artifact ``recflow-<dataset>-trend``: the champion metric with its confidence interval
  per (pipeline run, model) over the last ``recflow.experiments.trend.TREND_RUNS`` runs, this one included;
* progress artifacts for long loops: every ``recflow.utils.progress.track`` loop that runs inside a
  task, and every epoch of a model that reports epochs.

Reporting never fails a run: an artifact the API refuses is logged as a warning and skipped.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.context import TaskRunContext

import recflow.utils.progress
from recflow.evaluation.evaluate import half_width
from recflow.experiments.config import RunConfig
from recflow.experiments.summary import RunSummary
from recflow.experiments.tracking import SHARED_VIEW_KEY
from recflow.runtime.outcomes import ModelOutcome
from recflow.runtime.storage import redact_uri
from recflow.runtime.store import artifacts_root

log = logging.getLogger("recflow.reporting")

#: the MLflow UI to link to; else an http(s) tracking URI, else the one `recflow ui` runs
MLFLOW_URL_ENV = "RECFLOW_MLFLOW_URL"


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", "-".join(parts).lower())).strip("-")


def mlflow_ui_base(tracking_uri: str) -> str | None:
    if os.environ.get(MLFLOW_URL_ENV):
        return os.environ[MLFLOW_URL_ENV].rstrip("/")
    if tracking_uri.startswith(("http://", "https://")):
        return redact_uri(tracking_uri).replace("***@", "").rstrip("/")  # links without credentials: the browser asks for them
    from recflow.runtime.servers import running_ui

    ui = running_ui(artifacts_root())
    return ui["mlflow_url"] if ui else None


#: MLflow 3.17's UI picks its GenAI or model-training view per browser (default GenAI), whatever
#: the experiment's ``mlflow.experimentKind`` tag says; this query parameter opens the training one
TRAINING_VIEW = "workflowType=machine_learning"


def mlflow_experiment_url(base: str, experiment_id: str) -> str:
    """The runs table in the training view, with its metric columns (``recflow.experiments.tracking.runs_table_view``)."""
    return f"{base}/#/experiments/{experiment_id}/runs?{TRAINING_VIEW}&viewStateShareKey={SHARED_VIEW_KEY}"


def mlflow_run_url(base: str, experiment_id: str, run_id: str) -> str:
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{TRAINING_VIEW}"


def mlflow_compare_url(base: str, experiment_id: str, run_ids: list[str]) -> str:
    runs = quote(json.dumps(run_ids, separators=(",", ":")))
    experiments = quote(json.dumps([experiment_id], separators=(",", ":")))
    return f"{base}/#/compare-runs?runs={runs}&experiments={experiments}&{TRAINING_VIEW}"


def metric_rows(summary: RunSummary) -> list[dict[str, Any]]:
    """The table artifact: one row per model, status, every metric (in the registry's order) with its
    confidence interval beside it (``<metric>_ci``: ``[low, high]``), the population counts, fit time,
    MLflow run id; failed models keep their error (and their metrics when only a later stage failed)."""
    names = summary.metric_keys
    with_ci = {k for k in names if summary.with_ci(k)}
    rows = []
    for r in summary.rows:
        row: dict[str, Any] = {"model": r.model, "status": r.status}
        for name in names:
            row[name] = round(float(r.metrics[name]), 6) if name in r.metrics else None
            if name in with_ci:
                ok = half_width(r.metrics, name) is not None
                row[f"{name}_ci"] = f"[{r.metrics[f'{name}_ci_low']:.4f}, {r.metrics[f'{name}_ci_high']:.4f}]" if ok else None
        row.update({k: r.metrics.get(k) for k in summary.population})
        row["fit_seconds"] = r.fit_seconds
        row["mlflow_run_id"] = r.run_id
        row["error"] = r.error
        rows.append(row)
    return rows


def summary_markdown(summary: RunSummary, run_name: str | None, mlflow_base: str | None) -> str:
    """The headline metrics (smallest K, plus RMSE / MAE) per model with their confidence intervals,
    whom they cover, a warning below 100 evaluated users, and links into MLflow."""
    shown = summary.headline_keys()
    tracking, counts = summary.tracking, summary.tasks
    exp_id, parent = tracking["experiment_id"], tracking["run_id"]
    lines = [
        f"# recflow run {run_name or ''} on {summary.dataset}".rstrip(),
        "",
        f"protocol **{summary.protocol}** · tasks **{counts['ran']} ran, {counts['cached']} cached** · "
        f"MLflow experiment `{tracking['experiment']}`, parent run `{parent}`",
        "",
        *[f"> **{line}**" if line.startswith("warning") else f"- {line}" for line in summary.about],
        *([""] if summary.about else []),
        "| model | status | " + " | ".join(shown) + " | MLflow |",
        "|---|---|" + "---:|" * len(shown) + "---|",
    ]
    for row in summary.rows:
        link = f"[{row.run_id[:8]}]({mlflow_run_url(mlflow_base, exp_id, row.run_id)})" if mlflow_base and row.run_id else f"`{row.run_id or '-'}`"
        values = " | ".join(summary.cell(row, k) for k in shown)
        lines.append(f"| {row.model} | {row.status} | {values} | {link} |")
    if any(summary.with_ci(k) for k in shown):
        lines += ["", f"±: half the width of the {summary.ci_level:.0%} bootstrap confidence interval over the evaluated users."]
    failed = [row for row in summary.rows if row.status != "ok"]
    if failed:
        lines += ["", "**Failed models**", ""] + [f"- `{row.model}`: {row.error}" for row in failed]
    lines += ["", *champion_lines(summary.serving)]
    lines.append("")
    if mlflow_base:
        ok_runs = [row.run_id for row in summary.rows if row.status == "ok" and row.run_id]
        lines.append(
            f"[Parent run in MLflow]({mlflow_run_url(mlflow_base, exp_id, parent)})"
            f" · [every run of the experiment]({mlflow_experiment_url(mlflow_base, exp_id)})"
        )
        if len(ok_runs) > 1:
            lines.append(f" · [compare the models in MLflow]({mlflow_compare_url(mlflow_base, exp_id, ok_runs)})")
    else:
        lines.append(f"Browse: `mlflow ui --backend-store-uri {redact_uri(tracking['tracking_uri'])}` (or `recflow ui`), run `{parent}`.")
    return "\n".join(lines)


#: ``RunSummary.serving`` of a run whose catalogue or champion task did not complete
CHAMPION_NOT_RUN = {"champion_task": "not completed"}


def champion_lines(serving: dict[str, Any]) -> list[str]:
    """What this run left serving, as the console says it (``champion: ... (this run's best: ease, ...)``); a line saying
    why there is none: registration off, no model to rank, or the champion task not run."""
    from recflow.experiments.serving.champion import summary_lines

    if serving == CHAMPION_NOT_RUN:
        return ["**champion: unchanged** (the catalogue or champion task did not complete; see the task runs)"]
    lines = summary_lines(serving)
    if not lines:
        return ["**champion: none registered** (serving.register_model is off, or no model could be ranked)"]
    first, *rest = lines
    return [f"**{first}**", *[f"- {line.strip()}" for line in rest if not line.strip().startswith("try:")]]


def publish_run_report(
    cfg: RunConfig, models: dict[str, ModelOutcome], tracking: dict[str, Any], counts: dict[str, int], protocol: str, serving: dict[str, Any] | None = None
) -> None:
    """Table + markdown artifacts for this flow run; the MLflow parent run gets the flow run's id and link."""
    from prefect.runtime import flow_run

    run_name = flow_run.get_name() if flow_run.get_id() else None
    summary = RunSummary.from_outcomes(cfg, models, tracking, counts, protocol, CHAMPION_NOT_RUN if serving is None else serving)
    rows = metric_rows(summary)
    base = mlflow_ui_base(tracking["tracking_uri"])
    dataset_key = artifact_key("recflow", cfg.dataset.name)
    try:
        create_table_artifact(rows, key=f"{dataset_key}-metrics", description=f"Every model's metrics on {cfg.dataset.name} ({protocol})")
        create_markdown_artifact(
            summary_markdown(summary, run_name, base),
            key=f"{dataset_key}-summary",
            description=f"Run summary with MLflow links ({cfg.dataset.name})",
        )
    except Exception as exc:  # reporting must never fail a run
        log.warning("could not publish the Prefect run report: %s", exc)
    tag_mlflow_run(tracking, run_name, flow_run.get_id(), flow_run.ui_url)
    publish_trend(cfg, tracking)


def publish_trend(cfg: RunConfig, tracking: dict[str, Any], last: int | None = None) -> list[dict[str, Any]] | None:
    """The ``recflow-<dataset>-trend`` table artifact from this run's MLflow experiment; the rows, or None
    (with a warning) when MLflow could not be read or Prefect refused the artifact."""
    metric = cfg.serving.champion_metric
    try:
        from recflow.experiments.trend import TREND_RUNS, trend, trend_rows

        rows = trend_rows(trend(tracking["experiment"], metric, last or TREND_RUNS, tracking["tracking_uri"]))
        create_table_artifact(
            rows,
            key=f"{artifact_key('recflow', cfg.dataset.name)}-trend",
            description=f"{metric} with its confidence interval per pipeline run and model, newest first ({cfg.dataset.name})",
        )
        return rows
    except Exception as exc:  # reporting must never fail a run
        log.warning("could not publish the trend artifact: %s", exc)
        return None


def tag_mlflow_run(tracking: dict[str, Any], run_name: str | None, run_id: str | None, ui_url: str | None) -> None:
    """Link back from MLflow to Prefect: the parent run gets the flow run's name, id and UI address."""
    if not run_id:
        return
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking["tracking_uri"])
        tags = {"prefect.flow_run_id": run_id, "prefect.flow_run_name": run_name or ""}
        # no UI, no link: Prefect writes "None/flow-runs/..." without one, and an embedded server's
        # address dies with its run (the run is in `recflow ui`'s dashboard later, found by its id)
        if ui_url and ui_url.startswith(("http://", "https://")) and os.environ.get("RECFLOW_PREFECT_SERVER") != "embedded":
            tags["prefect.flow_run_url"] = ui_url
        for key, value in tags.items():
            client.set_tag(tracking["run_id"], key, value)
    except Exception as exc:
        log.warning("could not tag the MLflow run with the Prefect flow run: %s", exc)


# ----------------------------------------------------------------------------- progress


class StageProgress:
    """A Prefect progress artifact for one long loop; updates at most every ``interval`` seconds (and at the end)."""

    def __init__(self, description: str, total: int, interval: float = 2.0) -> None:
        self.description, self.total, self.interval = description, max(int(total), 1), interval
        self.last = time.monotonic()
        self.artifact_id = None
        try:
            self.artifact_id = create_progress_artifact(0.0, description=description)
        except Exception as exc:
            log.warning("no progress artifact for %s: %s", description, exc)

    def __call__(self, done: int, note: str = "") -> None:
        now = time.monotonic()
        if self.artifact_id is None or (done < self.total and now - self.last < self.interval):
            return
        self.last = now
        try:
            update_progress_artifact(self.artifact_id, min(100.0, 100.0 * done / self.total), description=f"{self.description} {note}".strip())
        except Exception as exc:
            log.warning("progress update failed for %s: %s", self.description, exc)

    def finish(self, note: str = "") -> None:
        """Fill the bar with a last note: a loop that stopped early (early stopping, a failure) still ends."""
        self.last = float("-inf")
        self(self.total, note)


def task_progress(desc: str, total: int | None) -> Callable[[int], None] | None:
    """``recflow.utils.progress`` listener: a tracked loop inside a task run gets a progress artifact."""
    ctx = TaskRunContext.get()
    if ctx is None or not total:
        return None
    return StageProgress(f"{ctx.task_run.name}: {desc}", total)


class EpochProgress:
    """``FitContext.on_epoch_end`` for a model with an ``epochs`` budget: one progress artifact, made at the first epoch.

    ``close()`` after fitting ends the bar when the model stopped before its budget (early
    stopping, or a failure), which would otherwise stay at e.g. 35 % in the UI.
    """

    def __init__(self, model: str, epochs: int) -> None:
        self.model, self.epochs = model, int(epochs)
        self.bar: StageProgress | None = None
        self.epoch = 0
        # the console's bar and the heartbeat's ``mf: epochs 3/20``; the artifact above says more (the losses)
        self.loop = recflow.utils.progress.Loop(f"{model}: epochs", self.epochs, heard=False)

    def __call__(self, epoch: int, values: dict) -> None:
        if self.bar is None:
            self.bar = StageProgress(f"train[{self.model}]: epochs", self.epochs, interval=0.0)
        self.epoch = epoch
        self.loop.advance(epoch)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items() if isinstance(v, (int, float)))
        self.bar(epoch, f"epoch {epoch}/{self.epochs} {shown}")

    def close(self) -> None:
        self.loop.close()
        if self.bar is not None and self.epoch < self.epochs:
            self.bar.finish(f"stopped after epoch {self.epoch}/{self.epochs}")


def epoch_progress(model: str, epochs: int | None) -> EpochProgress | None:
    """An ``EpochProgress`` inside a task run for a model with an epoch budget, else ``None``."""
    if not epochs or TaskRunContext.get() is None:
        return None
    return EpochProgress(model, epochs)


recflow.utils.progress.add_listener(task_progress)
