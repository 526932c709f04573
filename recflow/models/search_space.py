"""The hyperparameter ranges a model declares for tuning (``search_space`` on its class).

A model states beside its parameters which of them are worth searching and over what range;
``recflow.experiments.tuning`` turns the declaration into Optuna suggestions. Nothing is inferred from the
signature: a model that declares no space cannot be tuned, and a declared name that is not an
``__init__`` parameter is an error (``recflow.experiments.tuning.check_search_space``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FloatRange:
    """A float in ``[low, high]``; ``log`` samples its logarithm uniformly (regularisation, rates)."""

    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class IntRange:
    """An int in ``[low, high]`` (stepping by ``step``); ``log`` as for ``FloatRange``."""

    low: int
    high: int
    log: bool = False
    step: int = 1


@dataclass(frozen=True)
class Choice:
    """One of ``options`` (plain JSON values: numbers, strings, booleans, None)."""

    options: tuple[Any, ...]


Dimension = FloatRange | IntRange | Choice
