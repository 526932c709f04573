"""One run summary, two renderings: the console table (``recflow.cli.main``) and the Prefect
markdown artifact (``tasks.reporting``) both read this object, so the cut-offs, the metric order,
the confidence intervals and the lines about whom the metrics cover are derived once.

The metric order and labels come from the registry (``recflow.evaluation.specs``); what a model
ranks (the whole catalogue or part of it) is what the model declares (``Recommender.catalogue_scope``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from recflow.evaluation.evaluate import POPULATION, half_width, is_metric_key, population_lines
from recflow.evaluation.specs import BY_NAME, Measured, cutoffs, measured
from recflow.experiments.tracking import metric_sort_key
from recflow.models import build_model
from recflow.runtime.outcomes import ModelOutcome


def item_scope_lines(models) -> list[str]:
    """A line per configured model that, with its parameters, ranks only part of the catalogue (as the model declares)."""
    return [line for params in models if (line := build_model(params).catalogue_scope())]


@dataclass(frozen=True)
class ModelRow:
    model: str
    metrics: dict[str, Any]
    status: str = "ok"
    fit_seconds: float | None = None
    run_id: str | None = None
    error: str = ""


def status(outcome: ModelOutcome) -> str:
    """``ok``; ``failed`` when there are no metrics; else which stage failed after evaluation (``index failed``)."""
    if not outcome.failed:
        return "ok"
    if not outcome.evaluated:
        return "failed"
    return ", ".join(f"{f.stage} failed" for f in outcome.failures)


def model_row(name: str, outcome: ModelOutcome, run_id: str | None) -> ModelRow:
    return ModelRow(
        name,
        dict(outcome.evaluate.meta["metrics"]) if outcome.evaluate is not None else {},
        status(outcome),
        outcome.train.meta.get("fit_seconds") if outcome.train is not None else None,
        run_id,
        outcome.error[:300],
    )


@dataclass(frozen=True)
class RunSummary:
    dataset: str
    protocol: str
    ci_level: float
    rows: tuple[ModelRow, ...]
    about: tuple[str, ...]  # whom the metrics cover, warnings, catalogue scopes
    tracking: dict[str, Any]
    tasks: dict[str, int]
    serving: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls, cfg, rows: list[ModelRow], tracking: dict[str, Any], tasks: dict[str, int], protocol: str, serving: dict[str, Any] | None = None
    ) -> RunSummary:
        about = population_lines({r.model: r.metrics for r in rows}) + item_scope_lines(cfg.models)
        return cls(cfg.dataset.name, protocol, cfg.evaluation.ci_level, tuple(rows), tuple(about), tracking, tasks, serving or {})

    @classmethod
    def from_outcomes(
        cls, cfg, models: dict[str, ModelOutcome], tracking: dict[str, Any], tasks: dict[str, int], protocol: str, serving: dict[str, Any] | None = None
    ) -> RunSummary:
        runs = tracking.get("model_runs", {})
        return cls.build(cfg, [model_row(name, outcome, runs.get(name)) for name, outcome in models.items()], tracking, tasks, protocol, serving)

    # ------------------------------------------------------------------ what the renderings read
    @property
    def metric_keys(self) -> list[str]:
        """Every metric some model has, in the registry's order (by cut-off, rating metrics first)."""
        return sorted({k for r in self.rows for k in r.metrics if is_metric_key(k)}, key=metric_sort_key)

    @property
    def ks(self) -> list[int]:
        return cutoffs(self.metric_keys)

    @property
    def population(self) -> tuple[str, ...]:
        return tuple(k for k in POPULATION if any(k in r.metrics for r in self.rows))

    def with_ci(self, key: str) -> bool:
        return any(half_width(r.metrics, key) is not None for r in self.rows)

    def console_columns(self) -> list[tuple[str, str]]:
        """(key, heading) for the 80-column table: RMSE, then recall and NDCG at every cut-off."""
        rmse = BY_NAME["rmse"]
        return [(rmse.key(), rmse.short)] + [(m.key, m.short) for k in self.ks for m in (Measured(BY_NAME["recall"], k), Measured(BY_NAME["ndcg"], k))]

    def headline_keys(self) -> list[str]:
        """The markdown table's columns: every metric at the smallest cut-off, and those without one."""
        ks = self.ks
        return [k for k in self.metric_keys if (found := measured(k)) is None or found.k is None or (ks and found.k == ks[0])]

    @property
    def console_ci_key(self) -> str | None:
        """The one column the console shows an interval on (it must fit 80 columns): recall at the smallest cut-off."""
        return BY_NAME["recall"].key(self.ks[0]) if self.ks else None

    def cell(self, row: ModelRow, key: str, with_ci: bool = True) -> str:
        """``0.2139 ±0.0041`` (half the interval's width), the bare value, or ``-``."""
        value = row.metrics.get(key)
        if value is None:
            return "-"
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        half = half_width(row.metrics, key) if with_ci else None
        return shown if half is None else f"{shown} ±{half:.4f}"

    def ci_caption(self) -> str:
        return f"± half the {self.ci_level:.0%} bootstrap CI over users"
