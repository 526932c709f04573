"""How each model's metric moved over the pipeline runs of an experiment (``recflow compare --trend``).

Reads the same MLflow runs as :mod:`recflow.experiments.compare` (parents tagged ``recflow.kind=pipeline``, one
nested run per model) and lines them up by the pipeline run's start time: one series per model,
one point per pipeline run, with the confidence interval logged beside the metric
(``<metric>_ci_low`` / ``_ci_high``) when there is one. A model that did not run, failed, or has no
value in a pipeline run leaves a gap there rather than a line drawn across it, so a missing night
reads as missing. The same points feed the PNG (logged to MLflow on request) and the Prefect table
artifact a run updates at its end.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from recflow.evaluation.plots import new_figure, safe_plot
from recflow.experiments.compare import CompareError, _value, default_tracking_uri, find_experiment, lower_is_better, model_results

#: pipeline runs a run's Prefect trend artifact covers
TREND_RUNS = 30


@dataclass(frozen=True)
class TrendPoint:
    value: float
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class PipelineRun:
    run_id: str
    name: str
    started: datetime


@dataclass
class Trend:
    experiment: str
    experiment_id: str
    metric: str
    #: oldest first
    runs: list[PipelineRun]
    #: model -> one entry per ``runs`` (None: no value in that run)
    series: dict[str, list[TrendPoint | None]] = field(default_factory=dict)
    tracking_uri: str = ""


def trend_from_client(client: Any, experiment: str | None, metric: str, last: int) -> Trend:
    if last < 1:
        raise CompareError(f"--last must be at least 1, got {last}")
    exp = find_experiment(client, experiment)
    rows = model_results(client, exp.experiment_id, last)
    if not rows:
        raise CompareError(f"experiment {exp.name!r} has no model runs yet: run `recflow run` first")
    if all(_value(r.metrics, metric) is None for r in rows):
        known = sorted({m for r in rows for m in r.metrics})
        raise CompareError(f"no run in {exp.name!r} has the metric {metric!r}; they have {known}")
    runs = sorted({PipelineRun(r.pipeline_run_id, r.pipeline_run_name, r.started) for r in rows}, key=lambda p: (p.started, p.run_id))
    position = {p.run_id: i for i, p in enumerate(runs)}
    series: dict[str, list[TrendPoint | None]] = {}
    for row in sorted(rows, key=lambda r: r.model):
        value = _value(row.metrics, metric)
        points = series.setdefault(row.model, [None] * len(runs))
        if value is not None:
            points[position[row.pipeline_run_id]] = TrendPoint(value, _value(row.metrics, f"{metric}_ci_low"), _value(row.metrics, f"{metric}_ci_high"))
    series = {m: p for m, p in series.items() if any(x is not None for x in p)}
    return Trend(exp.name, exp.experiment_id, metric, runs, series)


def trend(experiment: str | None = None, metric: str = "recall_at_10", last: int = 10, tracking_uri: str | None = None) -> Trend:
    """Each model's ``metric`` (and CI) over the ``last`` pipeline runs of ``experiment`` (default: the newest run's)."""
    from mlflow import MlflowClient

    uri = tracking_uri or default_tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        raise CompareError(f"no MLflow store at {uri.removeprefix('sqlite:///')}: run `recflow run` first (or set MLFLOW_TRACKING_URI)")
    result = trend_from_client(MlflowClient(uri), experiment, metric, last)
    result.tracking_uri = uri
    return result


def trend_rows(result: Trend) -> list[dict[str, Any]]:
    """One row per (pipeline run, model) with a value, newest run first: the Prefect table artifact."""
    rows = []
    for i in reversed(range(len(result.runs))):
        run = result.runs[i]
        for model, points in result.series.items():
            point = points[i]
            if point is None:
                continue
            has_ci = point.low is not None and point.high is not None
            rows.append(
                {
                    "run_date": f"{run.started:%Y-%m-%d %H:%M:%S}",
                    "pipeline_run": run.name,
                    "model": model,
                    result.metric: round(point.value, 6),
                    f"{result.metric}_ci": f"[{point.low:.4f}, {point.high:.4f}]" if has_ci else None,
                }
            )
    return rows


def trend_name(metric: str, experiment: str) -> str:
    """``trend_<experiment>_<metric>.png`` (``/`` as ``-``): one experiment's plot never overwrites another's."""
    return f"trend_{experiment.replace('/', '-')}_{metric}.png"


@safe_plot
def trend_plot(result: Trend, path: Path) -> Path | None:
    """One line per model over the runs' start times, its CI as error bars; a gap (NaN) where a
    model has no value. Colours from tab10 / tab20 so every model's line is distinct.
    Best-effort (``recflow.evaluation.plots``): None when it could not be drawn."""
    from matplotlib import colormaps
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    fig = new_figure((8, 4.5), dpi=110)
    ax = fig.add_subplot()
    dates = [run.started for run in result.runs]
    palette = colormaps["tab10" if len(result.series) <= 10 else "tab20"]
    for i, (model, points) in enumerate(result.series.items()):
        colour = palette(i % palette.N)
        values = [math.nan if p is None else p.value for p in points]
        below = [0.0 if p is None or p.low is None or p.high is None else p.value - p.low for p in points]
        above = [0.0 if p is None or p.low is None or p.high is None else p.high - p.value for p in points]
        ax.errorbar(dates, values, yerr=[below, above], color=colour, marker="o", markersize=4, linewidth=1.5, capsize=3, elinewidth=1, label=model)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    if len(dates) == 1:  # one run: a day around it, not the years matplotlib's date axis would span
        ax.set_xlim(dates[0] - timedelta(hours=12), dates[0] + timedelta(hours=12))
    ax.set_xlabel("pipeline run start (UTC)")
    ax.set_ylabel(result.metric + (" (lower is better)" if lower_is_better(result.metric) else " (higher is better)"))
    ax.set_title(
        f"{result.experiment}: {result.metric} over {len(result.runs)} run{'s' if len(result.runs) != 1 else ''} (bars: confidence interval)", fontsize=10
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)


def log_trend(result: Trend, path: Path) -> str:
    """A ``recflow.kind=trend`` run named ``trend <metric>`` holding the PNG; returns its id."""
    from mlflow import MlflowClient

    client = MlflowClient(result.tracking_uri)
    run = client.create_run(result.experiment_id, run_name=f"trend {result.metric}", tags={"recflow.kind": "trend", "metric": result.metric})
    try:
        client.log_artifact(run.info.run_id, str(path), "trend")
        client.set_terminated(run.info.run_id, "FINISHED")
    except BaseException:
        client.set_terminated(run.info.run_id, "FAILED")
        raise
    return run.info.run_id


def write_trend(result: Trend, folder: Path | None = None) -> Path | None:
    """The PNG under ``folder`` (default: a new temp folder that outlives the call, to be printed)."""
    folder = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="recflow-trend-"))
    folder.mkdir(parents=True, exist_ok=True)
    return trend_plot(result, folder / trend_name(result.metric, result.experiment))
