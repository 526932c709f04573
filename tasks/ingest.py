"""ingest: a MovieLens release (folder or zip, any format) -> canonical Parquet tables + rejects."""

from __future__ import annotations

import shutil
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from recflow.data import ChecksumMismatchError, DownloadError, TooManyRejectsError, ingest_dataset, locate_dataset, raw_files, write_synthetic
from recflow.experiments.config import DatasetConfig
from recflow.runtime.store import Artifact, artifacts_root, building, fingerprint_files, hash_parts, stage_dir, verify_stage_dir
from tasks.caching import current_key, produce, stage


class RawSource(BaseModel):
    """Where the raw release is and a fingerprint of its bytes (and of the TMDB file, if any)."""

    model_config = ConfigDict(frozen=True)

    name: str
    path: str
    tmdb_path: str | None = None
    fingerprint: str

    def cache_token(self) -> dict[str, str]:
        return {"name": self.name, "fingerprint": self.fingerprint}


def locate_source(dataset: DatasetConfig, root: Path | None = None) -> RawSource:
    """Resolve the dataset (explicit path, $RECFLOW_DATA_DIR, bundled, cache, download, or synthetic).

    Not a task: it is cheap (file hashes are remembered by size and mtime) and it is what makes the
    ``ingest`` key depend on the data's content rather than on where it lies.
    """
    root = root or artifacts_root()
    if dataset.synth is not None:
        path = synthetic_source(dataset, root)
    else:
        path = locate_dataset(dataset.name, dataset.path, root / "downloads", download=dataset.download)
    files = list(raw_files(path))
    if dataset.tmdb_path is not None:
        files.append(Path(dataset.tmdb_path))
    return RawSource(
        name=dataset.name,
        path=str(path),
        tmdb_path=str(dataset.tmdb_path) if dataset.tmdb_path else None,
        fingerprint=fingerprint_files(files, root / ".fingerprints.json"),
    )


def _download_failed(_task, _task_run, state) -> bool:
    """Retry only a download that failed (the network may be back); a bad checksum or a missing file is final."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, DownloadError) and not isinstance(exc, ChecksumMismatchError)


@task(
    name="locate", task_run_name="locate[{dataset.name}]", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[60, 300], retry_condition_fn=_download_failed
)
def locate(dataset: DatasetConfig) -> RawSource:
    """``locate_source`` as a visible, uncached task: a download still failing after its own retries is tried again later."""
    return locate_source(dataset)


def synthetic_source(dataset: DatasetConfig, root: Path) -> Path:
    key = hash_parts("synth", dataset.synth)[:20]
    folder = stage_dir("synth", key, root)
    if verify_stage_dir(folder) is None:
        with building("synth", key, root) as scratch:
            s = dataset.synth
            write_synthetic(scratch, n_users=s.n_users, n_items=s.n_items, n_ratings=s.n_ratings, rank=s.rank, format=s.format, seed=s.seed)
    return folder


@stage("ingest", task_run_name="ingest[{source.name}]")
def ingest(source: RawSource, max_reject_fraction: float) -> Artifact:
    def build(out: Path) -> dict:
        try:
            return ingest_dataset(
                Path(source.path), out, max_reject_fraction=max_reject_fraction, tmdb_path=Path(source.tmdb_path) if source.tmdb_path else None
            )
        except TooManyRejectsError as exc:
            kept = artifacts_root() / "rejected" / current_key() / "rejects.parquet"
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(out / "rejects.parquet", kept)
            raise TooManyRejectsError(exc.summary, kept) from None  # the scratch folder holding the first copy is gone

    return produce("ingest", build)
