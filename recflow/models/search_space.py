"""The hyperparameter ranges a model declares for tuning (``search_space`` on its class).

A model states beside its parameters which of them are worth searching and over what range;
``recflow.experiments.tuning`` turns the declaration into Optuna suggestions. Nothing is inferred from the
signature: a model that declares no space cannot be tuned, and a declared name that is not an
``__init__`` parameter is an error (``recflow.experiments.tuning.check_search_space``).

Each dimension also declares which objective it can move (``affects``): ``RATINGS`` (what
``predict`` returns: RMSE, MAE), ``RANKING`` (what ``score`` returns: recall, NDCG ...) or
``BOTH`` (the default). A study searches only the dimensions its metric can see (``searched``):
drawing the others at random would change the tuned config where the objective is blind (an RMSE
study of ``user_cf`` once drew ``rank_neighbors`` 11 and cut Recall@10 from 0.25 to 0.20 unseen).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RATINGS, RANKING, BOTH = "ratings", "ranking", "both"
RATING_METRICS = ("rmse", "mae")


@dataclass(frozen=True)
class FloatRange:
    """A float in ``[low, high]``; ``log`` samples its logarithm uniformly (regularisation, rates)."""

    low: float
    high: float
    log: bool = False
    affects: str = BOTH


@dataclass(frozen=True)
class IntRange:
    """An int in ``[low, high]`` (stepping by ``step``); ``log`` as for ``FloatRange``."""

    low: int
    high: int
    log: bool = False
    step: int = 1
    affects: str = BOTH


@dataclass(frozen=True)
class Choice:
    """One of ``options`` (plain JSON values: numbers, strings, booleans, None)."""

    options: tuple[Any, ...]
    affects: str = BOTH


Dimension = FloatRange | IntRange | Choice


def objective_of(metric: str) -> str:
    """``RATINGS`` for a rating error metric, ``RANKING`` for every other (a ranking metric)."""
    return RATINGS if metric in RATING_METRICS else RANKING


def searched(space: dict[str, Dimension], metric: str) -> tuple[dict[str, Dimension], list[str]]:
    """The dimensions a study on ``metric`` searches, and the names it leaves at the config's values."""
    objective = objective_of(metric)
    kept = {name: dim for name, dim in space.items() if dim.affects in (BOTH, objective)}
    return kept, sorted(set(space) - set(kept))
