"""ingest: any source (a MovieLens release, a table, a SQL query) -> canonical Parquet tables + rejects.

MovieLens releases are fingerprinted by their files' bytes. A table source by its parts' digests
(``recflow.data.table``: size + mtime or ETag, then a content hash of what changed) and the reading
settings; its validated per-partition pieces live under ``<root>/sources/<source>/`` so that the
ingest of a night with one new partition reads that partition only. A SQL source is first read in
chunks into a Parquet snapshot there (the locate step), then ingested as a table.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from recflow.data import ChecksumMismatchError, DownloadError, TooManyRejectsError, ingest_dataset, locate_dataset, raw_files, write_synthetic
from recflow.data.sources import MovieLensSource, SqlSource, TableSource
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
    table: dict | None = None  # a table source's settings (TableSource as JSON); None for a MovieLens release
    cache_dir: str | None = None  # where a table source's pieces are kept (<root>/sources/<source>)
    describe: dict | None = None  # how the ingest summary names the source (kind, path or URL)

    def cache_token(self) -> dict[str, str]:
        return {"name": self.name, "fingerprint": self.fingerprint}


def locate_source(dataset: DatasetConfig, root: Path | None = None) -> RawSource:
    """Resolve the dataset (explicit path, $RECFLOW_DATA_DIR, bundled, cache, download, or synthetic).

    Not a task: it is cheap (file hashes are remembered by size and mtime) and it is what makes the
    ``ingest`` key depend on the data's content rather than on where it lies.
    """
    root = root or artifacts_root()
    if dataset.source is not None and not isinstance(dataset.source, MovieLensSource):
        return table_source(dataset.name, dataset.source, root)
    if dataset.synth is not None:
        path = synthetic_source(dataset, root)
    else:
        path = locate_dataset(dataset.name, dataset.release_path, root / "downloads", download=dataset.download)
    files = list(raw_files(path))
    if dataset.tmdb_path is not None:
        files.append(Path(dataset.tmdb_path))
    return RawSource(
        name=dataset.name,
        path=str(path),
        tmdb_path=str(dataset.tmdb_path) if dataset.tmdb_path else None,
        fingerprint=fingerprint_files(files, root / ".fingerprints.json"),
    )


def table_source(name: str, spec: TableSource | SqlSource, root: Path) -> RawSource:
    """A table (or a SQL query's snapshot) with its fingerprint: the settings plus every part's content digest."""
    from recflow.data.table import list_parts, part_digests

    where = spec.path if isinstance(spec, TableSource) else _redacted(spec.url) + "|" + (spec.table or spec.query or "")
    cache_dir = root / "sources" / f"{spec.kind}-{hash_parts(where)[:16]}"
    if isinstance(spec, SqlSource):
        from recflow.data.sql import snapshot

        describe = {"source": "sql", "url": _redacted(spec.url), **({"table": spec.table} if spec.table else {"query": spec.query})}
        spec = TableSource(path=str(snapshot(spec, cache_dir)), **spec.model_dump(exclude={"kind", "url", "table", "query", "chunk_rows"}))
    else:
        describe = {"source": "table", "path": spec.path}
    digests = part_digests(list_parts(spec.path, spec.format), root / ".fingerprints-parts.json")
    if spec.items is not None:
        digests |= {f"items:{k}": v for k, v in part_digests(list_parts(spec.items.path), root / ".fingerprints-parts.json").items()}
    return RawSource(
        name=name,
        path=spec.path,
        fingerprint=hash_parts(spec.model_dump(mode="json", exclude={"path"}), sorted(digests.items())),  # where it lies is not what it is
        table=spec.model_dump(mode="json"),
        cache_dir=str(cache_dir),
        describe=describe,
    )


def _redacted(url: str) -> str:
    """A SQLAlchemy URL without its password (what summaries, logs and cache folder names may show)."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


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
            if source.table is not None:
                from recflow.data.table import ingest_table

                spec = TableSource.model_validate(source.table)
                return ingest_table(spec, out, Path(source.cache_dir), max_reject_fraction=max_reject_fraction, describe_as=source.describe)
            return ingest_dataset(
                Path(source.path), out, max_reject_fraction=max_reject_fraction, tmdb_path=Path(source.tmdb_path) if source.tmdb_path else None
            )
        except TooManyRejectsError as exc:
            kept = artifacts_root() / "rejected" / current_key() / "rejects.parquet"
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(out / "rejects.parquet", kept)
            raise TooManyRejectsError(exc.summary, kept) from None  # the scratch folder holding the first copy is gone

    return produce("ingest", build)
