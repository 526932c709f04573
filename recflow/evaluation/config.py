"""The evaluation slice of a run config: cut-offs, masking, relevance and the bootstrap behind every CI."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from recflow.utils.config import Strict

# upper bounds that keep a typo from becoming an out-of-memory after minutes of training: a config error instead
MAX_K = 1000  # users x k hit matrices
MAX_BOOTSTRAP_SAMPLES = 100_000  # resamples x users per metric


class EvaluationConfig(Strict):
    #: fields that change how the evaluation runs, not its metrics: out of the evaluate stage's cache key
    execution_fields: ClassVar[frozenset[str]] = frozenset({"batch_users"})

    ks: list[Annotated[int, Field(ge=1, le=MAX_K)]] = Field([10, 20], min_length=1)
    mask_valid: bool = Field(True, description="exclude validation items from the test ranking (RecBole default)")
    relevance_threshold: float | None = Field(None, description="test ratings below this are not relevant")
    batch_users: int = Field(2048, gt=0)
    bootstrap_samples: int = Field(
        1000, gt=0, le=MAX_BOOTSTRAP_SAMPLES, description="resamples of the evaluated users behind each metric's confidence interval"
    )
    ci_level: float = Field(0.95, gt=0, lt=1, description="confidence level of the intervals logged as <metric>_ci_low / _ci_high")
    bootstrap_seed: int = 0
