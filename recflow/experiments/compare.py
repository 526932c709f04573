"""Which model is best right now, and is it better than the champion?

Reads the model runs of the last N pipeline runs from MLflow (``search_runs``: parents are tagged
``recflow.kind=pipeline``, each nested run ``model=<name>``), ranks them best first on one metric
and sets each beside the current champion: the version of the registered model
``recflow-<dataset>`` that carries the alias ``champion``. No champion yet is a normal state (the
table says so), not an error. The same table, plus one bar chart per metric, is logged to MLflow
as a comparison report so the decision stays next to the runs it was made from.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from recflow.evaluation.plots import new_figure, safe_plot
from recflow.evaluation.specs import greater_is_better
from recflow.experiments.tracking import TRAIN_FINGERPRINT_TAG
from recflow.runtime.store import artifacts_root

CHAMPION_ALIAS = "champion"
#: columns shown beside the ranking metric when the runs have them
CONTEXT_METRICS = ("recall_at_10", "ndcg_at_10", "precision_at_10", "map_at_10", "rmse")


class CompareError(RuntimeError):
    """Nothing to compare (no store, no experiment, no runs); the message says what to run first."""


def lower_is_better(metric: str) -> bool:
    """The registry's direction (``recflow.evaluation.specs``); a key no spec describes ranks larger first."""
    return greater_is_better(metric) is False


def registered_model_name(dataset: str) -> str:
    return f"recflow-{dataset}"


def default_tracking_uri(root: Path | None = None) -> str:
    """The store ``recflow run`` logs to: ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<artifacts>/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root or artifacts_root()) / 'mlflow.db'}"


@dataclass
class ModelResult:
    run_id: str
    model: str
    dataset: str
    protocol: str
    pipeline_run_id: str
    pipeline_run_name: str
    started: datetime
    metrics: dict[str, float]
    status: str = "FINISHED"
    #: value minus the champion's on the ranking metric (None: no champion or no value)
    delta: float | None = None
    is_champion: bool = False
    #: measured under another split protocol than the champion: no delta is shown
    other_protocol: bool = False

    @property
    def label(self) -> str:
        return f"{self.model} · {self.pipeline_run_name} {self.started:%m-%d %H:%M:%S}"


@dataclass
class Champion:
    dataset: str
    registered_model: str
    version: str
    run_id: str
    model: str | None
    value: float | None
    protocol: str | None = None


@dataclass
class Comparison:
    experiment: str
    experiment_id: str
    metric: str
    rows: list[ModelResult]
    champions: dict[str, Champion] = field(default_factory=dict)
    #: per dataset: why there is no champion to compare with
    notes: list[str] = field(default_factory=list)
    tracking_uri: str = ""

    @property
    def shown_metrics(self) -> list[str]:
        present = {m for r in self.rows for m in r.metrics}
        return [self.metric] + [m for m in CONTEXT_METRICS if m in present and m != self.metric]


def _value(metrics: dict[str, float], metric: str) -> float | None:
    value = metrics.get(metric)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def rank(rows: list[ModelResult], metric: str) -> list[ModelResult]:
    """Best first on ``metric``; runs without it last; ties keep the newest first."""
    lower = lower_is_better(metric)
    by_recency = sorted(rows, key=lambda r: r.started, reverse=True)
    with_value = [r for r in by_recency if _value(r.metrics, metric) is not None]
    without = [r for r in by_recency if _value(r.metrics, metric) is None]
    with_value.sort(key=lambda r: _value(r.metrics, metric) * (1 if lower else -1))
    return with_value + without


def find_experiment(client: Any, name: str | None) -> Any:
    """The named experiment, else the one holding the newest recflow pipeline run."""
    if name:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            known = sorted(e.name for e in client.search_experiments())
            raise CompareError(f"no MLflow experiment {name!r}; there are {known}")
        return experiment
    latest = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        "tags.`recflow.kind` = 'pipeline'",
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    if not latest:
        raise CompareError("no recflow pipeline runs in this MLflow store yet: run `recflow run` first")
    return client.get_experiment(latest[0].info.experiment_id)


def model_results(client: Any, experiment_id: str, last: int) -> list[ModelResult]:
    """The nested model runs of the ``last`` newest pipeline runs (failed models included, without metrics).

    A fit is listed once, in its newest run: a cached rerun logs the same fit (the same train fingerprint,
    the same metrics) again, which would list every model twice."""
    parents = client.search_runs([experiment_id], "tags.`recflow.kind` = 'pipeline'", max_results=last, order_by=["attributes.start_time DESC"])
    rows: list[ModelResult] = []
    seen: set[tuple] = set()
    for parent in parents:
        if "recflow.crashed" in parent.data.tags:  # a killed run (ended FAILED by the next run): its rows would read as results
            continue
        children = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'", max_results=1000)
        started = datetime.fromtimestamp(parent.info.start_time / 1000, tz=timezone.utc)
        for child in children:
            tags = child.data.tags
            if "model" not in tags:
                continue
            fit = (tags["model"], tags.get("protocol"), tags.get("dataset"), tags.get(TRAIN_FINGERPRINT_TAG) or child.info.run_id)
            if fit in seen:
                continue
            seen.add(fit)
            rows.append(
                ModelResult(
                    run_id=child.info.run_id,
                    model=tags["model"],
                    dataset=tags.get("dataset", parent.data.tags.get("dataset", "?")),
                    protocol=tags.get("protocol", parent.data.tags.get("protocol", "?")),
                    pipeline_run_id=parent.info.run_id,
                    pipeline_run_name=parent.info.run_name or parent.info.run_id[:8],
                    started=started,
                    metrics=dict(child.data.metrics),
                    status=child.info.status,
                )
            )
    return rows


def find_champion(client: Any, dataset: str, metric: str) -> tuple[Champion | None, str | None]:
    """The ``champion`` alias of ``recflow-<dataset>`` and its value on ``metric``; else (None, why not)."""
    from mlflow.exceptions import MlflowException

    name = registered_model_name(dataset)
    try:
        version = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    except MlflowException:
        return None, f"no champion for {dataset} yet (registered model {name!r} has no alias '{CHAMPION_ALIAS}')"
    value, model, protocol = None, version.tags.get("model"), None
    if version.run_id:
        run = client.get_run(version.run_id)
        model = model or run.data.tags.get("model")
        value = _value(run.data.metrics, metric)
        protocol = run.data.tags.get("protocol")
    champion = Champion(dataset, name, str(version.version), version.run_id or "", model, value, protocol)
    note = None if value is not None else f"champion {name} v{version.version} has no {metric}"
    return champion, note


def compare(experiment: str | None = None, metric: str = "recall_at_10", last: int = 10, tracking_uri: str | None = None) -> Comparison:
    from mlflow import MlflowClient

    if last < 1:
        raise CompareError(f"--last must be at least 1, got {last}")
    uri = tracking_uri or default_tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        raise CompareError(f"no MLflow store at {uri.removeprefix('sqlite:///')}: run `recflow run` first (or set MLFLOW_TRACKING_URI)")
    client = MlflowClient(uri)
    exp = find_experiment(client, experiment)
    rows = model_results(client, exp.experiment_id, last)
    if not rows:
        raise CompareError(f"experiment {exp.name!r} has no model runs yet: run `recflow run` first")
    result = Comparison(exp.name, exp.experiment_id, metric, rank(rows, metric), tracking_uri=uri)
    if all(_value(r.metrics, metric) is None for r in rows):
        known = sorted({m for r in rows for m in r.metrics})
        raise CompareError(f"no run in {exp.name!r} has the metric {metric!r}; they have {known}")
    for dataset in sorted({r.dataset for r in rows}):
        champion, note = find_champion(client, dataset, metric)
        if champion is not None:
            result.champions[dataset] = champion
        if note:
            result.notes.append(note)
    for row in result.rows:
        champion = result.champions.get(row.dataset)
        value = _value(row.metrics, metric)
        if champion is None:
            continue
        row.is_champion = row.run_id == champion.run_id
        row.other_protocol = champion.protocol is not None and row.protocol != champion.protocol
        if champion.value is not None and value is not None and not row.other_protocol:
            row.delta = value - champion.value
    return result


# ----------------------------------------------------------------------------- output


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _cell(metrics: dict[str, float], metric: str, with_ci: bool) -> str:
    """``0.2139 ±0.0041``: the value and half the width of its confidence interval (logged beside it as
    ``<metric>_ci_low`` / ``_ci_high``), only for the ranked metric to keep the table narrow."""
    value = _fmt(_value(metrics, metric))
    low, high = _value(metrics, f"{metric}_ci_low"), _value(metrics, f"{metric}_ci_high")
    return f"{value} ±{(high - low) / 2:.4f}" if with_ci and value != "-" and low is not None and high is not None else value


def _delta(row: ModelResult, metric: str) -> str:
    if row.is_champion:
        return "champion"
    if row.other_protocol:
        return "other protocol"
    if row.delta is None:
        return "-"
    better = row.delta < 0 if lower_is_better(metric) else row.delta > 0
    return f"{row.delta:+.4f}" + (" better" if better and row.delta else " worse" if row.delta else "")


def table_rows(result: Comparison) -> list[list[str]]:
    return [
        [
            str(i),
            row.model,
            f"{row.pipeline_run_name} {row.started:%Y-%m-%d %H:%M:%S}",
            row.dataset,
            row.protocol,
            *(_cell(row.metrics, m, m == result.metric) for m in result.shown_metrics),
            _delta(row, result.metric),
            row.run_id[:8],
        ]
        for i, row in enumerate(result.rows, 1)
    ]


def table_header(result: Comparison) -> list[str]:
    return ["#", "model", "pipeline run", "dataset", "protocol", *result.shown_metrics, f"vs champion ({result.metric})", "run"]


def markdown_report(result: Comparison) -> str:
    direction = "lower is better" if lower_is_better(result.metric) else "higher is better"
    lines = [
        f"# Model comparison on {result.metric} ({direction})",
        "",
        f"Experiment `{result.experiment}`, {len({r.pipeline_run_id for r in result.rows})} pipeline runs, {len(result.rows)} model runs, best first.",
        "",
    ]
    for champion in result.champions.values():
        lines.append(
            f"Champion for {champion.dataset}: `{champion.registered_model}` v{champion.version} "
            f"({champion.model or 'model ?'}, run `{champion.run_id[:8]}`) = {_fmt(champion.value)}"
        )
    lines += [f"_{note}_" for note in result.notes]
    header = table_header(result)
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(result)]
    lines += ["", *(f"![{m}]({chart_name(m)})" for m in result.shown_metrics)]
    return "\n".join(lines) + "\n"


def chart_name(metric: str) -> str:
    return f"{metric}.png"


def bar_origin(values: list[float]) -> float:
    """Where the bars start: below the smallest value by a fifth of the spread (never below 0 for a
    non-negative metric), so models 0.01 apart do not look equal on bars drawn from 0."""
    if not values:
        return 0.0
    low, high = min(values), max(values)
    spread = (high - low) or abs(low) * 0.1 or 1.0
    origin = low - spread / 5
    return max(origin, 0.0) if low >= 0 else origin


@safe_plot
def bar_chart(result: Comparison, metric: str, path: Path) -> Path | None:
    """Horizontal bars in ranking order (best on top); the champion's value as a dashed line.
    Best-effort (``recflow.evaluation.plots``): None when it could not be drawn."""
    rows = [r for r in rank(result.rows, metric) if _value(r.metrics, metric) is not None]
    values = [_value(r.metrics, metric) for r in rows]
    fig = new_figure((8, 0.45 * len(rows) + 1.4), dpi=110)
    ax = fig.add_subplot()
    colors = ["#d62728" if r.is_champion else "#1f77b4" for r in rows]
    lines = [c.value for c in result.champions.values() if metric == result.metric and c.value is not None]
    origin = bar_origin([*values, *lines])  # bars from just below the smallest value: the differences show
    ax.barh(range(len(rows)), [v - origin for v in values], left=origin, color=colors)
    ax.set_yticks(range(len(rows)), [r.label for r in rows], fontsize=8)
    ax.invert_yaxis()
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.4f}", va="center", fontsize=7)
    for champion in result.champions.values():
        if metric == result.metric and champion.value is not None:
            ax.axvline(champion.value, color="#d62728", linestyle="--", linewidth=1, label=f"champion ({champion.dataset})")
            ax.legend(fontsize=7, loc="lower right")
    ax.set_xlabel(metric + (" (lower is better)" if lower_is_better(metric) else " (higher is better)"))
    ax.set_title(f"{result.experiment}: {metric}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)


def write_report(result: Comparison, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "comparison.md"]
    paths[0].write_text(markdown_report(result))
    for metric in result.shown_metrics:
        drawn = any(_value(r.metrics, metric) is not None for r in result.rows) and bar_chart(result, metric, folder / chart_name(metric))
        if drawn:
            paths.append(folder / chart_name(metric))
    return paths


def log_report(result: Comparison) -> str:
    """A ``recflow.kind=comparison`` run in the compared experiment holding the report; returns its id."""
    from mlflow import MlflowClient

    client = MlflowClient(result.tracking_uri)
    run = client.create_run(result.experiment_id, run_name=f"compare {result.metric}", tags={"recflow.kind": "comparison", "metric": result.metric})
    try:
        with tempfile.TemporaryDirectory() as tmp:
            write_report(result, Path(tmp))
            client.log_artifacts(run.info.run_id, tmp, "comparison")
        best = next((r for r in result.rows if _value(r.metrics, result.metric) is not None), None)
        if best is not None:
            client.set_tag(run.info.run_id, "best_run_id", best.run_id)
            client.set_tag(run.info.run_id, "best_model", best.model)
            client.log_metric(run.info.run_id, f"best_{result.metric}", _value(best.metrics, result.metric))
        client.set_terminated(run.info.run_id, "FINISHED")
    except BaseException:
        client.set_terminated(run.info.run_id, "FAILED")
        raise
    return run.info.run_id
