"""The split, features and sampling slices of a run config (each stage's cache key holds its own slice)."""

from __future__ import annotations

from typing import Literal, Union

from pydantic import Field, model_validator

from recflow.utils.config import Strict


class SplitConfig(Strict):
    protocol: Literal["temporal", "user_temporal", "user_random", "leave_last_k", "random", "recbole", "time_forward"] = "temporal"
    period: Literal["day", "week", "month"] = Field(
        "day", description="time_forward: the newest period (UTC calendar day, ISO week from Monday, or month) is the test part"
    )
    valid_periods: int = Field(0, ge=0, description="time_forward: the periods before the test period that form the valid part")
    test_fraction: float = Field(0.1, gt=0, lt=1)
    valid_fraction: float = Field(0.0, ge=0, lt=1)
    last_k: int = Field(1, gt=0, description="leave_last_k: test items per user (valid takes as many when valid_fraction > 0)")
    min_rating: float | None = Field(None, description="drop ratings below this before splitting (recbole: 3)")
    min_user_interactions: int = Field(0, ge=0)
    min_item_interactions: int = Field(0, ge=0)
    seed: int = 42

    @model_validator(mode="after")
    def _fractions_leave_training(self) -> SplitConfig:
        if self.test_fraction + self.valid_fraction >= 1:
            raise ValueError("test_fraction + valid_fraction must be < 1")
        return self


class FeaturesConfig(Strict):
    activity_bins: list[float] = [0, 5, 20, 100, float("inf")]
    activity_labels: list[str] = ["inactive", "casual", "active", "super"]
    popularity_bins: list[float] = [0, 10, 100, 500, float("inf")]
    popularity_labels: list[str] = ["niche", "moderate", "popular", "blockbuster"]

    @model_validator(mode="after")
    def _labels_match_bins(self) -> FeaturesConfig:
        for bins, labels, what in (
            (self.activity_bins, self.activity_labels, "activity"),
            (self.popularity_bins, self.popularity_labels, "popularity"),
        ):
            if len(labels) != len(bins) - 1:
                raise ValueError(f"{what}_labels needs {len(bins) - 1} labels for {len(bins)} bin edges")
        return self


class SamplingConfig(Strict):
    """Negatives for pairwise (BPR) models, notebook 1's three kinds; sequences and walks follow the models' own settings."""

    n_random: int = Field(1, ge=0, description="unseen items drawn uniformly, per user")
    n_popular: int = Field(5, ge=0, description="unseen items from the popular-and-well-rated pool, per user")
    n_disliked: int = Field(3, ge=0, description="seen items the user rated below the item's mean, per user")
    popular_pool: int = Field(200, gt=0)
    negatives_per_positive: int = Field(4, gt=0)
    positive_threshold: Union[Literal["user_mean"], float] = "user_mean"
    seed: int = 0
