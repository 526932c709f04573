"""The dataset slice of a run config: where the interactions come from and how strict ingestion is."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from recflow.data.sources import MovieLensSource, SourceConfig
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
    source: SourceConfig | None = Field(
        None, description="kind: movielens (a release; the default) | table (your Parquet / CSV log) | sql (a table or query); see docs/data.md"
    )
    path: Path | None = Field(None, description="explicit dataset folder or zip; overrides the search order")
    synth: SynthConfig | None = Field(None, description="generate this synthetic dataset instead of reading one")
    tmdb_path: Path | None = Field(None, description="TMDB movies CSV joined through links.csv")
    download: bool = True
    max_reject_fraction: float = Field(0.001, ge=0, le=1)

    @model_validator(mode="after")
    def _one_source(self) -> DatasetConfig:
        if self.source is None or isinstance(self.source, MovieLensSource):
            if self.source is not None and self.source.path is not None and self.path is not None:
                raise ValueError("give the release's path once: dataset.path or dataset.source.path")
            return self
        given = [k for k in ("path", "synth", "tmdb_path") if getattr(self, k) is not None]
        if given:
            raise ValueError(f"dataset.{given[0]} is for MovieLens releases; a {self.source.kind} source says where its data is itself")
        return self

    @property
    def release_path(self) -> Path | None:
        """A MovieLens release's explicit path (``path`` or ``source.path``)."""
        return self.path if self.path is not None or self.source is None else getattr(self.source, "path", None)

    @property
    def implicit(self) -> bool:
        """No rating column: every interaction is a positive, and models that predict ratings are skipped."""
        return self.source is not None and not isinstance(self.source, MovieLensSource) and self.source.implicit
