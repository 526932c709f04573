"""The dataset slice of a run config: where the interactions come from and how strict ingestion is."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from recflow.utils.config import Strict


class SynthConfig(Strict):
    """A synthetic dataset written in a real MovieLens format (see ``recflow synth``)."""

    n_users: int = Field(500, gt=0)
    n_items: int = Field(300, gt=0)
    n_ratings: int = Field(20_000, gt=0)
    rank: int = Field(8, gt=0)
    format: Literal["ml-100k", "ml-1m", "ml-25m"] = "ml-25m"
    seed: int = 0


class DatasetConfig(Strict):
    # a name becomes folder, experiment and registered-model names: no path separators, no "..", checked at load
    name: str = Field("ml-latest-small", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", description="letters, digits, '.', '_', '-'")
    path: Path | None = Field(None, description="explicit dataset folder or zip; overrides the search order")
    synth: SynthConfig | None = Field(None, description="generate this synthetic dataset instead of reading one")
    tmdb_path: Path | None = Field(None, description="TMDB movies CSV joined through links.csv")
    download: bool = True
    max_reject_fraction: float = Field(0.001, ge=0, le=1)
