"""The evaluation slice of a run config: cut-offs, masking, relevance and the bootstrap behind every CI."""

from __future__ import annotations

from pydantic import Field

from recflow.utils.config import Strict


class EvaluationConfig(Strict):
    ks: list[int] = [10, 20]
    mask_valid: bool = Field(True, description="exclude validation items from the test ranking (RecBole default)")
    relevance_threshold: float | None = Field(None, description="test ratings below this are not relevant")
    batch_users: int = Field(2048, gt=0)
    bootstrap_samples: int = Field(1000, gt=0, description="resamples of the evaluated users behind each metric's confidence interval")
    ci_level: float = Field(0.95, gt=0, lt=1, description="confidence level of the intervals logged as <metric>_ci_low / _ci_high")
    bootstrap_seed: int = 0
