"""``recflow replay``'s record: one row per night, its table, and the plot of metric and cost per night.

A night's row is read from what the pipeline returned (no MLflow query): the night (its
partition), what came in (``n_new_interactions``, the users and items first seen that night),
the tasks that ran or were cached, the wall time, the best model's champion metric with its
confidence interval, whether the champion moved, and which models warm-started. The plot and the
rows are logged to one MLflow run per replay (``recflow.kind=replay``) beside the nights' pipeline
runs, each of which carries ``recflow.night`` and ``n_new_interactions`` itself.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from recflow.evaluation.plots import new_figure, safe_plot


@dataclass
class NightRow:
    night: str
    new_interactions: int | None = None
    new_users: int | None = None
    new_items: int | None = None
    ran: int | None = None
    cached: int | None = None
    wall_s: float = 0.0
    best_model: str | None = None
    metric: str = ""
    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    champion: str = ""
    warm_started: list[str] = field(default_factory=list)
    warm_epochs: dict[str, int] = field(default_factory=dict)
    fit_seconds: dict[str, float] = field(default_factory=dict)
    model_metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def night_row(night: str, result: dict[str, Any], wall_s: float, metric: str, greater_is_better: bool = True) -> NightRow:
    """A night's row from ``run_pipeline``'s result."""
    forward = result.get("split", {}).get("time_forward") or {}
    test = result.get("split", {}).get("parts", {}).get("test", {})
    scored = {name: m for name, m in result["metrics"].items() if m.get(metric) is not None}
    best = (max if greater_is_better else min)(scored, key=lambda n: scored[n][metric]) if scored else None
    serving = result.get("serving") or {}
    training = result.get("training", {})
    return NightRow(
        night=night,
        new_interactions=test.get("rows"),
        new_users=forward.get("cold_users"),
        new_items=forward.get("cold_items"),
        ran=result["tasks"]["ran"],
        cached=result["tasks"]["cached"],
        wall_s=round(wall_s, 2),
        best_model=best,
        metric=metric,
        value=scored[best][metric] if best else None,
        ci_low=scored[best].get(f"{metric}_ci_low") if best else None,
        ci_high=scored[best].get(f"{metric}_ci_high") if best else None,
        champion=champion_cell(serving),
        warm_started=sorted(n for n, t in training.items() if t.get("warm_start_from")),
        warm_epochs={n: int(t.get("epochs_run", 0)) for n, t in training.items()},
        fit_seconds={n: float(t.get("fit_seconds", 0.0)) for n, t in training.items()},
        model_metrics={n: float(m[metric]) for n, m in scored.items()},
    )


def champion_cell(serving: dict[str, Any]) -> str:
    """``moved v3`` / ``kept v2``: whether the night moved the champion alias; ``-`` when nothing is registered."""
    if not serving.get("champion_version"):
        return "-"
    return f"{'moved' if serving.get('moved') else 'kept'} v{serving['champion_version']}"


def table_lines(rows: list[NightRow]) -> list[str]:
    """The per-night table, plain text (what the CLI prints after each night, and the bench)."""
    header = (
        f"{'night':<17} {'new':>7} {'users':>6} {'items':>6} {'ran':>4} {'cached':>6} {'wall s':>7}  {'best (metric ± CI)':<34} {'champion':<10} warm-started"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        if r.error:
            lines.append(f"{r.night:<17} failed: {r.error}")
            continue
        half = (r.ci_high - r.ci_low) / 2 if r.ci_low is not None and r.ci_high is not None else None
        best = f"{r.best_model} {r.value:.4f}" + (f" ±{half:.4f}" if half is not None else "") if r.value is not None else "-"
        lines.append(
            f"{r.night:<17} {_n(r.new_interactions):>7} {_n(r.new_users):>6} {_n(r.new_items):>6} {_n(r.ran):>4} {_n(r.cached):>6} "
            f"{r.wall_s:>7.1f}  {best:<34} {r.champion:<10} {', '.join(r.warm_started) or '-'}"
        )
    return lines


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


@safe_plot
def replay_plot(rows: list[NightRow], path: Path, title: str = "") -> Path | None:
    """The best model's metric with its CI (left axis) and the night's wall seconds (right axis), per night."""
    done = [r for r in rows if r.error is None]
    if not done:
        return None
    x = list(range(1, len(done) + 1))
    fig = new_figure((7, 3.5))
    ax = fig.add_subplot()
    values = [r.value for r in done]
    ax.plot(x, values, marker="o", label=done[0].metric)
    low = [r.ci_low if r.ci_low is not None else r.value for r in done]
    high = [r.ci_high if r.ci_high is not None else r.value for r in done]
    if all(v is not None for v in low + high):
        ax.fill_between(x, low, high, alpha=0.2)
    ax.set_xticks(x, [r.night.removeprefix("date=") for r in done], rotation=30, fontsize=7)
    ax.set_ylabel(done[0].metric)
    cost = ax.twinx()
    cost.bar(x, [r.wall_s for r in done], alpha=0.25, color="tab:orange", label="wall s")
    cost.set_ylabel("wall s")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    return path


def log_replay(rows: list[NightRow], *, tracking_uri: str, experiment: str, name: str, params: dict[str, Any]) -> str:
    """One MLflow run for the whole replay: per-night metrics by step, the rows as JSON, the plot."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    exp = mlflow.get_experiment_by_name(experiment)
    with mlflow.start_run(experiment_id=exp.experiment_id if exp else mlflow.create_experiment(experiment), run_name=name) as run:
        mlflow.set_tags({"recflow.kind": "replay"})
        mlflow.log_params(params)
        for step, r in enumerate(rows, start=1):
            if r.error is None:
                mlflow.log_metrics(
                    {"wall_s": r.wall_s, "n_new_interactions": float(r.new_interactions or 0), **({r.metric: r.value} if r.value is not None else {})},
                    step=step,
                )
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "nights.json").write_text(json.dumps([asdict(r) for r in rows], indent=2, default=float))
            mlflow.log_artifact(str(Path(tmp) / "nights.json"), "replay")
            plot = replay_plot(rows, Path(tmp) / "replay.png", title=name)
            if plot is not None:
                mlflow.log_artifact(str(plot), "replay")
        return run.info.run_id
