"""The head every flow shares: locate -> ingest -> split [-> a narrowing of the split] -> features -> sampling.

``recflow run`` and ``recflow tune`` read the same cached tasks in the same order, so a tuned dataset
reuses the pipeline's ingest, split and features; the tune flow only narrows the split to train and
valid (``tuning_split``) before features and samples are computed. ``add(name, task, *args)`` places a
task: the pipeline's ``Dag.add`` (submitted once its inputs finished), or a direct call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from recflow.experiments.config import RunConfig
from recflow.runtime.outcomes import PipelineFailed, StageFailure
from tasks.features import features
from tasks.ingest import ingest, locate
from tasks.sampling import sampling, sampling_plan
from tasks.split import split

Add = Callable[..., Any]  # add(name, task, *args) -> a node, a future or a result


@dataclass
class Head:
    source: Any
    data: Any
    parts: Any
    feats: Any
    samples: Any | None

    @property
    def stages(self) -> dict[str, Any]:
        """The head's tasks by stage (sampling only where a model needs samples)."""
        return {"ingest": self.data, "split": self.parts, "features": self.feats, **({"sampling": self.samples} if self.samples is not None else {})}


def located(cfg: RunConfig) -> Any:
    """The dataset's source, or ``PipelineFailed`` naming ``locate[<dataset>]`` with the places tried and the fix, line by line."""
    try:
        return locate(cfg.dataset)
    except Exception as exc:
        first, *rest = str(exc).splitlines() or [""]
        raise PipelineFailed([StageFailure(f"locate[{cfg.dataset.name}]", f"{type(exc).__name__}: {first}", details=tuple(r.strip() for r in rest))]) from None


def called(_name: str, task: Any, *args: Any) -> Any:
    """An ``add`` that runs the task now, in the flow (its result, not a future)."""
    return task(*args)


def pipeline_head(cfg: RunConfig, add: Add, *, narrow: Callable[[Add, Any], Any] | None = None, sampled_for: RunConfig | None = None) -> Head:
    """The shared head; ``narrow(add, parts)`` replaces the split before features, ``sampled_for`` the config whose models pick the samples."""
    source = located(cfg)
    data = add(f"ingest[{cfg.dataset.name}]", ingest, source, cfg.dataset.max_reject_fraction)
    parts = add(f"split[{cfg.split.protocol}]", split, data, cfg.split)
    if narrow is not None:
        parts = narrow(add, parts)
    feats = add("features", features, data, parts, cfg.features)
    plan = sampling_plan(sampled_for or cfg)
    samples = add("sampling", sampling, parts, plan) if plan is not None else None
    return Head(source, data, parts, feats, samples)
